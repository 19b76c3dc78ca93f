"""Generate the Python stubs of ``proto/avlearn/v1/*.proto`` into the wire package ``proto/avlearn_proto``.

protoc names generated modules after the proto package (``from avlearn.v1 import types_pb2``),
which would clash with our core package ``avlearn``. So the stubs are generated into a
temporary folder, moved flat into ``avlearn_proto/`` and their cross-imports rewritten
to relative ones (``from . import types_pb2``). The descriptor pool still sees the files as
``avlearn/v1/*.proto`` in package ``avlearn.v1``, so reflection and grpcurl show the real names.

Usage:
    python proto/generate.py            # (re)write the committed stubs
    python proto/generate.py --check    # exit 1 if the committed stubs are stale
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PROTO_DIR = PROTO_ROOT / "avlearn" / "v1"
OUT_DIR = PROTO_ROOT / "avlearn_proto"
HAND_WRITTEN = frozenset({"records.py"})  # typed views of the result messages, kept beside the stubs
_IMPORT = re.compile(r"^from avlearn\.v1 import (\w+)", re.MULTILINE)
_INIT = '"""avlearn_proto: the wire package, generated protobuf/gRPC stubs of proto/avlearn/v1 (do not edit; run proto/generate.py), and records.py (hand-written typed views of the result messages).\n\nImported by the server (services) and the client (avlearn_client) alike; needs only grpcio and protobuf.\n"""\n'


def generate() -> dict[str, str]:
    """Run protoc on every proto file; return {file name: final text} of the stubs."""
    from grpc_tools import protoc

    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        raise FileNotFoundError(f"no .proto files in {PROTO_DIR}")
    with tempfile.TemporaryDirectory() as tmp:
        import grpc_tools

        include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *[str(p.relative_to(PROTO_ROOT)) for p in protos],
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed: " + " ".join(args))
        out = {"__init__.py": _INIT}
        for path in sorted((Path(tmp) / "avlearn" / "v1").iterdir()):
            if path.suffix in (".py", ".pyi"):
                out[path.name] = _IMPORT.sub(r"from . import \1", path.read_text())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed stubs instead of writing")
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        stale = [name for name, text in files.items() if not (OUT_DIR / name).is_file() or (OUT_DIR / name).read_text() != text]
        extra = sorted(p.name for p in OUT_DIR.glob("*.py*") if p.name not in files and p.name not in HAND_WRITTEN)
        if stale or extra:
            print(f"stale stubs: {stale}; unexpected files: {extra}. Run: python proto/generate.py", file=sys.stderr)
            return 1
        print("stubs are current")
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT_DIR / name).write_text(text)
    print(f"wrote {len(files)} files to {OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
