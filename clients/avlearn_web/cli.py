"""`avlearn web`: serve the upload page in front of a running gRPC server."""

from __future__ import annotations

import argparse
import os


def _web(args: argparse.Namespace) -> int:
    from avlearn.errors import require_path
    from avlearn_web.app import serve_web

    token = (
        require_path(args.auth_token_file, "a file holding the server's bearer token", "--auth-token-file", kind="file").read_text().strip()
        if args.auth_token_file
        else None
    )
    print(f"avlearn web on http://{args.host}:{args.port} → gRPC {args.server}")
    serve_web(args.server, host=args.host, port=args.port, token=token)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="web page: an image → the nearest sounds, a sound → the nearest frames, sound + image → a heatmap")
    p.add_argument("--server", default=os.environ.get("AVLEARN_SERVER", "localhost:50051"), help="gRPC server HOST:PORT ($AVLEARN_SERVER)")
    p.add_argument("--host", default="127.0.0.1", help="interface the page listens on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port of the page")
    p.add_argument("--auth-token-file", default=None, help="file holding the server's bearer token (sent with every call)")
    p.set_defaults(func=_web)
