"""The gRPC server over loopback: retrieval, localization, index info, caching, metrics, health."""

from __future__ import annotations

import io
import time
import urllib.request

import numpy as np
import pytest
from fixtures import png_bytes, wav_bytes

from avlearn.index.bundle import Bundle
from avlearn_client.client import Client
from avlearn_client.types import AvlearnError


def _bundle_ids(path):
    with Bundle.open(path) as b:
        return b.bundle_id, [int(i) for i in b._indices["image"].ids], b.manifest.to_dict()


def test_health_and_index_info(server, assets, embedder):
    bundle_id, ids, manifest = _bundle_ids(assets.bundle)
    with Client(server.address) as c:
        assert c.health() == "SERVING"
        assert c.health("avlearn.v1.AvlearnService") == "SERVING"
        info = c.index_info()
    assert info.bundle_id == bundle_id
    assert info.counts["image"] == manifest["counts"]["image"] == len(ids)
    assert info.dims == {"audio": embedder.dim, "image": embedder.dim}
    assert info.embedding_dim == embedder.dim and info.has_localizer
    assert info.image_size_px == tuple(embedder.image_size_px) and info.sample_rate_hz == embedder.sample_rate_hz


def test_search_audio_by_image_matches_direct_search_and_caches(server, assets, embedder):
    png = png_bytes(value=77)
    with Bundle.open(assets.bundle) as b:
        from avlearn.media import read_image

        expected = b.search("audio", embedder.embed_images(read_image(png)[None]), 5)[0]
    with Client(server.address) as c:
        first = c.search_audio_by_image(png, k=5)
        second = c.search_audio_by_image(png, k=5)
        other_k = c.search_audio_by_image(png, k=3)
    assert [h.segment_id for h in first.hits] == [h.segment_id for h in expected]
    assert np.allclose([h.score for h in first.hits], [h.score for h in expected], atol=1e-4)
    assert [h.score for h in first.hits] == sorted((h.score for h in first.hits), reverse=True)
    assert not first.cached and second.cached and not other_k.cached
    assert second.hits == first.hits and len(other_k.hits) == 3
    assert first.timings.embed_ms > 0 and first.timings.total_ms >= first.timings.embed_ms
    assert first.hits[0].source.endswith(".mp4") and first.hits[0].clip_id


def test_vector_and_segment_queries(server, assets):
    _, ids, _ = _bundle_ids(assets.bundle)
    target = ids[5]
    with Bundle.open(assets.bundle) as b:
        vec = b.vector("image", target)
    with Client(server.address) as c:
        by_vector = c.search_similar("image", vector=vec * 3.0, k=3)  # the server normalises
        by_id = c.search_similar("image", segment_id=target, k=3)
        cross = c.search_audio_by_image(segment_id=target, k=len(ids))
    assert by_vector.hits[0].segment_id == target and by_vector.hits[0].score == pytest.approx(1.0, abs=1e-2)
    assert target not in [h.segment_id for h in by_id.hits] and len(by_id.hits) == 3
    assert sorted(h.segment_id for h in cross.hits) == sorted(ids)


def test_search_grouped_by_clip(server, assets):
    """group_by_clip: the top-k clips, each as its best segment (what Bundle.search_clips gives), own clip left out by id."""
    _, ids, _ = _bundle_ids(assets.bundle)
    target = ids[4]
    with Bundle.open(assets.bundle) as b:
        vec = b.vector("image", target)
        own_clip = b.segment(target).clip_id
        every = b.search("audio", vec, len(ids))[0]
    with Client(server.address) as c:
        grouped = c.search_audio_by_image(vector=vec, k=3, group_by_clip=True)
        plain = c.search_audio_by_image(vector=vec, k=3)
        many = c.search_audio_by_image(vector=vec, k=50, group_by_clip=True)
        similar = c.search_similar("image", segment_id=target, k=50, group_by_clip=True)
    clips = [h.clip_id for h in grouped.hits]
    assert len(clips) == len(set(clips)) == 3 and not grouped.cached and not plain.cached  # a separate cache entry
    best = {}
    for h in every:  # best first: each clip's first hit is its best segment
        best.setdefault(h.clip_id, h.segment_id)
    assert [h.segment_id for h in grouped.hits] == list(best.values())[:3]
    assert len(many.hits) == len(best) == 4  # every clip once, no more
    assert own_clip not in [h.clip_id for h in similar.hits] and len(similar.hits) == 3


def test_video_time_inputs(server, assets, embedder):
    video = sorted(assets.archive.glob("*.mp4"))[1]
    from avlearn.media import read_audio, read_frames

    frame = read_frames(video, [1.0], tuple(embedder.image_size_px)).images  # decoded at model size, as indexed frames are
    wave = read_audio(video, read_frames(video, [1.0]).times_sec[0], 1.0, embedder.sample_rate_hz)
    with Bundle.open(assets.bundle) as b:
        want_img = [h.segment_id for h in b.search("audio", embedder.embed_images(frame), 4)[0]]
        want_aud = [h.segment_id for h in b.search("image", embedder.embed_audio(wave[None]), 4)[0]]
    with Client(server.address) as c:
        got_img = c.search_audio_by_image(video=video, time_sec=1.0, k=4)
        got_aud = c.search_images_by_audio(video=video, time_sec=1.0, k=4)
    assert [h.segment_id for h in got_img.hits] == want_img
    assert [h.segment_id for h in got_aud.hits] == want_aud


