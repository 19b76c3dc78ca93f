"""Smoke test of ``bench/scale.py --quick``: every stage runs at N and 2N through the real CLI and lands in the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_scale_quick_runs_every_stage(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("", "clients", "proto"))}
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), "--quick", "--work", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out = json.loads((tmp_path / "scale.json").read_text())
    for stage in ("prepare", "train", "eval", "embed", "index", "serve"):
        for name in ("N", "2N"):
            row = out["stages"][stage][name]
            assert row["rc"] == 0 and row["peak_rss_mb"] > 0 and row["per_sec"] > 0, (stage, name, row)
    assert out["stages"]["prepare"]["2N"]["segments"] == 2 * out["stages"]["prepare"]["N"]["segments"]
    assert set(out["ratios"]) == {"prepare", "train", "eval", "embed", "index", "serve"}
    assert "serve" in (tmp_path / "scale.txt").read_text()
