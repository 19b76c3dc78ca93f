"""Every limit and bad input returns its exact status code; auth, overload and deadlines."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from fixtures import png_bytes, wav_bytes

from avlearn_client.client import Client
from avlearn_client.types import AvlearnError
from services.interceptors import AuthInterceptor, OverloadInterceptor
from services.servicer import make_checker
from services.settings import Limits, MiB


def _code(fn, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(AvlearnError) as err:
        fn(*args, **kwargs)
    return err.value.code, err.value.message


def test_message_size_limit_is_resource_exhausted(server):
    with Client(server.address) as c:
        code, _ = _code(c.search_audio_by_image, b"\x89PNG" + b"\0" * (16 * MiB + 16))
        assert code == "RESOURCE_EXHAUSTED"
        code, msg = _code(c.search_audio_by_image, b"\x89PNG" + b"\0" * (1 * MiB))  # under the limit: decoded, bad media
        assert code == "INVALID_ARGUMENT" and "bad media" in msg


def test_image_pixel_limit(start_server, assets):
    srv = start_server(limits=Limits(max_image_pixels=48 * 64))
    video = sorted(assets.archive.glob("*.mp4"))[0]  # 96x64 frames
    with Client(srv.address) as c:
        assert len(c.search_audio_by_image(png_bytes(48, 64), k=1).hits) == 1  # exactly at the limit
        code, msg = _code(c.search_audio_by_image, png_bytes(49, 64), k=1)
        assert code == "INVALID_ARGUMENT" and "pixels" in msg
        code, msg = _code(c.search_audio_by_image, video=video, time_sec=0.5, k=1)
        assert code == "INVALID_ARGUMENT" and "pixels" in msg


def test_audio_seconds_limit(start_server):
    srv = start_server(limits=Limits(max_audio_sec=2.0))
    with Client(srv.address) as c:
        assert c.search_images_by_audio(wav_bytes(2.0), k=1).hits
        code, msg = _code(c.search_images_by_audio, wav_bytes(3.0), k=1)
    assert code == "INVALID_ARGUMENT" and "over the limit of 2 s" in msg


def test_k_limits(server):
    with Client(server.address) as c:
        for k in (-1, 1001):
            code, msg = _code(c.search_audio_by_image, png_bytes(), k=k)
            assert code == "INVALID_ARGUMENT" and "k must be between 1 and 1000" in msg
        assert len(c.search_audio_by_image(png_bytes(), k=1000).hits) == 12  # the whole tiny bundle
        assert len(c.search_audio_by_image(png_bytes(), k=0).hits) == 10  # k = 0 → default_k


def test_bad_inputs(server, assets, embedder):
    from avlearn.index.bundle import Bundle

    with Bundle.open(assets.bundle) as b:
        some_id = int(b._indices["image"].ids[0])
    with Client(server.address) as c:
        code, msg = _code(c.search_audio_by_image, b"this is not an image")
        assert code == "INVALID_ARGUMENT" and "CorruptMedia" in msg
        code, msg = _code(c.search_images_by_audio, png_bytes())  # an image is not audio
        assert code == "INVALID_ARGUMENT" and "bad media" in msg
        code, msg = _code(c.search_audio_by_image, video=wav_bytes(), time_sec=0.0)  # no video stream
        assert code == "INVALID_ARGUMENT" and "NoVideoStream" in msg
        code, msg = _code(c.search_audio_by_image, video=sorted(assets.archive.glob("*.mp4"))[0], time_sec=float("nan"))
        assert code == "INVALID_ARGUMENT" and "time_sec" in msg
        code, msg = _code(c.search_audio_by_image, segment_id=some_id + 987654321)
        assert code == "NOT_FOUND" and "not in bundle" in msg
        code, msg = _code(c.search_similar, "audio", vector=np.ones(embedder.dim + 1))
        assert code == "INVALID_ARGUMENT" and str(embedder.dim) in msg
        code, msg = _code(c.search_similar, "audio", vector=np.zeros(embedder.dim))
        assert code == "INVALID_ARGUMENT" and "non-zero" in msg
        code, msg = _code(c.localize, wav_bytes(), None, image_segment_id=some_id + 987654321)
        assert code == "NOT_FOUND"
        code, msg = _code(c.get_job, "no-such-job")
        assert code == "NOT_FOUND"
    from avlearn_proto import service_pb2, service_pb2_grpc, types_pb2

    with grpc.insecure_channel(server.address) as ch:
        stub = service_pb2_grpc.AvlearnServiceStub(ch)
        cases = [
            (stub.SearchAudioByImage, service_pb2.SearchAudioByImageRequest(k=3), "no image given"),
            (stub.SearchSimilar, service_pb2.SearchSimilarRequest(query=types_pb2.MediaInput(segment_id=some_id)), "modality"),
            (
                stub.Localize,
                service_pb2.LocalizeRequest(
                    audio=types_pb2.MediaInput(vector=types_pb2.Vector(values=[1.0] * embedder.dim)), image=types_pb2.MediaInput(segment_id=some_id)
                ),
                "not a vector",
            ),
        ]
        for method, request, text in cases:
            with pytest.raises(grpc.RpcError) as err:
                method(request, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text in err.value.details()


def test_auth_mutating_only(start_server):
    srv = start_server(auth_token="s3cret")
    with Client(srv.address) as anon, Client(srv.address, token="wrong") as wrong, Client(srv.address, token="s3cret") as ok:
        assert anon.search_audio_by_image(png_bytes(), k=2).hits  # reads are open
        for c in (anon, wrong):
            code, msg = _code(c.reload_index)
            assert code == "UNAUTHENTICATED" and "Bearer" in msg
            assert _code(c.cancel_job, "x")[0] == "UNAUTHENTICATED"
            assert _code(c.submit_embed_job, "archive")[0] == "UNAUTHENTICATED"
        old, new = ok.reload_index()
        assert old and new
    assert 'avlearn_rejected_total{reason="auth"} 6.0' in srv.metrics.text()


def test_auth_all_rpcs(start_server):
    srv = start_server(auth_token="s3cret", auth_all=True)
    with Client(srv.address) as anon, Client(srv.address, token="s3cret") as ok:
        assert _code(anon.search_audio_by_image, png_bytes())[0] == "UNAUTHENTICATED"
        assert _code(anon.index_info)[0] == "UNAUTHENTICATED"
        assert anon.health() == "SERVING"  # probes stay open
        assert ok.index_info().bundle_id


def _blocking_server(interceptors, release: threading.Event, entered: threading.Semaphore, body=None):
    """A real gRPC server with one unary method /t.T/Block that waits on ``release`` (or runs ``body``)."""

    def block(request, context):
        entered.release()
        if body is not None:
            return body(request, context)
        release.wait(10)
        return b"done"

    handler = grpc.method_handlers_generic_handler("t.T", {"Block": grpc.unary_unary_rpc_method_handler(block)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=interceptors or None, handlers=(handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def test_overload_rejects_the_excess_at_once():
    release, entered = threading.Event(), threading.Semaphore(0)
    server, addr = _blocking_server([OverloadInterceptor(2)], release, entered)
    try:
        with grpc.insecure_channel(addr) as ch:
            call = ch.unary_unary("/t.T/Block")
            pending = [call.future(b"", timeout=10) for _ in range(2)]
            for _ in range(2):
                assert entered.acquire(timeout=5)
            t0 = time.perf_counter()
            with pytest.raises(grpc.RpcError) as err:
                call(b"", timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.perf_counter() - t0 < 1.0  # refused at once, not queued
            release.set()
            assert [f.result() for f in pending] == [b"done", b"done"]
            assert call(b"", timeout=10) == b"done"  # slots are given back
    finally:
        server.stop(0)


def test_auth_interceptor_on_a_real_channel():
    release, entered = threading.Event(), threading.Semaphore(0)
    release.set()
    server, addr = _blocking_server([AuthInterceptor("tok", all_rpcs=True)], release, entered)
    try:
        with grpc.insecure_channel(addr) as ch:
            call = ch.unary_unary("/t.T/Block")
            with pytest.raises(grpc.RpcError) as err:
                call(b"", timeout=5, metadata=(("authorization", "Basic tok"),))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert call(b"", timeout=5, metadata=(("authorization", "Bearer tok"),)) == b"done"
    finally:
        server.stop(0)


@pytest.mark.parametrize("how", ["deadline", "cancel"])
def test_work_stops_when_the_client_is_gone(how):
    """make_checker (called between query stages) notices a passed deadline or a cancelled call."""
    seen: list[str] = []
    done = threading.Event()

    def body(request, context):
        check = make_checker(context)
        try:
            for _ in range(500):
                check("embed")
                time.sleep(0.01)
            seen.append("ran to the end")
        except Exception as exc:
            seen.append(str(exc))
            done.set()
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED if "deadline" in str(exc) else grpc.StatusCode.CANCELLED, str(exc))
        done.set()
        return b"late"

    server, addr = _blocking_server([], threading.Event(), threading.Semaphore(0), body=body)
    try:
        with grpc.insecure_channel(addr) as ch:
            grpc.channel_ready_future(ch).result(timeout=10)  # connect first: the deadline covers only the call
            call = ch.unary_unary("/t.T/Block")
            if how == "deadline":
                t0 = time.perf_counter()
                with pytest.raises(grpc.RpcError) as err:
                    call(b"", timeout=0.3)
                assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, (seen, time.perf_counter() - t0)
            else:
                fut = call.future(b"", timeout=10)
                time.sleep(0.3)
                fut.cancel()
            assert done.wait(3)
    finally:
        server.stop(0)
    assert seen and seen[0].startswith("stopped before embed")
    assert ("deadline" in seen[0]) == (how == "deadline")


def test_engine_checks_between_every_stage(assets, embedder):
    """The engine asks before decode, embed and search, and stops at the first refusal."""
    from avlearn.index.bundle import Bundle
    from services.engine import Engine
    from services.errors import Abandoned
    from services.query_media import MediaQuery

    with Bundle.open(assets.bundle) as b:
        engine = Engine(embedder, b, assets.bundle, Limits())
        asked: list[str] = []
        engine.search("image", "audio", MediaQuery(data=png_bytes()), 3, check=asked.append)
        assert asked == ["decode", "embed", "search"]

        def refuse_embed(stage: str) -> None:
            if stage == "embed":
                raise Abandoned(stage, "deadline exceeded")

        calls = []
        real = embedder.embed_images
        embedder.embed_images = lambda *a, **k: calls.append(1) or real(*a, **k)
        try:
            with pytest.raises(Abandoned):
                engine.search("image", "audio", MediaQuery(data=png_bytes()), 3, check=refuse_embed)
        finally:
            del embedder.embed_images
        assert calls == []  # no forward pass after the refusal
