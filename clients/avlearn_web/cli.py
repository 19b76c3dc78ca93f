"""`avlearn web`: serve the upload page in front of a running gRPC server."""

from __future__ import annotations

import argparse
import os


def _web(args: argparse.Namespace) -> int:
    from avlearn_web.app import serve_web

    token = open(args.auth_token_file).read().strip() if args.auth_token_file else None
    print(f"avlearn web on http://{args.host}:{args.port} → gRPC {args.server}")
    serve_web(args.server, host=args.host, port=args.port, token=token)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="web page: upload an image to hear nearest sounds, or audio + image for a heatmap")
    p.add_argument("--server", default=os.environ.get("AVLEARN_SERVER", "localhost:50051"), help="gRPC server HOST:PORT")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--auth-token-file", default=None)
    p.set_defaults(func=_web)
