"""The avlearn_client package: no torch, retries, error mapping, and the CLI against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from fixtures import free_port, png_bytes, wav_bytes

from avlearn.cli import main as avlearn_main
from avlearn_client.client import Client, default_server, media_input
from avlearn_client.types import AvlearnError


def test_client_imports_no_torch():
    code = "import sys, avlearn_client, avlearn_client.client, avlearn_client.cli, avlearn_client.types; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_default_server_env(monkeypatch):
    monkeypatch.delenv("AVLEARN_SERVER", raising=False)
    assert default_server() == "localhost:50051"
    monkeypatch.setenv("AVLEARN_SERVER", "example:1234")
    assert default_server() == "example:1234" and Client().address == "example:1234"


def test_media_input_needs_exactly_one_source():
    with pytest.raises(ValueError):
        media_input()
    with pytest.raises(ValueError):
        media_input(b"x", segment_id=3)
    assert media_input(vector=np.arange(3)).vector.values == [0.0, 1.0, 2.0]


def test_unavailable_after_bounded_retries():
    port = free_port()  # nothing listens here
    t0 = time.monotonic()
    with Client(f"127.0.0.1:{port}", retries=2, backoff_sec=0.1, timeout_sec=10) as c, pytest.raises(AvlearnError) as err:
        c.index_info()
    assert err.value.code == "UNAVAILABLE" and time.monotonic() - t0 < 5


def test_retry_reaches_a_server_that_starts_late(start_server):
    port = free_port()
    started = []
    timer = threading.Timer(0.6, lambda: started.append(start_server(port=port)))
    timer.start()
    try:
        with Client(f"127.0.0.1:{port}", retries=6, backoff_sec=0.2, timeout_sec=30) as c:
            assert c.health() == "SERVING"
    finally:
        timer.join()
    assert started


def _cli(capsys, *argv) -> tuple[int, str]:
    code = avlearn_main(list(argv))
    captured = capsys.readouterr()
    _cli.last_err = captured.err
    return code, captured.out


def test_cli_query_localize_and_jobs(server, assets, tmp_path, capsys):
    img = tmp_path / "q.png"
    img.write_bytes(png_bytes())
    wav = tmp_path / "q.wav"
    wav.write_bytes(wav_bytes(1.0))
    addr = server.address
    code, out = _cli(capsys, "query", "image2audio", str(img), "-k", "3", "--server", addr, "--json")
    assert code == 0 and len(json.loads(out)["hits"]) == 3
    code, out = _cli(capsys, "query", "audio2image", str(wav), "--server", addr)  # one hit per clip by default: the 4 clips
    assert code == 0 and out.startswith("bundle ") and len(out.strip().splitlines()) == 1 + 4
    code, out = _cli(capsys, "query", "audio2image", str(wav), "--no-group-by-clip", "--server", addr, "--json")
    hits = json.loads(out)["hits"]
    assert code == 0 and len(hits) == 10 and len({h["clip_id"] for h in hits}) == 4  # 10 of the 12 segments
    video = sorted(assets.archive.glob("*.mp4"))[0]
    code, out = _cli(capsys, "query", "image2audio", str(video), "--time", "1.0", "-k", "2", "--server", addr, "--json")
    assert code == 0 and len(json.loads(out)["hits"]) == 2
    heat = tmp_path / "heat.png"
    code, out = _cli(capsys, "localize", "--audio", str(wav), "--image", str(img), "--out", str(heat), "--server", addr, "--json")
    assert code == 0 and heat.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and json.loads(out)["heatmap_shape"] == [48, 64]
    code, out = _cli(capsys, "jobs", "status", "nope", "--server", addr)
    assert code == 1 and "NOT_FOUND" in _cli.last_err
    code, out = _cli(capsys, "jobs", "submit", str(assets.archive), "--job-id", "cli1", "--no-bundle", "--watch", "--server", addr, "--json")
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert code == 0 and lines[-1]["state"] == "succeeded" and lines[-1]["segments"] == 12
    code, out = _cli(capsys, "jobs", "status", "cli1", "--server", addr)
    assert code == 0 and "succeeded" in out
    code, out = _cli(capsys, "jobs", "cancel", "cli1", "--server", addr, "--json")
    assert code == 0 and json.loads(out)["state"] == "succeeded"  # a finished job stays finished


def test_cli_error_is_reported(server, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code = avlearn_main(["query", "image2audio", str(bad), "--server", server.address])
    assert code == 1 and "INVALID_ARGUMENT" in capsys.readouterr().err
