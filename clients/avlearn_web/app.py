"""The web page: an image → the nearest sounds, a sound → the nearest frames, audio + image → the heatmap.

A small Flask app (server-rendered HTML forms, no JavaScript needed) that talks to the
gRPC server only through ``avlearn_client``. Hit previews (a frame and 1 s of audio) are
cut from the hit's source file with ``avlearn.media`` when that file is readable here
(the web server runs beside the index, as in the demo); otherwise the hit is listed
without a preview. No torch is imported.
"""

from __future__ import annotations

import base64
import html
import io
import os

from flask import Flask, Response, abort, request

from avlearn_client import AvlearnError, Client

MAX_UPLOAD_BYTES = 16 * 1024 * 1024

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>avlearn</title>
<style>body{{font-family:sans-serif;margin:20px;max-width:1100px}} form{{border:1px solid #ccc;padding:10px;margin:10px 0}}
.hits{{display:flex;flex-wrap:wrap;gap:10px}} .hit{{border:1px solid #ccc;padding:6px;font-size:12px;width:170px}}
.hit img{{max-width:100%;height:auto}} .query{{max-width:100%;max-height:160px;width:auto;height:auto;vertical-align:middle}}
#heatmap{{display:block;max-width:min(100%,640px);min-width:min(100%,384px);height:auto}} .provenance{{color:#555;font-size:13px}}
.error{{color:#b00;font-weight:bold}} audio{{width:160px;max-width:100%}}</style></head><body>
<h1>avlearn: what does it sound like, where is the sound?</h1>
<p>Index <code>{bundle}</code>: {counts}</p><p class="provenance" id="provenance">{provenance}</p>
<form id="image2audio" action="/image2audio" method="post" enctype="multipart/form-data">
<b>Image → sounds.</b> <input type="file" name="image" accept="image/*" required> k <input type="number" name="k" value="5" min="1" max="50">
<select name="group"><option value="clips" selected>one hit per clip</option><option value="segments">every segment</option></select>
<button type="submit">Find sounds</button></form>
<form id="audio2image" action="/audio2image" method="post" enctype="multipart/form-data">
<b>Sound → images.</b> <input type="file" name="audio" accept="audio/*" required> k <input type="number" name="k" value="5" min="1" max="50">
<select name="group"><option value="clips" selected>one hit per clip</option><option value="segments">every segment</option></select>
<button type="submit">Find images</button></form>
<form id="localize" action="/localize" method="post" enctype="multipart/form-data">
<b>Audio + image → heatmap.</b> audio <input type="file" name="audio" accept="audio/*" required> image <input type="file" name="image" accept="image/*" required>
<button type="submit">Locate the sound</button></form>
{body}</body></html>"""


def provenance_text(manifest: dict) -> str:
    """Where the index came from, in one line: the model, the media, the build date (HTML-escaped)."""
    parts = []
    if manifest.get("checkpoint"):
        digest = str(manifest.get("checkpoint_hash") or "")[:12]
        parts.append(f"model {html.escape(str(manifest['checkpoint']))}" + (f" ({html.escape(digest)})" if digest else ""))
    if manifest.get("source"):
        parts.append(f"media from {html.escape(str(manifest['source']))}")
    if manifest.get("created"):
        parts.append(f"built {html.escape(str(manifest['created']).replace('T', ' '))}")
    return "; ".join(parts)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def create_app(server: str, *, token: str | None = None, timeout_sec: float = 30.0) -> Flask:
    """A Flask app bound to the gRPC server at ``server`` (HOST:PORT)."""
    app = Flask("avlearn_web")
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    client = Client(server, token=token, timeout_sec=timeout_sec)
    served_sources: set[str] = set()  # previews are cut only from files the index returned

    def page(body: str, status: int = 200) -> Response:
        try:
            info = client.index_info()
            bundle, counts = info.bundle_id, ", ".join(f"{k}: {v}" for k, v in info.counts.items())
            provenance = provenance_text(info.manifest)
        except AvlearnError as exc:
            bundle, counts, provenance = "unavailable", html.escape(str(exc)), ""
        return Response(_PAGE.format(bundle=html.escape(bundle), counts=counts, provenance=provenance, body=body), status=status, mimetype="text/html")

    def upload(name: str) -> bytes:
        f = request.files.get(name)
        data = f.read() if f is not None else b""
        if not data:
            abort(page(f'<p class="error">No {name} file was uploaded.</p>', 400))
        return data

    def hit_cards(hits: list) -> list[str]:
        """One card per hit: a frame and a second of audio cut from its source (when readable here), label, score, where."""
        cards = []
        for hit in hits:
            preview = ""
            if os.path.isfile(hit.source):
                served_sources.add(hit.source)
                preview = (
                    f'<img src="/preview/frame?src={_q(hit.source)}&t={hit.start_sec}" width="160"><br>'
                    f'<audio controls src="/preview/audio?src={_q(hit.source)}&t={hit.start_sec}"></audio><br>'
                )
            cards.append(
                f'<div class="hit">{preview}<b>{html.escape(";".join(hit.labels) or "(no label)")}</b> · {hit.score:.3f}'
                f"<br><small>{html.escape(os.path.basename(hit.source))} @ {hit.start_sec:.2f} s</small></div>"
            )
        return cards

    @app.get("/")
    def index() -> Response:
        return page("")

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            return Response(client.health(), mimetype="text/plain")
        except AvlearnError as exc:
            return Response(str(exc), status=503, mimetype="text/plain")

    @app.post("/image2audio")
    def image2audio() -> Response:
        image = upload("image")
        k = int(request.form.get("k", 5) or 5)
        by_clip = request.form.get("group", "clips") != "segments"  # one hit per clip unless asked otherwise
        try:
            res = client.search_audio_by_image(image, k=k, group_by_clip=by_clip)
        except AvlearnError as exc:
            return page(f'<p class="error">{html.escape(exc.code)}: {html.escape(exc.message)}</p>', 400 if exc.code == "INVALID_ARGUMENT" else 502)
        cards = hit_cards(res.hits)
        body = (
            f'<h2>Nearest sounds</h2><p><img class="query" src="{_data_uri(image, "image/*")}"> '
            f'{len(res.hits)} {"clips" if by_clip else "hits"} in {res.timings.total_ms:.1f} ms</p><div class="hits" id="results">{"".join(cards)}</div>'
        )
        return page(body)

    @app.post("/audio2image")
    def audio2image() -> Response:
        audio = upload("audio")
        k = int(request.form.get("k", 5) or 5)
        by_clip = request.form.get("group", "clips") != "segments"
        try:
            res = client.search_images_by_audio(audio, k=k, group_by_clip=by_clip)
        except AvlearnError as exc:
            return page(f'<p class="error">{html.escape(exc.code)}: {html.escape(exc.message)}</p>', 400 if exc.code == "INVALID_ARGUMENT" else 502)
        cards = hit_cards(res.hits)
        body = (
            f'<h2>Nearest frames</h2><p><audio controls src="{_data_uri(audio, _audio_mime(audio))}"></audio> '
            f'{len(res.hits)} {"clips" if by_clip else "hits"} in {res.timings.total_ms:.1f} ms</p><div class="hits" id="results">{"".join(cards)}</div>'
        )
        return page(body)

    @app.post("/localize")
    def localize() -> Response:
        audio, image = upload("audio"), upload("image")
        try:
            loc = client.localize(audio, image, overlay=True)
        except AvlearnError as exc:
            return page(f'<p class="error">{html.escape(exc.code)}: {html.escape(exc.message)}</p>', 400 if exc.code == "INVALID_ARGUMENT" else 502)
        body = (
            f'<h2>Where the sound comes from</h2><div id="results"><img id="heatmap" alt="heatmap over the uploaded image" src="{_data_uri(loc.overlay_png or b"", "image/png")}">'
            f"<p>correspondence score {loc.score:.3f}; peak at (y={loc.peak_yx[0]:.2f}, x={loc.peak_yx[1]:.2f}) on a {loc.grid.shape[0]}×{loc.grid.shape[1]} grid</p></div>"
        )
        return page(body)

    @app.get("/preview/audio")
    def preview_audio() -> Response:
        from avlearn.media import MediaError, read_audio
        from avlearn.media.writer import write_audio

        src, t = _preview_args()
        try:
            wave = read_audio(src, t, 1.0, 16000)
        except MediaError as exc:
            abort(Response(str(exc), status=404))
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            write_audio(tmp.name, wave, 16000)
            data = open(tmp.name, "rb").read()
        return Response(data, mimetype="audio/wav")

    @app.get("/preview/frame")
    def preview_frame() -> Response:
        from PIL import Image

        from avlearn.media import MediaError, read_frames

        src, t = _preview_args()
        try:
            frame = read_frames(src, [t]).images[0]
        except MediaError as exc:
            abort(Response(str(exc), status=404))
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=85)
        return Response(buf.getvalue(), mimetype="image/jpeg")

    def _preview_args() -> tuple[str, float]:
        src = request.args.get("src", "")
        try:
            t = float(request.args.get("t", "0"))
        except ValueError:
            abort(400)
        if src not in served_sources:  # never an arbitrary path: only sources of hits shown here
            abort(404)
        return src, t

    return app


def _audio_mime(data: bytes) -> str:
    """The MIME type of an uploaded sound from its first bytes (a browser plays a data URI only with a concrete type)."""
    if data[:4] == b"RIFF":
        return "audio/wav"
    if data[:4] == b"fLaC":
        return "audio/flac"
    if data[:4] == b"OggS":
        return "audio/ogg"
    if data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    return "application/octet-stream"


def _q(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


def serve_web(server: str, *, host: str = "127.0.0.1", port: int = 8080, token: str | None = None) -> None:
    """Serve the page with waitress (a production WSGI server) until interrupted."""
    from waitress import serve

    serve(create_app(server, token=token), host=host, port=port, threads=8)
