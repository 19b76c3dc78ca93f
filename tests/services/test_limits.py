"""Every limit and bad input returns its exact status code; auth, admission and deadlines."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest
from fixtures import png_bytes, wav_bytes

from avlearn_client.client import Client
from avlearn_client.types import AvlearnError
from avlearn_proto import service_pb2, service_pb2_grpc, types_pb2
from services.gate import Admission
from services.interceptors import AdmissionInterceptor, AuthInterceptor, MetricsInterceptor
from services.metrics import Metrics
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


def _blocking_server(interceptors, release: threading.Event, entered: threading.Semaphore):
    """A real grpc.aio server (on the process's server loop) with one unary method /t.T/Block that waits for ``release``."""
    from services.server import event_loop, on_loop

    async def block(request, context):
        entered.release()
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        return b"done"

    async def start():
        server = grpc.aio.server(interceptors=interceptors or None)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", {"Block": grpc.unary_unary_rpc_method_handler(block)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = on_loop(start())
    return server, f"127.0.0.1:{port}", lambda: asyncio.run_coroutine_threadsafe(server.stop(0), event_loop()).result(10)


def test_admission_refuses_at_once_when_the_queue_is_full_and_counts_it():
    release, entered = threading.Event(), threading.Semaphore(0)
    metrics = Metrics()
    server, addr, stop = _blocking_server([MetricsInterceptor(metrics), AdmissionInterceptor(Admission(2), metrics)], release, entered)
    try:
        with grpc.insecure_channel(addr) as ch:
            call = ch.unary_unary("/t.T/Block")
            pending = [call.future(b"", timeout=10) for _ in range(2)]
            for _ in range(2):
                assert entered.acquire(timeout=5)
            t0 = time.perf_counter()
            with pytest.raises(grpc.RpcError) as err:
                call(b"", timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in err.value.details()
            assert time.perf_counter() - t0 < 1.0  # refused at once, not queued
            release.set()
            assert [f.result() for f in pending] == [b"done", b"done"]
            assert call(b"", timeout=10) == b"done"  # places are given back
    finally:
        stop()
    text = metrics.text()
    assert 'avlearn_rejected_total{reason="queue_full"} 1.0' in text
    assert 'avlearn_requests_total{code="RESOURCE_EXHAUSTED",method="Block"} 1.0' in text


def test_auth_interceptor_on_a_real_channel():
    release, entered = threading.Event(), threading.Semaphore(0)
    release.set()
    server, addr, stop = _blocking_server([AuthInterceptor("tok", all_rpcs=True)], release, entered)
    try:
        with grpc.insecure_channel(addr) as ch:
            call = ch.unary_unary("/t.T/Block")
            with pytest.raises(grpc.RpcError) as err:
                call(b"", timeout=5, metadata=(("authorization", "Basic tok"),))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert call(b"", timeout=5, metadata=(("authorization", "Bearer tok"),)) == b"done"
    finally:
        stop()


@pytest.mark.parametrize("how", ["deadline", "cancel"])
def test_work_stops_when_the_client_is_gone(start_server, how):
    """A query waiting for its batch is dropped when its deadline passes or its client cancels:
    no forward pass runs for it, and it is counted as abandoned at its stage."""
    srv = start_server(max_batch=8, max_batch_delay_ms=1500, cache_size=0)  # a lone query waits 1.5 s for company
    with grpc.insecure_channel(srv.address) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)  # connect first: the deadline covers only the call
        stub = service_pb2_grpc.AvlearnServiceStub(ch)
        request = service_pb2.SearchAudioByImageRequest(image=types_pb2.MediaInput(data=png_bytes()), k=3)
        if how == "deadline":
            with pytest.raises(grpc.RpcError) as err:
                stub.SearchAudioByImage(request, timeout=0.5)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        else:
            fut = stub.SearchAudioByImage.future(request, timeout=10)
            time.sleep(0.5)
            fut.cancel()
    deadline = time.monotonic() + 5
    while srv.metrics.abandoned.labels("SearchAudioByImage", "embed")._value.get() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.metrics.abandoned.labels("SearchAudioByImage", "embed")._value.get() == 1
    time.sleep(1.5)  # past the batch delay: the dropped item must not have reached the model
    assert 'avlearn_batch_size_count{kind="image"}' not in srv.metrics.text()
    with Client(srv.address) as c:  # the server goes on
        assert len(c.search_audio_by_image(png_bytes(value=9), k=2).hits) == 2
    assert 'avlearn_batch_size_count{kind="image"} 1.0' in srv.metrics.text()


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


def test_error_replies_are_bounded_and_in_the_users_terms(server, assets):
    """A 10,000-character job id or path still gets a short, readable reply (the message travels in a
    header the client caps at 8 KiB); undecodable bytes are named as such, not as a Python object."""
    long_id = "j" * 10_000
    with Client(server.address) as c:
        for call in (c.get_job, c.cancel_job, lambda i: list(c.watch_job(i, timeout_sec=10)), lambda i: c.submit_embed_job(str(assets.archive), job_id=i)):
            code, msg = _code(call, long_id)
            assert code == "INVALID_ARGUMENT" and "10000 characters" in msg and len(msg) <= 512, (code, msg[:200])
        code, msg = _code(c.reload_index, "/" + "d" * 10_000)
        assert code in ("PERMISSION_DENIED", "NOT_FOUND") and len(msg) <= 512, (code, msg[:200])
        code, msg = _code(c.search_audio_by_image, b"these bytes are no image")
        assert code == "INVALID_ARGUMENT" and "CorruptMedia" in msg
        assert "object at 0x" not in msg and "<_io" not in msg, msg
        assert c.health() == "SERVING"


def test_user_message():
    from services.errors import short, user_message

    assert user_message("cannot identify image file <_io.BytesIO object at 0x7f3a2c1d0>") == "cannot identify image file (the data sent)"
    assert user_message("two\nlines") == "two lines"
    assert len(user_message("x" * 5000)) == 512 and user_message("x" * 5000).endswith("…")
    assert short("abc") == "abc" and short("a" * 100) == "a" * 64 + "… (100 characters)"


def test_start_up_says_whether_mutating_calls_are_open(start_server, caplog):
    import logging

    said = {}
    for name, overrides in (("open", {}), ("token", {"auth_token": "t"}), ("all", {"auth_token": "t", "auth_all": True})):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="services.server"):
            start_server(**overrides)
        said[name] = [(r.levelno, r.getMessage()) for r in caplog.records if "bearer token" in r.getMessage() or "OPEN" in r.getMessage()]
    assert said["open"] == [
        (logging.WARNING, "mutating calls (CancelJob, ReloadIndex, SubmitEmbedJob) are OPEN to every client: no --auth-token-file was given")
    ]
    assert said["token"] == [
        (logging.INFO, "mutating calls (CancelJob, ReloadIndex, SubmitEmbedJob) need the bearer token (--auth-token-file); queries are open")
    ]
    assert said["all"] == [(logging.INFO, "every call needs the bearer token (--auth-all); health and reflection stay open")]
