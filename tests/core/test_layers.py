"""The layering of docs/architecture.md, checked by import-linter (contracts in pyproject.toml).

The check runs on this tree, and on a copy with one forbidden import added, which must fail:
a contract that cannot fail would guard nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("avlearn", "training", "indexer", "services", "demo", "clients", "proto")
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(tree / p) for p in ("", "clients", "proto"))}
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def _copy_tree(dst: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dst / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


@pytest.fixture(scope="module")
def lint_available() -> None:
    if not LINT.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")


def test_the_tree_keeps_every_contract(lint_available) -> None:
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "3 kept, 0 broken" in res.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("avlearn/index/bundle.py", "import services.engine  # noqa\n", "demo > apps"),  # the library imports an app
        ("training/loop.py", "import indexer.cli  # noqa\n", "demo > apps"),  # one app imports another
        ("clients/avlearn_client/types.py", "import torch  # noqa\n", "client SDK"),  # the client stays torch-free
        ("avlearn/models/_registry.py", "import avlearn.eval.avc  # noqa\n", "No import cycles"),  # models <-> eval cycle
    ],
)
def test_a_forbidden_import_breaks_a_contract(lint_available, tmp_path, module, line, broken) -> None:
    tree = _copy_tree(tmp_path / "tree")
    target = tree / module
    target.write_text(target.read_text() + "\n" + line)
    res = _lint(tree)
    assert res.returncode != 0
    report = res.stdout[res.stdout.index("Broken contracts") :]
    assert broken in report, report[-2000:]
