"""Client test fixtures: the service fixtures of tests/services/fixtures.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from fixtures import assets, embedder, redis_server, server, start_server  # noqa: E402,F401
