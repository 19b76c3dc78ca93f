"""Dynamic batching: concurrent queries share one forward pass / one FAISS call; each keeps its own result or error."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fixtures import png_bytes, wav_bytes

from avlearn.index.bundle import Bundle
from avlearn.media import read_audio, read_image
from avlearn_client.client import Client
from avlearn_client.types import AvlearnError
from services.batching import Batcher, Slots


def _stack_sum(key, payloads):
    """A batch function with its own input check, like a model's: one call over the whole batch, which
    fails whole when any item is bad (negative)."""
    x = np.stack(payloads)
    if (x < 0).any():
        raise ValueError("negative input")
    return list(x.sum(axis=1) + key)


async def _gather(batcher: Batcher, items, key=0):
    return await asyncio.gather(*(batcher.submit(key, x) for x in items), return_exceptions=True)


def test_concurrent_items_form_one_batch_in_order():
    sizes = []
    with ThreadPoolExecutor(2) as ex:
        b = Batcher("t", _stack_sum, executor=ex, slots=Slots(1), max_batch=16, max_delay_sec=0.05, on_batch=lambda n, size, split: sizes.append(size))
        out = asyncio.run(_gather(b, [np.full(3, i, np.float32) for i in range(10)], key=100))
    assert [float(x) for x in out] == [100.0 + 3 * i for i in range(10)]
    assert sizes == [10]


def test_one_bad_item_fails_only_its_own_call():
    calls, splits = [], []

    def run(key, payloads):
        calls.append(len(payloads))
        return _stack_sum(key, payloads)

    items = [np.ones(3, np.float32), np.ones(3, np.float32), -np.ones(3, np.float32), np.ones(3, np.float32)]  # item 2 is bad
    with ThreadPoolExecutor(2) as ex:
        b = Batcher("t", run, executor=ex, slots=Slots(1), max_batch=8, max_delay_sec=0.05, on_batch=lambda n, size, split: splits.append(split))
        out = asyncio.run(_gather(b, items))
    assert [float(x) for i, x in enumerate(out) if i != 2] == [3.0, 3.0, 3.0]
    assert isinstance(out[2], ValueError)
    assert calls == [4, 1, 1, 1, 1]  # the whole batch failed, then each item alone
    assert splits == [True]


def test_max_batch_and_keys_split_batches():
    seen: list[tuple[int, int]] = []

    def run(key, payloads):
        seen.append((key, len(payloads)))
        return payloads

    async def go():
        with ThreadPoolExecutor(1) as ex:
            b = Batcher("t", run, executor=ex, slots=Slots(1), max_batch=3, max_delay_sec=0.05)
            return await asyncio.gather(*(b.submit(i % 2, i) for i in range(8)))

    assert asyncio.run(go()) == list(range(8))
    assert sorted(seen) == [(0, 1), (0, 3), (1, 1), (1, 3)]  # keys never mix; at most 3 per batch


def test_a_lone_item_waits_at_most_the_delay_and_zero_delay_sends_at_once():
    async def one(delay):
        with ThreadPoolExecutor(1) as ex:
            b = Batcher("t", lambda k, p: p, executor=ex, slots=Slots(1), max_batch=8, max_delay_sec=delay)
            t0 = time.perf_counter()
            await b.submit(0, "x")
            return time.perf_counter() - t0

    assert 0.15 <= asyncio.run(one(0.2)) < 1.0
    assert asyncio.run(one(0.0)) < 0.1


def test_items_gather_while_slots_are_busy_and_slots_bound_batches():
    running, peak, sizes = [0], [0], []
    lock = threading.Lock()

    def run(key, payloads):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return payloads

    async def go():
        with ThreadPoolExecutor(4) as ex:
            slots = Slots(2)  # shared by two batchers, like the model's image and audio passes
            a = Batcher("a", run, executor=ex, slots=slots, max_batch=64, on_batch=lambda n, size, split: sizes.append(size))
            b = Batcher("b", run, executor=ex, slots=slots, max_batch=64, on_batch=lambda n, size, split: sizes.append(size))
            tasks = []
            for i in range(40):
                tasks.append(asyncio.ensure_future((a if i % 2 else b).submit(0, i)))
                await asyncio.sleep(0.002)
            return await asyncio.gather(*tasks)

    assert asyncio.run(go()) == list(range(40))
    assert peak[0] == 2  # never more batches at once than slots, across both batchers
    assert sum(sizes) == 40 and max(sizes) > 1 and len(sizes) < 40  # with no delay, the busy slots made batches


def test_a_cancelled_submitter_is_left_out_of_its_batch():
    seen = []

    async def go():
        with ThreadPoolExecutor(1) as ex:
            b = Batcher("t", lambda k, p: seen.append(list(p)) or p, executor=ex, slots=Slots(1), max_batch=8, max_delay_sec=0.2)
            gone = asyncio.ensure_future(b.submit(0, "gone"))
            kept = asyncio.ensure_future(b.submit(0, "kept"))
            await asyncio.sleep(0.05)
            gone.cancel()
            return await kept

    assert asyncio.run(go()) == "kept"
    assert seen == [["kept"]]


def test_bad_settings_are_refused():
    with ThreadPoolExecutor(1) as ex:
        with pytest.raises(ValueError):
            Batcher("t", _stack_sum, executor=ex, slots=Slots(1), max_batch=0)
        with pytest.raises(ValueError):
            Batcher("t", _stack_sum, executor=ex, slots=Slots(1), max_batch=1, max_delay_sec=-1)
    with pytest.raises(ValueError):
        Slots(0)


# -- through the server ----------------------------------------------------------------------


def _concurrently(fns):
    """Run the callables at once (one thread each); returns each one's result or AvlearnError."""
    out: list = [None] * len(fns)

    def run(i):
        try:
            out[i] = fns[i]()
        except AvlearnError as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def _nan_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    import soundfile as sf

    wave = np.zeros(int(seconds * rate), np.float32)
    wave[100:200] = np.nan
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _batches(srv, kind: str) -> tuple[float, float]:
    """(batches run, items in them) of ``kind``, from the server's metrics."""
    value = srv.metrics.registry.get_sample_value
    return value("avlearn_batch_size_count", {"kind": kind}) or 0.0, value("avlearn_batch_size_sum", {"kind": kind}) or 0.0


