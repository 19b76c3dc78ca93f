"""Index at scale: memory-mapped bundles (shared by processes), sharded indices, the GPU path (skipped without one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from index_helpers import clustered

from avlearn.index import faiss_index as fi
from avlearn.index import faiss_search as fs
from avlearn.index.build import build_bundle_from_arrays
from avlearn.index.bundle import Bundle
from avlearn.index.manifest import MODALITIES
from avlearn.index.metadata import SegmentMeta

N, D = 3000, 32


def _mapped_files() -> set[str]:
    """Paths of the files this process has memory-mapped (/proc/self/maps)."""
    return {line.split(maxsplit=5)[5].strip() for line in Path("/proc/self/maps").read_text().splitlines() if len(line.split(maxsplit=5)) == 6}


def _bundle(tmp_path: Path, factory: str) -> Path:
    ids = np.arange(0, 2 * N, 2, dtype=np.int64)  # segment ids are not positions
    vectors = {m: (ids, clustered(N, D, seed=i)) for i, m in enumerate(MODALITIES)}
    segments = [SegmentMeta(int(i), f"clip{i // 20}", f"/a/clip{i // 20}.mp4", float(i % 20)) for i in ids]
    return build_bundle_from_arrays(tmp_path / factory.replace(",", "_"), vectors, segments, factory=factory, queries=50)


@pytest.mark.parametrize("factory", ["Flat", "IVF32,SQ8", "IVF32_HNSW32,SQ8", "OPQ8_32,IVF32,PQ8", "HNSW16"])
def test_mmap_bundle_returns_the_hits_of_the_in_ram_bundle(tmp_path, factory):
    """Same ids and scores (segments and clips) whether the FAISS indices are memory-mapped or read into RAM;
    the memory-mapped bundle's index files are mapped by this process, the in-RAM one's are not."""
    path = _bundle(tmp_path, factory)
    q = clustered(40, D, seed=7)
    index_files = {str(p) for p in path.resolve().glob("*.faiss")}
    with Bundle.open(path) as ram:
        assert not ram.mmap and not index_files & _mapped_files()
        want = {m: ram.search_positions(m, q, 10) for m in MODALITIES}
        want_clips = ram.search_clips("audio", q, 5)
    with Bundle.open(path, mmap=True, serving=True) as mapped:
        assert mapped.mmap
        if factory.startswith(("IVF", "OPQ")) or hasattr(fs.load_faiss(), "IO_FLAG_MMAP_IFC"):  # older FAISS maps IVF lists only
            assert index_files <= _mapped_files()
        for m in MODALITIES:
            scores, ids = mapped.search_positions(m, q, 10)
            np.testing.assert_array_equal(ids, want[m][1])
            np.testing.assert_allclose(scores, want[m][0], rtol=1e-6)
            assert (ids >= 0).all() and (ids % 2 == 0).all()
        assert [[h.segment_id for h in row] for row in mapped.search_clips("audio", q, 5)] == [[h.segment_id for h in row] for row in want_clips]


def test_read_index_mmap_is_read_only(tmp_path):
    """A memory-mapped index is a view of the file: the file is unchanged by searching, and it reports the file's vectors."""
    x = clustered(2000, D)
    index = fi.build_index(x, "IVF16,SQ8")
    path = tmp_path / "i.faiss"
    fi.write_index(index, str(path))
    before = path.read_bytes()
    mapped = fs.read_index(str(path), mmap=True)
    assert mapped.ntotal == 2000
    mapped.search(x[:10], 5)
    del mapped
    assert path.read_bytes() == before


@pytest.mark.parametrize("factory", ["Flat", "IVF32,SQ8", "IVF32_HNSW32,SQ8"])
@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_index_on_cpu_equals_one_index(factory, shards):
    """IndexShards over contiguous row ranges (one trained index, copied) returns the single index's positions and scores."""
    x = clustered(N, D, seed=3)
    q = clustered(50, D, seed=9)
    one = fi.build_index(x, factory)
    sharded = fi.build_sharded(x, factory, shards)
    assert sharded.ntotal == one.ntotal == N
    params = fs.SearchParams(faiss="nprobe=4" if "IVF" in factory else "")
    fs.apply_params(one, params)
    fs.apply_params(sharded, params)
    s1, p1 = fs.search(one, fs.normalize(q), 10, params)
    s2, p2 = fs.search(sharded, fs.normalize(q), 10, params)
    np.testing.assert_allclose(s2, s1, rtol=1e-5, atol=1e-6)
    assert (p1 == p2).mean() > 0.99  # ties between equal scores may order differently
    assert p2.max() >= N // shards  # positions of later shards are global, not shard-local


def test_sharded_rejects_more_shards_than_rows():
    with pytest.raises(ValueError, match="shards must be in 1..10"):
        fi.build_sharded(clustered(10, D), "Flat", 11)


def test_to_gpu_without_a_gpu_says_so():
    if fi.gpu_available():
        pytest.skip("a GPU is present (see test_gpu_search_equals_cpu)")
    with pytest.raises(RuntimeError, match="FAISS sees no GPU"):
        fs.to_gpu(fi.build_index(clustered(100, D), "Flat"))


@pytest.mark.parametrize("shard", [False, True])
def test_gpu_search_equals_cpu(tmp_path, shard):
    """On a GPU machine (faiss-gpu): a bundle searched on GPU (replicated or sharded) returns the CPU hits."""
    if not fi.gpu_available():
        pytest.skip("FAISS sees no GPU (faiss-cpu or no device)")
    path = _bundle(tmp_path, "IVF32,SQ8")
    q = clustered(40, D, seed=7)
    with Bundle.open(path) as cpu:
        want = cpu.search_positions("image", q, 10)
    index = fs.read_index(str(path.resolve() / "image.faiss"))
    gpu = fs.to_gpu(index, shard=shard)
    assert gpu.ntotal == index.ntotal
    with Bundle.open(path, gpu=True) as on_gpu:
        ids = on_gpu.search_positions("image", q, 10)[1]
    assert (ids == want[1]).mean() > 0.95
