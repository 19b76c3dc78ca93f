"""The bundle writer: embedding shards (or plain arrays) -> a published FAISS index bundle.

The format is defined in ``avlearn.index.manifest``; ``avlearn.index.bundle`` reads it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from avlearn.index import faiss_index as fi
from avlearn.index import faiss_search as fs
from avlearn.index.manifest import METADATA, MODALITIES, Manifest, ids_file, index_file, new_bundle_id, publish, staging_dir, vectors_file
from avlearn.index.metadata import SegmentMeta, register_in_redis, split_labels, write_metadata
from avlearn.pipeline.writer import ERRORS_JSONL, done_units, read_embed_config, read_marker, read_shard

log = logging.getLogger(__name__)

DEFAULT_QUERIES = 500
# fault injection for tests: sleep this long after the staging dir is complete, before publishing
_DELAY_ENV = "AVLEARN_TEST_BUILD_DELAY_SEC"


def _modality_rows(shard, modality: str) -> np.ndarray:
    return np.ones(len(shard.ids), bool) if modality == "image" else shard.has_audio.astype(bool)


def _fill_staging(emb: Path, staging: Path, dim: int) -> dict[str, int]:
    """Copy vectors (normalised, float16) and ids into memory maps; write metadata.sqlite."""
    units = sorted(done_units(emb))
    counts = {m: 0 for m in MODALITIES}
    for u in units:
        with np.load(emb / "shards" / f"shard-{u:06d}.npz", allow_pickle=False) as z:
            ha = z["has_audio"]
        counts["image"] += len(ha)
        counts["audio"] += int(ha.sum())
    maps = {}
    for m in MODALITIES:
        maps[m] = (
            np.lib.format.open_memmap(vectors_file(staging, m), mode="w+", dtype=np.float16, shape=(counts[m], dim)),
            np.lib.format.open_memmap(ids_file(staging, m), mode="w+", dtype=np.int64, shape=(counts[m],)),
        )
    fill = {m: 0 for m in MODALITIES}
    last_id = -1

    def rows() -> Iterator[SegmentMeta]:
        nonlocal last_id
        for u in units:
            shard = read_shard(emb, u)
            if len(shard.ids) == 0:
                continue
            if shard.ids[0] <= last_id or np.any(np.diff(shard.ids) <= 0):
                raise ValueError(f"shard {u}: segment ids are duplicated or out of order")
            last_id = int(shard.ids[-1])
            for m in MODALITIES:
                sel = _modality_rows(shard, m)
                vec, ids = maps[m]
                n = int(sel.sum())
                vec[fill[m] : fill[m] + n] = fs.normalize(getattr(shard, m)[sel]).astype(np.float16)
                ids[fill[m] : fill[m] + n] = shard.ids[sel]
                fill[m] += n
            for i in range(len(shard.ids)):
                yield SegmentMeta(
                    int(shard.ids[i]),
                    str(shard.clip_id[i]),
                    str(shard.source[i]),
                    float(shard.start_sec[i]),
                    split_labels(str(shard.labels[i])),
                    bool(shard.has_audio[i]),
                )

    n_meta = write_metadata(staging / METADATA, rows())
    for vec, ids in maps.values():
        vec.flush()
        ids.flush()
    counts["segments"] = n_meta
    return counts


def build_bundle(
    embeddings: str | os.PathLike,
    out: str | os.PathLike,
    *,
    factory: str = "auto",
    memory_budget_gb: float | None = None,
    gpu: str = "auto",
    k: int = 10,
    target_recall: float = fi.TARGET_RECALL,
    queries: int = DEFAULT_QUERIES,
    redis_url: str | None = None,
    seed: int = 0,
) -> Path:
    """Build one inner-product index per modality over the finished shards of ``embeddings``.

    ``factory="auto"`` picks by size and ``memory_budget_gb`` (see ``choose_factory``) and
    tunes search parameters to recall@k >= ``target_recall`` against exact search on
    ``queries`` held-out queries (the other modality's vectors: the cross-modal queries the
    service answers). The bundle is staged beside ``out`` and published atomically.

    Returns:
        ``out`` (a symlink to the new version dir).

    Raises:
        FileNotFoundError: ``embeddings`` is not an embeddings dir.
        ValueError: no finished shards, no segment in them, duplicated ids, or a bad factory.
        MemoryBudgetError: nothing fits ``memory_budget_gb``.
    """
    emb = Path(embeddings)
    cfg = read_embed_config(emb)
    units = done_units(emb)
    if not units:
        raise ValueError(f"{emb} has no finished embedding shards (run `avlearn embed` into it first)")
    if sum(int(read_marker(emb, u).get("segments", 0)) for u in units) == 0:
        raise ValueError(f"{emb} holds no embedded segment (no file could be decoded: see {emb / ERRORS_JSONL}); nothing to index")
    dim = int(cfg["dim"])
    provenance = {"checkpoint_hash": cfg.get("checkpoint_hash"), "checkpoint": cfg.get("checkpoint"), "embeddings": str(emb.resolve()), "source": cfg.get("data"),
                  "segment_sec": cfg.get("segment_sec"), "hop_sec": cfg.get("hop_sec")}  # fmt: skip
    out = _stage_and_publish(
        out, lambda staging: _fill_staging(emb, staging, dim), provenance,
        factory=factory, memory_budget_gb=memory_budget_gb, gpu=gpu, k=k, target_recall=target_recall, queries=queries, seed=seed,
    )  # fmt: skip
    if redis_url:
        register_bundle(out, redis_url)
    return out


def build_bundle_from_arrays(
    out: str | os.PathLike,
    vectors: dict[str, tuple[np.ndarray, np.ndarray]],
    segments: Iterable[SegmentMeta],
    *,
    checkpoint_hash: str | None = None,
    factory: str = "auto",
    k: int = 10,
    target_recall: float = fi.TARGET_RECALL,
    queries: int = DEFAULT_QUERIES,
    seed: int = 0,
) -> Path:
    """Build and publish a bundle from in-memory arrays (benchmarks, tests, other producers).

    Args:
        vectors: per modality, (ids (N,) int64 ascending, vectors (N, D)); normalised here.
        segments: the metadata row of every segment id.
    """

    def fill(staging: Path) -> dict[str, int]:
        counts = {}
        for m, (ids, vecs) in vectors.items():
            ids = np.asarray(ids, np.int64)
            if np.any(np.diff(ids) <= 0):
                raise ValueError(f"{m} ids must be unique and ascending")
            np.save(vectors_file(staging, m), fs.normalize(np.asarray(vecs, np.float32)).astype(np.float16))
            np.save(ids_file(staging, m), ids)
            counts[m] = len(ids)
        counts["segments"] = write_metadata(staging / METADATA, segments)
        return counts

    return _stage_and_publish(
        out, fill, {"checkpoint_hash": checkpoint_hash}, factory=factory, memory_budget_gb=None, gpu="off", k=k, target_recall=target_recall, queries=queries, seed=seed,
    )  # fmt: skip


def _stage_and_publish(
    out: str | os.PathLike, fill, provenance: dict, *, factory: str, memory_budget_gb: float | None, gpu: str, k: int, target_recall: float, queries: int, seed: int,
) -> Path:  # fmt: skip
    """Stage a bundle beside ``out`` (``fill(staging) -> counts`` writes vectors, ids and metadata),
    build one tuned index per modality, write the manifest and publish; the staging dir is removed on failure."""
    use_gpu = fi.resolve_gpu(gpu)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bundle_id = new_bundle_id()
    staging = staging_dir(out, bundle_id)
    t0 = time.perf_counter()
    try:
        counts = fill(staging)
        timings = {"stage_sec": round(time.perf_counter() - t0, 3)}
        vecs = {m: np.load(vectors_file(staging, m), mmap_mode="r") for m in MODALITIES if vectors_file(staging, m).is_file()}
        rng = np.random.default_rng(seed)
        factories, params, recall, detail, dims = {}, {}, {}, {}, {}
        for m in MODALITIES:
            if not counts.get(m):
                continue
            other = "audio" if m == "image" else "image"
            qsrc = other if counts.get(other) else m
            qn = min(queries, counts[qsrc])
            rows = np.sort(rng.choice(counts[qsrc], qn, replace=False)) if qn else np.zeros(0, int)
            q = np.asarray(vecs[qsrc][rows], np.float32)
            built = fi.build_tuned(vecs[m], q, factory=factory, memory_budget_gb=memory_budget_gb, use_gpu=use_gpu, k=k, target_recall=target_recall, seed=seed)
            fi.write_index(built.index, str(index_file(staging, m)))
            factories[m] = built.factory
            params[m] = built.params.to_dict()
            recall[m] = None if built.recall is None else round(built.recall, 4)
            dims[m] = int(vecs[m].shape[1])
            detail[m] = {"k": k, "target": target_recall, "queries": built.queries, "query_modality": qsrc, "estimated_memory_bytes": built.memory_bytes}
            timings[f"{m}_build_sec"] = round(built.build_sec, 3)
            timings[f"{m}_tune_sec"] = round(built.tune_sec, 3)
            log.info("%s: %s over %d vectors, %s, recall@%d=%s", m, built.factory, counts[m], built.params.to_dict(), k, recall[m])
        Manifest(
            bundle_id=bundle_id, counts=counts, dims=dims, factories=factories, search_params=params, recall=recall, recall_detail=detail,
            gpu_build=use_gpu, build_sec={**timings, "total": round(time.perf_counter() - t0, 3)}, **provenance,
        ).write(staging)  # fmt: skip
        delay = float(os.environ.get(_DELAY_ENV, "0") or 0)
        if delay > 0:
            time.sleep(delay)
        publish(staging, out, bundle_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def register_bundle(bundle: str | os.PathLike, redis_url: str) -> int:
    """Mirror a published bundle's manifest and segment metadata into Redis (idempotent)."""
    from avlearn.index.bundle import Bundle

    with Bundle.open(Path(bundle)) as b:
        return register_in_redis(redis_url, b.manifest.to_dict(), b.metadata().iter_all())


def bundle_info(bundle: str | os.PathLike) -> dict:
    """The manifest of a bundle plus where it lives."""
    from avlearn.index.bundle import Bundle

    with Bundle.open(Path(bundle)) as b:
        return {"path": str(b.path), **b.manifest.to_dict()}
