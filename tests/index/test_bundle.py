"""Bundle build/open/search, metadata round trip, atomic publish, Redis registration (real FAISS, SQLite, redis-server)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from index_helpers import write_embeddings

from avlearn.index.build import build_bundle, register_bundle
from avlearn.index.bundle import Bundle
from avlearn.index.manifest import versions_dir
from avlearn.testing import require_tool


def test_metadata_round_trip_and_search(embeddings, tmp_path):
    emb, truth = embeddings
    out = build_bundle(emb, tmp_path / "bundle", queries=20)
    with Bundle.open(out) as b:
        m = b.manifest.to_dict()
        assert m["format_version"] == 1 and m["checkpoint_hash"] == "abc123"
        assert m["counts"]["image"] == len(truth)
        assert m["counts"]["audio"] == sum(a is not None for _, a, _ in truth.values())
        assert m["factories"] == {"image": "Flat", "audio": "Flat"}
        assert m["recall"]["image"] == 1.0
        for sid, (img, aud, (clip_id, source, start, labels)) in truth.items():
            seg = b.segment(sid)
            assert (seg.clip_id, seg.source, seg.start_sec, seg.labels) == (clip_id, source, start, labels)
            np.testing.assert_allclose(b.vector("image", sid), img, atol=2e-3)
            if aud is None:
                with pytest.raises(KeyError):
                    b.vector("audio", sid)
            else:
                np.testing.assert_allclose(b.vector("audio", sid), aud, atol=2e-3)
        # each stored image vector finds itself first
        sids = list(truth)[:10]
        hits = b.search("image", np.stack([truth[s][0] for s in sids]), k=3)
        assert [h[0].segment_id for h in hits] == sids
        assert hits[0][0].score == pytest.approx(1.0, abs=2e-3)
        assert hits[0][0].score >= hits[0][1].score >= hits[0][2].score


def test_unknown_id_raises_key_error(embeddings, tmp_path):
    emb, _ = embeddings
    with Bundle.open(build_bundle(emb, tmp_path / "bundle", queries=10)) as b:
        with pytest.raises(KeyError):
            b.segment(123456789)
        with pytest.raises(KeyError):
            b.vector("image", 123456789)
        with pytest.raises(ValueError):
            b.search("video", np.zeros((1, 16), np.float32), 3)
        with pytest.raises(ValueError):
            b.search("image", np.zeros((1, 15), np.float32), 3)


def test_concurrent_readers_agree(embeddings, tmp_path):
    emb, truth = embeddings
    with Bundle.open(build_bundle(emb, tmp_path / "bundle", queries=10), serving=True) as b:
        q = np.stack([v[0] for v in truth.values()])
        ref = [[h.segment_id for h in row] for row in b.search("image", q, 5)]
        results, errors = [], []

        def worker():
            try:
                for _ in range(20):
                    results.append([[h.segment_id for h in row] for row in b.search("image", q, 5)])
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(results) == 80 and all(r == ref for r in results)


def test_serving_bundle_searches_on_one_openmp_thread_in_every_thread(embeddings, tmp_path):
    """OpenMP's thread count is per thread: a serving bundle must set it where it searches
    (gRPC worker threads), not only in the thread that opened it."""
    import faiss

    emb, truth = embeddings
    out = build_bundle(emb, tmp_path / "bundle", queries=10)
    q = np.stack([v[0] for v in truth.values()])
    seen: dict[str, int] = {}

    def search_in_new_thread(b: Bundle, name: str) -> None:
        def run() -> None:
            b.search("image", q, 5)
            seen[name] = faiss.omp_get_max_threads()

        t = threading.Thread(target=run)
        t.start()
        t.join()

    with Bundle.open(out) as b:
        search_in_new_thread(b, "bulk")
    with Bundle.open(out, serving=True) as b:
        search_in_new_thread(b, "serving")
    assert seen["serving"] == 1
    with Bundle.open(out) as b:  # a serving bundle leaves bulk search in other threads alone
        search_in_new_thread(b, "bulk after")
    assert seen["bulk after"] == seen["bulk"]


def test_rebuild_swaps_atomically_and_open_bundle_keeps_reading(embeddings, tmp_path):
    emb, truth = embeddings
    out = tmp_path / "bundle"
    build_bundle(emb, out, queries=10)
    old = Bundle.open(out)
    emb2 = tmp_path / "emb2"
    write_embeddings(emb2, units=2, seed=7)
    build_bundle(emb2, out, queries=10)
    assert out.is_symlink()
    with Bundle.open(out) as new:
        assert new.bundle_id != old.bundle_id
        assert new.manifest.counts["image"] == 2 * 4 * 5
    # the bundle opened before the swap still answers from its own files
    sid = next(iter(truth))
    assert old.search("image", truth[sid][0][None], 1)[0][0].segment_id == sid
    old.close()


def test_crash_mid_build_leaves_previous_bundle(embeddings, tmp_path):
    emb, truth = embeddings
    out = tmp_path / "bundle"
    build_bundle(emb, out, queries=10)
    before = os.readlink(out)
    env = {**os.environ, "AVLEARN_TEST_BUILD_DELAY_SEC": "60"}
    proc = subprocess.Popen([sys.executable, "-m", "avlearn.cli", "index", "build", "--embeddings", str(emb), "--out", str(out)], env=env)
    vdir = versions_dir(out)
    deadline = time.time() + 60
    # wait until the staging dir holds a complete manifest (the build is mid-way: staged, unpublished)
    while time.time() < deadline and not any((p / "manifest.json").exists() for p in vdir.glob(".tmp-*")):
        assert proc.poll() is None, "build exited early"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.readlink(out) == before
    with Bundle.open(out) as b:
        sid = next(iter(truth))
        assert b.search("image", truth[sid][0][None], 1)[0][0].segment_id == sid
    assert list(vdir.glob(".tmp-*"))  # the dead build's staging dir is left behind ...
    build_bundle(emb, out, queries=10)
    assert not list(vdir.glob(".tmp-*"))  # ... and collected by the next build
    assert os.readlink(out) != before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    exe = require_tool("redis-server")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    proc.terminate()
    proc.wait(10)


def test_redis_registration_is_idempotent(embeddings, tmp_path, redis_url):
    import redis

    from avlearn.index.metadata import read_from_redis

    emb, truth = embeddings
    out = build_bundle(emb, tmp_path / "bundle", queries=10, redis_url=redis_url)
    client = redis.Redis.from_url(redis_url)
    bid = json.loads((out / "manifest.json").read_text())["bundle_id"]
    snapshot = {k: client.dump(k) for k in sorted(client.keys("*"))}
    assert client.get("avlearn:bundle:current").decode() == bid
    assert client.hlen(f"avlearn:bundle:{bid}:segments") == len(truth)
    assert register_bundle(out, redis_url) == len(truth)
    assert {k: client.dump(k) for k in sorted(client.keys("*"))} == snapshot
    sid = next(iter(truth))
    meta = read_from_redis(redis_url, bid, sid)
    assert (meta.clip_id, meta.start_sec) == (truth[sid][2][0], truth[sid][2][2])
    with pytest.raises(KeyError):
        read_from_redis(redis_url, bid, 987654321)
    client.close()