def test_query_by_video_and_time_reproduces_the_stored_vector(server, assets):
    """One decode and resize path for queries and indexed frames: a query by (video, time) of an
    indexed segment finds that segment first, at cosine >= 0.999 to its stored vector."""
    with Bundle.open(assets.bundle) as b:
        ids = [int(i) for i in b._indices["image"].ids]
        metas = [b.segment(i) for i in ids[:: max(1, len(ids) // 6)]]
        stored = {m.segment_id: b.vector("image", m.segment_id) for m in metas}
    assert len(metas) >= 4
    with Client(server.address) as c:
        for m in metas:
            res = c.search_similar("image", video=m.source, time_sec=m.start_sec, k=1)
            assert res.hits[0].segment_id == m.segment_id, (m.source, m.start_sec)
            assert res.hits[0].score >= 0.999
    assert len({m.segment_id for m in metas}) == len(stored)


def test_audio_bytes_query(server):
    with Client(server.address) as c:
        res = c.search_images_by_audio(wav_bytes(2.5, 880.0), k=4)
    assert len(res.hits) == 4


def test_localize_bytes_and_segments(server, assets, embedder):
    from PIL import Image

    png = png_bytes(48, 64)
    with Client(server.address) as c:
        loc = c.localize(wav_bytes(1.0), png, overlay=True)
        _, ids, _ = _bundle_ids(assets.bundle)
        by_seg = c.localize(audio_segment_id=ids[0], image_segment_id=ids[3])
    assert loc.heatmap.shape == (48, 64) and loc.heatmap.dtype == np.float32
    assert loc.grid.shape == tuple(embedder.grid_size)
    assert 0.0 <= loc.heatmap.min() and loc.heatmap.max() <= 1.0
    iy, ix = np.unravel_index(np.argmax(loc.grid), loc.grid.shape)
    assert loc.peak_yx == pytest.approx(((iy + 0.5) / loc.grid.shape[0], (ix + 0.5) / loc.grid.shape[1]))
    assert 0.0 <= loc.score <= 1.0
    assert Image.open(io.BytesIO(loc.overlay_png)).size == (64, 48)
    assert by_seg.heatmap.shape == (64, 96) and by_seg.overlay_png is None


def test_localize_without_localizer_is_failed_precondition(start_server, assets):
    from avlearn.embed import Embedder

    plain = Embedder.from_checkpoint(assets.checkpoint, device="cpu")
    srv = start_server(localizer_checkpoint=None, embedder=plain)
    with Client(srv.address) as c, pytest.raises(AvlearnError) as err:
        c.localize(wav_bytes(), png_bytes())
    assert err.value.code == "FAILED_PRECONDITION" and "localiz" in err.value.message


def test_metrics_endpoint(start_server):
    srv = start_server(metrics_port=0)
    with Client(srv.address) as c:
        c.search_audio_by_image(png_bytes(value=3), k=2)
        c.search_audio_by_image(png_bytes(value=3), k=2)
        with pytest.raises(AvlearnError):
            c.get_job("nope")
    # an aborted call's status reaches the client before the interceptor counts it: read until both are in (or 5 s)
    deadline = time.monotonic() + 5
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=5).read().decode()
        if 'method="GetJob"' in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert 'avlearn_requests_total{code="OK",method="SearchAudioByImage"} 2.0' in text
    assert 'avlearn_requests_total{code="NOT_FOUND",method="GetJob"} 1.0' in text
    assert 'avlearn_cache_total{result="hit"} 1.0' in text
    assert 'avlearn_request_seconds_count{method="SearchAudioByImage"} 2.0' in text


def test_graceful_stop(start_server):
    srv = start_server()
    with Client(srv.address, retries=0, timeout_sec=2) as c:
        assert c.health() == "SERVING"
        srv.stop(0.5)
        with pytest.raises(AvlearnError) as err:
            c.index_info()
    assert err.value.code == "UNAVAILABLE"
    assert srv.holder.current.closed  # the bundle was closed after the last query


def test_request_id_round_trip(server):
    import grpc

    from avlearn_proto import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(server.address) as ch:
        stub = service_pb2_grpc.AvlearnServiceStub(ch)
        _, call = stub.GetIndexInfo.with_call(service_pb2.GetIndexInfoRequest(), metadata=(("x-request-id", "abc-123"),), timeout=5)
        assert ("x-request-id", "abc-123") in tuple(call.trailing_metadata())
        try:
            stub.GetJob(service_pb2.GetJobRequest(job_id="missing"), timeout=5)
        except grpc.RpcError as exc:
            assert any(k == "x-request-id" and v for k, v in exc.trailing_metadata())
