"""The demo's `report.html`: retrieval gallery, heatmap overlays, training curves, metrics, timings.

Plain HTML + inline SVG (no plotting library); media are files in ``out/assets``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any


def _svg_curves(curves: dict[str, list[tuple[int, float]]], *, width: int = 420, height: int = 180) -> str:
    series = {k: v for k, v in curves.items() if v}
    if not series:
        return "<p>(no curves)</p>"
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    xs = [s for v in series.values() for s, _ in v]
    ys = [y for v in series.values() for _, y in v]
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y1 = y0 + 1.0
    pad = 30

    def px(x: float, y: float) -> str:
        return f"{pad + (x - x0) / max(1e-9, x1 - x0) * (width - 2 * pad):.1f},{height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad):.1f}"

    parts = [
        f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" style="background:#fafafa">',
        f'<text x="4" y="14" font-size="10">{y1:.3g}</text><text x="4" y="{height - pad}" font-size="10">{y0:.3g}</text>',
        f'<text x="{pad}" y="{height - 8}" font-size="10">step {x0}</text><text x="{width - pad - 50}" y="{height - 8}" font-size="10">step {x1}</text>',
    ]
    for i, (name, pts) in enumerate(sorted(series.items())):
        c = colours[i % len(colours)]
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{" ".join(px(x, y) for x, y in pts)}"/>')
        parts.append(f'<text x="{width - 150}" y="{14 + 12 * i}" font-size="10" fill="{c}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


_OWN = " (the query&#39;s own clip)"


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}." if not isinstance(v, (int, float, str)) else f"{prefix}{k}"))
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out[prefix.rstrip(".")] = d
    return out


def _metrics_table(ev: dict[str, Any]) -> str:
    trained, random = _flatten(ev.get("trained", {})), _flatten(ev.get("random", {}))
    keys = [k for k in trained if isinstance(trained[k], float) and not k.endswith(("queries", "samples")) and not k.startswith("timing")]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(trained[k])}</td><td>{_fmt(random.get(k, ''))}</td></tr>" for k in keys)
    return f"<table><tr><th>metric (held-out)</th><th>trained</th><th>random weights</th></tr>{rows}</table>"


def write_report(out: Path, result: dict[str, Any]) -> Path:
    """Write ``out/report.html`` from the demo's result dict; returns its path."""
    svc = result.get("service", {})
    gallery = []
    for q in svc.get("gallery", []):
        hits = "".join(
            f'<div class="hit {"ok" if h["relevant"] else "no"}"><img src="assets/{h["frame"]}" width="96"><br>'
            f'<audio controls src="assets/{h["audio"]}"></audio><br>{html.escape(";".join(h["labels"]))} · {h["score"]:.3f}<br>'
            f"<small>{html.escape(h['source'])} @ {h['start_sec']:.2f} s{_OWN if h.get('own_clip') else ''}</small></div>"
            for h in q["hits"]
        )
        gallery.append(
            f'<div class="row"><div class="q"><img src="assets/{q["query"]}" width="128"><br><b>{html.escape(q["label"])}</b> sounds'
            f"<br><small>on screen: {html.escape(q['visible'])}</small></div>{hits}</div>"
        )
    heat = "".join(
        f'<div class="hit"><img src="assets/{h["overlay"]}" width="192"><br><audio controls src="assets/{h["audio"]}"></audio>'
        f"<br>{html.escape(h['label'])} · score {h['score']:.3f}</div>"
        for h in svc.get("heatmaps", [])
    )
    curves = "".join(f"<div class='hit'><h3>{html.escape(n)}</h3>{_svg_curves(c)}</div>" for n, c in result.get("curves", {}).items())
    timings = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.1f} s</td></tr>" for k, v in result.get("timings_sec", {}).items())
    job = svc.get("job", {})
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>avlearn demo</title>
<style>body{{font-family:sans-serif;margin:20px}} .row{{display:flex;gap:10px;margin:10px 0;align-items:flex-start}}
.q{{border:2px solid #333;padding:4px}} .hit{{border:1px solid #ccc;padding:4px;font-size:12px}} .ok{{border-color:#2a2}} .no{{border-color:#c33}}
audio{{width:140px}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}</style></head><body>
<h1>avlearn demo</h1>
<p>Trained on a synthetic audio-visual world; the index holds the held-out videos. One hit per clip (its best segment). Green hits sound like the query (same sounding category);
the query's own clip is in the index and marked. Metric definitions: docs/metrics.md.</p>
<h2>Image → audio retrieval</h2>{"".join(gallery)}
<h2>Where is the sound? (audio → heatmap on the frame)</h2><div class="row">{heat}</div>
<h2>Training curves</h2><div class="row">{curves}</div>
<h2>Held-out metrics</h2>{_metrics_table(result.get("eval", {}))}
<h2>Batch-embed job</h2><p>archive {html.escape(str(job.get("archive", "")))}: <b>{html.escape(str(job.get("state", "")))}</b>,
{job.get("files_total", 0)} files, {job.get("segments", 0)} segments {html.escape(job.get("error") or "")}</p>
<h2>Index</h2><pre>{html.escape(json.dumps(svc.get("index", {}), indent=1))}</pre>
<h2>Timings</h2><table>{timings}</table>
</body></html>"""
    path = Path(out) / "report.html"
    path.write_text(page)
    return path
