"""Web test fixtures: the service fixtures of tests/services/fixtures.py (a real gRPC server on a tiny bundle)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from fixtures import assets, embedder, png_bytes, server, start_server, wav_bytes  # noqa: E402,F401
