"""`avlearn serve --processes 2` on an IVF bundle: the replicas memory-map one copy of each FAISS index (default), or read it into RAM (--index-in-ram)."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from test_replicas import _metric, replicated_server

from avlearn.index.build import build_bundle_from_arrays
from avlearn.index.bundle import Bundle
from avlearn.index.manifest import MODALITIES
from avlearn.index.metadata import SegmentMeta
from avlearn_proto import service_pb2, service_pb2_grpc, types_pb2

N = 2000


def _ivf_bundle(assets, out: Path) -> Path:
    """An IVF,SQ8 bundle of clustered vectors in the test model's dimension, stamped with its checkpoint hash."""
    with Bundle.open(assets.bundle) as b:
        dim, ckpt = b.dim("image"), b.manifest.checkpoint_hash
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    ids = np.arange(N, dtype=np.int64) * 3
    vectors = {m: (ids, centres[rng.integers(20, size=N)] + 0.3 * rng.standard_normal((N, dim)).astype(np.float32)) for m in MODALITIES}
    segments = [SegmentMeta(int(i), f"clip{i // 30}", f"/a/clip{i // 30}.mp4", float(i % 30)) for i in ids]
    return build_bundle_from_arrays(out, vectors, segments, checkpoint_hash=ckpt, factory="IVF16,SQ8", queries=50)


def _replicas(pid: int) -> list[int]:
    children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [p for p in children if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]


def _mapped(pid: int) -> set[str]:
    return {line.split(maxsplit=5)[5].strip() for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if len(line.split(maxsplit=5)) == 6}


def _search(address: str, modality: str, vector: np.ndarray) -> list[int]:
    """SearchSimilar by vector over its own TCP connection (so the kernel may pick either replica)."""
    with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        mod = types_pb2.MODALITY_AUDIO if modality == "audio" else types_pb2.MODALITY_IMAGE
        req = service_pb2.SearchSimilarRequest(modality=mod, query=types_pb2.MediaInput(vector=types_pb2.Vector(values=vector.tolist())), k=5)
        return [h.segment_id for h in service_pb2_grpc.AvlearnServiceStub(ch).SearchSimilar(req, timeout=30).hits]


@pytest.mark.parametrize("in_ram", [False, True], ids=["mmap", "in-ram"])
def test_two_replicas_serve_an_ivf_bundle_memory_mapped_or_in_ram(assets, tmp_path, in_ram):
    """Both replicas answer with the hits of the bundle searched in this process; by default each maps the
    bundle's .faiss files (one page-cache copy), with --index-in-ram none does."""
    bundle = _ivf_bundle(assets, tmp_path / "ivf")
    index_files = {str(p) for p in bundle.resolve().glob("*.faiss")}
    assert len(index_files) == 2
    rng = np.random.default_rng(1)
    queries = [(m, rng.standard_normal(Bundle.open(bundle).dim(m)).astype(np.float32)) for m in MODALITIES for _ in range(8)]
    with Bundle.open(bundle) as local:
        want = [[int(i) for i in local.search_positions(m, v, 5)[1][0]] for m, v in queries]
    with replicated_server(assets, tmp_path, bundle=bundle, extra=("--index-in-ram",) if in_ram else ()) as (proc, address, ports):
        replicas = _replicas(proc.pid)
        assert len(replicas) == 2
        for pid in replicas:
            mapped = index_files & _mapped(pid)
            assert mapped == (set() if in_ram else index_files), (pid, mapped)
        assert [_search(address, m, v) for m, v in queries] == want
        served = [_metric(p, "SearchSimilar") for p in ports]
        assert sum(served) == len(queries) and min(served) > 0, served  # all on one replica: p = 2 ** -15
