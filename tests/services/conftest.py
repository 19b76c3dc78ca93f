"""Service test fixtures (defined in fixtures.py, shared with tests/clients)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures import assets, embedder, redis_server, server, start_server  # noqa: E402,F401
