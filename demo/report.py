"""The demo's `report.html`: a summary in words first, then the galleries, the metrics in plain words, the curves.

Order: what was trained on what and how it did on held-out videos against random weights (a ten-second
read); the image → sound gallery by query and the heatmaps; the held-out figures, each named in words
with a one-line definition, its random-weights value and its chance or best possible value (the raw
figures folded below); loss and accuracy as separate panels with labelled axes and the legend under
the plot; the batch job, the index and the timings (stages that reused an earlier run say so).
Plain HTML + inline SVG (no plotting library); media are files in ``out/assets``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from demo.report_metrics import headline, metric_rows, pct

COLOURS = {"train": "#1f77b4", "val": "#d62728"}

CSS = """body{font-family:sans-serif;margin:20px;max-width:1180px;color:#222;line-height:1.4}
h2{margin-top:28px;border-bottom:1px solid #ddd}
#summary{background:#f4f7fb;border:1px solid #c9d6e8;padding:10px 16px} #summary h2{margin-top:4px}
#summary ul{margin:6px 0} .verdict{font-weight:bold}
.note{color:#555;font-size:13px} .reused{background:#fff6d6;border:1px solid #e6cf7a;padding:6px 10px}
.row{display:flex;gap:10px;margin:10px 0;align-items:flex-start;flex-wrap:wrap}
.q{border:2px solid #333;padding:4px;font-size:12px;width:136px} .hit{border:1px solid #ccc;padding:4px;font-size:12px}
.ok{border-color:#2a2;border-width:2px} .no{border-color:#c33;border-width:2px}
audio{width:140px;display:block} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;vertical-align:top}
td.num{text-align:right;white-space:nowrap} td.def{color:#444;max-width:560px}
.panel{display:inline-block;margin:0 14px 14px 0;vertical-align:top} .legend{font-size:12px} .legend span{margin-right:12px}
.swatch{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:4px}"""


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """``n + 1`` evenly spaced tick values from ``lo`` to ``hi``."""
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def _svg_panel(
    series: dict[str, list[tuple[int, float]]],
    *,
    title: str,
    y_label: str,
    x_label: str = "training step",
    y_range: tuple[float, float] | None = None,
    reference: tuple[float, str] | None = None,
    width: int = 380,
    height: int = 230,
) -> str:
    """One chart: lines per series, labelled axes with ticks, an optional dashed reference line; the legend is HTML under it."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return f'<div class="panel"><b>{html.escape(title)}</b><p class="note">(no points)</p></div>'
    left, right, top, bottom = 58, 12, 26, 44
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    y0, y1 = y_range or (min(ys), max(ys))
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = width - left - right, height - top - bottom

    def px(x: float, y: float) -> str:
        return f"{left + (x - x0) / (x1 - x0) * pw:.1f},{top + ph - (y - y0) / (y1 - y0) * ph:.1f}"

    parts = [
        f'<svg class="chart" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<rect class="plot" x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    for t in _nice_ticks(y0, y1):
        y = top + ph - (t - y0) / (y1 - y0) * ph
        parts.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#666"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 3:.1f}" font-size="10" text-anchor="end">{t:.3g}</text>')
    for t in _nice_ticks(x0, x1):
        x = left + (t - x0) / (x1 - x0) * pw
        parts.append(f'<line x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 4}" stroke="#666"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 15}" font-size="10" text-anchor="middle">{t:.0f}</text>')
    parts.append(f'<text class="xlabel" x="{left + pw / 2:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(
        f'<text class="ylabel" x="14" y="{top + ph / 2:.1f}" font-size="11" text-anchor="middle" transform="rotate(-90 14 {top + ph / 2:.1f})">{html.escape(y_label)}</text>'
    )
    if reference is not None and y0 <= reference[0] <= y1:
        a, b = px(x0, reference[0]), px(x1, reference[0])
        parts.append(f'<polyline fill="none" stroke="#888" stroke-dasharray="4 3" points="{a} {b}"/>')
    for name, pts in sorted(series.items()):
        colour = COLOURS.get(name.split("/")[0], "#2ca02c")
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{" ".join(px(x, y) for x, y in pts)}"/>')
    parts.append("</svg>")
    legend = "".join(
        f'<span><i class="swatch" style="background:{COLOURS.get(name.split("/")[0], "#2ca02c")}"></i>{html.escape(_series_name(name))}</span>'
        for name in sorted(series)
    )
    if reference is not None:
        legend += f'<span><i class="swatch" style="background:#888"></i>{html.escape(reference[1])} (dashed)</span>'
    return f'<div class="panel">{"".join(parts)}<div class="legend">{legend}</div></div>'


def _series_name(key: str) -> str:
    split = key.split("/")[0]
    return {"train": "training batches", "val": "validation (held-out pairs)"}.get(split, split)


def _curves(curves: dict[str, dict[str, list[tuple[int, float]]]]) -> str:
    """Per model: a loss panel and an accuracy panel (chance 0.5 dashed)."""
    names = {"ave_net": "AVE-Net", "avol_net": "AVOL-Net"}
    blocks = []
    for model, c in curves.items():
        label = names.get(model, model)
        loss = {k: v for k, v in c.items() if k.endswith("/loss")}
        acc = {k: v for k, v in c.items() if k.endswith("/acc")}
        blocks.append(
            f"<div>{_svg_panel(loss, title=f'{label}: loss', y_label='loss (cross-entropy)')}"
            f"{_svg_panel(acc, title=f'{label}: accuracy', y_label='sound-frame match accuracy', y_range=(0.0, 1.0), reference=(0.5, 'chance'))}</div>"
        )
    return "".join(blocks)


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
    """The chosen figures in words (name, definition, trained, random weights, chance / best possible), then every raw figure folded."""
    rows = "".join(
        f'<tr><td><b>{html.escape(r["name"])}</b></td><td class="def">{html.escape(r["definition"])}</td>'
        f'<td class="num">{pct(r["trained"])}</td><td class="num">{pct(r["random"])}</td>'
        f'<td class="num">{"chance " + pct(r["chance"]) if r["chance"] is not None else ("best possible " + pct(r["best"]) if r["best"] is not None else "")}</td></tr>'
        for r in metric_rows(ev)
    )
    trained, random = _flatten(ev.get("trained", {})), _flatten(ev.get("random", {}))
    keys = [k for k in trained if isinstance(trained[k], float) and not k.endswith(("queries", "samples")) and not k.startswith("timing")]
    raw = "".join(f"<tr><td>{html.escape(k)}</td><td class='num'>{_fmt(trained[k])}</td><td class='num'>{_fmt(random.get(k, ''))}</td></tr>" for k in keys)
    return (
        '<table id="metric-table"><tr><th>held-out figure</th><th>what it measures</th><th>trained</th><th>random weights</th><th>reference</th></tr>'
        f"{rows}</table><details><summary>every figure of the evaluation (raw names, {len(keys)})</summary>"
        f"<table><tr><th>figure</th><th>trained</th><th>random weights</th></tr>{raw}</table></details>"
    )


def _summary(result: dict[str, Any]) -> str:
    """The ten-second read: what was trained, on what, and the held-out figures against random weights, in words."""
    ev = result.get("eval", {})
    world = result.get("world", {})
    cfg = result.get("config", {})
    counts = world.get("counts", {})
    cats = world.get("sounding_categories", [])
    looks = "real photos and sounds from ../shared/data" if world.get("real_media") or result.get("shared_data") else "generated looks and tones"
    findings = []
    better = 0
    for stem, trained, random, chance in headline(ev):
        ref = f"random weights: {pct(random)}" + (f", chance {pct(chance)}" if chance is not None else "")
        findings.append(f"<li>{html.escape(stem)} <b>{pct(trained)}</b> of the time ({ref}).</li>")
        better += int(trained is not None and random is not None and trained > random)
    verdict = (
        f"The trained models beat random weights on {better} of these {len(findings)} held-out figures."
        if findings
        else "No held-out figures were recorded for this run."
    )
    reused = result.get("reused") or []
    reused_note = (
        f'<p class="reused">Reused from an earlier run in this folder (same settings): {html.escape(", ".join(reused))}. '
        "Their times below are the check, not the work.</p>"
        if reused
        else ""
    )
    return f"""<section id="summary"><h2>Summary</h2>
<p><b>What was trained.</b> Two small networks learned to connect sounds and images from raw video, without labels:
AVE-Net (does this sound belong to this frame? it powers the search below) for {cfg.get("ave_steps", "?")} steps and
AVOL-Net (where in the frame is the sound? it draws the heatmaps) for {cfg.get("avol_steps", "?")} steps, on CPU.</p>
<p><b>On what.</b> A synthetic world of {world.get("videos", cfg.get("videos", "?"))} videos of {world.get("seconds", cfg.get("seconds", "?"))} s
({counts.get("train", "?")} for training) in which {len(cats) or cfg.get("categories", "?")} kinds of object make sounds
({html.escape(", ".join(cats[:10]))}), built from {looks}.</p>
<p><b>Held-out test.</b> {ev.get("videos", "?")} videos of object instances never seen in training ({ev.get("segments", "?")} one-second segments),
against the same networks with random weights:</p>
<ul>{"".join(findings)}</ul><p class="verdict">{verdict}</p>{reused_note}</section>"""


def _gallery(svc: dict[str, Any]) -> str:
    """Image → sound retrieval, one row per query frame (ordered by its sounding category); green: the hit's sound is on screen."""
    rows = []
    for q in sorted(svc.get("gallery", []), key=lambda q: (q["label"], q["query"])):
        right = sum(1 for h in q["hits"] if h["relevant"])
        hits = "".join(
            f'<div class="hit {"ok" if h["relevant"] else "no"}"><img src="assets/{h["frame"]}" width="96" alt="frame of the hit"><br>'
            f'<audio controls src="assets/{h["audio"]}"></audio>{html.escape(";".join(h["labels"]))} · score {h["score"]:.3f}<br>'
            f"<small>{html.escape(h['source'])} @ {h['start_sec']:.2f} s{_OWN if h.get('own_clip') else ''}</small></div>"
            for h in q["hits"]
        )
        rows.append(
            f'<div class="row"><div class="q"><img src="assets/{q["query"]}" width="128" alt="query frame"><br>sounding: <b>{html.escape(q["label"])}</b>'
            f"<br><small>on screen: {html.escape(q['visible'])}</small><br><small>{right} of {len(q['hits'])} hits right</small></div>{hits}</div>"
        )
    return "".join(rows)


def write_report(out: Path, result: dict[str, Any]) -> Path:
    """Write ``out/report.html`` from the demo's result dict; returns its path."""
    svc = result.get("service", {})
    heat = "".join(
        f'<div class="hit"><img src="assets/{h["overlay"]}" width="192" alt="heatmap"><br><audio controls src="assets/{h["audio"]}"></audio>'
        f"{html.escape(h['label'])} · match score {h['score']:.3f}</div>"
        for h in svc.get("heatmaps", [])
    )
    reused = set(result.get("reused") or [])
    timings = "".join(
        f"<tr><td>{html.escape(k)}</td><td class='num'>{v:.1f} s</td><td>{'reused from an earlier run' if k in reused else ''}</td></tr>"
        for k, v in result.get("timings_sec", {}).items()
    )
    job = svc.get("job", {})
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>avlearn demo report</title><style>{CSS}</style></head><body>
<h1>avlearn demo report</h1>
{_summary(result)}
<h2>Image → sound search</h2>
<p class="note">Each row: a held-out query frame (left) and the 5 nearest clips by sound in the index of held-out videos (one hit per clip,
its best segment), best first, each shown with a frame of its video; the query's own clip is in the index and marked. Green: the hit's sound category is on screen in the query; red: it is not.</p>
<div id="gallery">{_gallery(svc)}</div>
<h2>Where is the sound? (sound → heatmap on its frame)</h2>
<p class="note">AVOL-Net's heatmap for a frame and its own second of sound: warm where the model places the sounding object.</p>
<div class="row">{heat}</div>
<h2>Held-out figures</h2>
<p class="note">Protocol: <code>avlearn eval avc</code> on the test split (instances never seen in training), at most 600 one-second segments;
a sound is right for a frame when its category is visible in the frame; localization in the LVS protocol on the world's boxes.
Random weights: the same architectures, untrained.</p>
{_metrics_table(result.get("eval", {}))}
<h2>Training curves</h2><div id="curves">{_curves(result.get("curves", {}))}</div>
<h2>Batch-embed job</h2><p>archive {html.escape(str(job.get("archive", "")))}: <b>{html.escape(str(job.get("state", "")))}</b>,
{job.get("files_total", 0)} files, {job.get("segments", 0)} segments {html.escape(job.get("error") or "")}</p>
<h2>Index</h2><pre>{html.escape(json.dumps(svc.get("index", {}), indent=1))}</pre>
<h2>Timings</h2><table><tr><th>stage</th><th>wall time</th><th></th></tr>{timings}</table>
</body></html>"""
    path = Path(out) / "report.html"
    path.write_text(page)
    return path