def test_concurrent_image_queries_share_one_forward_pass(start_server, assets, embedder):
    """Six concurrent image→audio queries (different images) → one forward pass of 6; each gets the hits of its own image."""
    srv = start_server(max_batch=6, max_batch_delay_ms=2000, cache_size=0)  # the batch goes when full
    images = [png_bytes(value=v) for v in (10, 60, 110, 160, 210, 250)]
    with Bundle.open(assets.bundle) as b:
        want = [[h.segment_id for h in b.search("audio", embedder.embed_images(read_image(img)[None]), 5)[0]] for img in images]
    with Client(srv.address) as c:
        got = _concurrently([lambda img=img: c.search_audio_by_image(img, k=5) for img in images])
    assert [[h.segment_id for h in r.hits] for r in got] == want
    assert _batches(srv, "image") == (1, 6)
    assert _batches(srv, "search")[1] == 6  # and their searches went through the search batcher


def test_a_bad_input_in_a_batch_fails_only_its_own_call(start_server, assets, embedder):
    """Audio with NaN samples decodes but the model refuses it: batched with four good queries, only it fails."""
    srv = start_server(max_batch=5, max_batch_delay_ms=2000, cache_size=0)
    good = [wav_bytes(1.0, f) for f in (220.0, 440.0, 880.0, 1760.0)]
    queries = good[:2] + [_nan_wav()] + good[2:]
    with Bundle.open(assets.bundle) as b:
        want = [[h.segment_id for h in b.search("image", embedder.embed_audio(read_audio(w, 0.0, None, 16000)[None]), 4)[0]] for w in good]
    with Client(srv.address) as c:
        got = _concurrently([lambda q=q: c.search_images_by_audio(q, k=4) for q in queries])
    bad = got.pop(2)
    assert isinstance(bad, AvlearnError) and bad.code == "INVALID_ARGUMENT", bad
    assert "finite" in bad.message, bad.message
    assert [[h.segment_id for h in r.hits] for r in got] == want
    assert _batches(srv, "audio") == (1, 5)  # one batch of 5 ...
    assert srv.metrics.batch_splits.labels("audio")._value.get() == 1  # ... that failed whole and was re-run item by item


def test_concurrent_localize_calls_share_one_forward_pass(start_server, embedder):
    srv = start_server(max_batch=4, max_batch_delay_ms=2000, cache_size=0)
    pairs = [(wav_bytes(1.0, f), png_bytes(40 + 8 * i, 64, 30 * i)) for i, f in enumerate((220.0, 440.0, 880.0, 1760.0))]
    with Client(srv.address) as c:
        got = _concurrently([lambda a=a, i=i: c.localize(a, i) for a, i in pairs])
    assert _batches(srv, "localize") == (1, 4)
    for (a, img), loc in zip(pairs, got):
        direct = embedder.localize(read_image(img), read_audio(a, 0.0, 1.0, 16000))
        assert loc.heatmap.shape == read_image(img).shape[:2]  # each call gets the heatmap of its own image
        assert np.allclose(loc.grid, direct.grid, atol=1e-4) and loc.score == pytest.approx(direct.score, abs=1e-4)
