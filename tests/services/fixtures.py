"""Shared fixtures for service and client tests: tiny checkpoints, a tiny bundle, servers, a real redis-server.

Loaded by tests/services/conftest.py and tests/clients/conftest.py (``from fixtures import *``
after putting this folder on sys.path).
"""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parents[1]

from avlearn.testing import require_tool  # noqa: E402

TONES_HZ = (220.0, 440.0, 880.0, 1760.0)


@dataclass(frozen=True)
class Assets:
    checkpoint: Path  # ave_net test_tiny
    localizer: Path  # avol_net test_tiny
    archive: Path  # a folder of tone videos
    embeddings: Path
    bundle: Path
    root: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_clip(
    path: Path, index: int, freq_hz: float, *, seconds: float = 3.0, fps: int = 25, size: tuple[int, int] = (64, 96), sample_rate_hz: int = 16000
) -> Path:
    """A tiny H.264+AAC clip: frame i of clip v has a colour unique to (v, i) and a left/right split
    that moves with v; the audio is a sine at ``freq_hz``."""
    from avlearn.media.writer import write_video

    h, w = size
    n = int(round(seconds * fps))

    def frames():
        for i in range(n):
            f = np.empty((h, w, 3), np.uint8)
            f[..., 0] = (70 * index + 3 * i) % 256
            f[..., 1] = (3 * i) % 256
            f[..., 2] = (255 - 50 * index) % 256
            f[:, : (w * (index + 1)) // 6] = 255 - f[:, : (w * (index + 1)) // 6]
            yield f

    t = np.arange(int(round(seconds * sample_rate_hz))) / sample_rate_hz
    wave = (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    write_video(path, frames(), fps, audio=wave, sample_rate_hz=sample_rate_hz)
    return path


def make_archive(folder: Path, tones=TONES_HZ, seconds: float = 3.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(tones):
        make_clip(folder / f"clip_{i}_{int(f)}hz.mp4", i, f, seconds=seconds)
    return folder


def build_assets(root: Path) -> Assets:
    import torch

    from avlearn.checkpoint import save_checkpoint
    from avlearn.index.build import build_bundle
    from avlearn.models import create_model
    from avlearn.pipeline.embed import run_embed

    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "ave", create_model("ave_net", "test_tiny"))
    loc = save_checkpoint(root / "avol", create_model("avol_net", "test_tiny"))
    archive = make_archive(root / "archive")
    emb = root / "embeddings"
    run_embed(ckpt, archive, emb, workers=1, show_progress=False, safe=False, device="cpu")
    bundle = build_bundle(emb, root / "bundle", gpu="off")
    return Assets(Path(ckpt), Path(loc), archive, emb, Path(bundle), root)


def copy_bundle(assets: Assets, target: Path, bundle_id: str) -> Path:
    """A copy of the test bundle at ``target`` that reports ``bundle_id``."""
    from avlearn.index.bundle import Bundle

    shutil.copytree(assets.bundle.resolve(), target)
    manifest = (target / "manifest.json").read_text().replace(Bundle.open(assets.bundle).bundle_id, bundle_id)
    (target / "manifest.json").write_text(manifest)
    return target


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Assets:
    return build_assets(tmp_path_factory.mktemp("svc_assets"))


@pytest.fixture(scope="session")
def embedder(assets):
    import torch

    from avlearn.embed import Embedder

    torch.set_num_threads(1)
    return Embedder.from_checkpoint(assets.checkpoint, localizer=assets.localizer, device="cpu")


@pytest.fixture
def start_server(assets, embedder, tmp_path):
    """Factory: start_server(**settings_overrides) -> ServerHandle on 127.0.0.1:<free port>; stopped at teardown."""
    from services.server import serve
    from services.settings import Settings

    handles = []

    def start(**overrides):
        base = Settings(
            bundle=assets.bundle,
            checkpoint=assets.checkpoint,
            localizer_checkpoint=assets.localizer,
            host="127.0.0.1",
            port=0,
            job_roots=(assets.archive.parent,),
            job_output=tmp_path / "jobs",
            device="cpu",
            grace_sec=1.0,
        )
        emb = overrides.pop("embedder", embedder)
        replica = overrides.pop("replica", None)
        handle = serve(replace(base, **overrides), embedder=emb, replica=replica)
        handles.append(handle)
        return handle

    yield start
    for h in handles:
        h.stop(0.5)


@pytest.fixture
def server(start_server):
    return start_server()


class RedisServer:
    """A real redis-server on a free port in a temp dir; kill()/start() for fault tests."""

    def __init__(self, workdir: Path, binary: str) -> None:
        self.workdir = workdir
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "no",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_timeout=0.2).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def redis_server(tmp_path):
    binary = require_tool("redis-server")
    (tmp_path / "redis").mkdir()
    srv = RedisServer(tmp_path / "redis", binary)
    srv.start()
    yield srv
    srv.kill()


def png_bytes(h: int = 48, w: int = 64, value: int = 120) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(seconds: float = 1.0, freq_hz: float = 440.0, sample_rate_hz: int = 16000, tmp: Path | None = None) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32), sample_rate_hz, format="WAV")
    return buf.getvalue()


class Load:
    """Background threads issuing ``queries(client, rng)`` until stopped; records every failure."""

    def __init__(self, address: str, queries, threads: int = 3) -> None:
        self.address = address
        self.queries = queries
        self.ok = 0
        self.failures: list[str] = []
        self.bundle_ids: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, seed: int) -> None:
        from avlearn_client.client import Client
        from avlearn_client.types import AvlearnError

        rng = np.random.default_rng(seed)
        with Client(self.address, timeout_sec=20, retries=0) as c:
            while not self._stop.is_set():
                try:
                    res = self.queries(c, rng)
                    with self._lock:
                        self.ok += 1
                        self.bundle_ids.add(res.bundle_id)
                except AvlearnError as exc:
                    with self._lock:
                        self.failures.append(f"{exc.code}: {exc.message}")

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
