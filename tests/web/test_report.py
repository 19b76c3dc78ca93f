"""The demo's report.html: the summary first and in words, metrics named with definitions and baselines,
loss and accuracy as separate labelled panels with the legend off the plot; checked in headless Chromium."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest
from test_web import _browser

from demo.report import write_report
from demo.report_metrics import METRICS, metric_rows


def _png(path: Path, colour: tuple[int, int, int], size: int = 64) -> str:
    from PIL import Image

    Image.new("RGB", (size, size), colour).save(path)
    return path.name


def _wav(path: Path) -> str:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.sin(np.arange(16000) * 0.1) * 8000).astype("<i2").tobytes())
    path.write_bytes(buf.getvalue())
    return path.name


def _side(scale: float) -> dict:
    return {
        "avc": {"pairs": 200, "accuracy_all": 0.5 + 0.4 * scale, "accuracy_not_visible": 0.5 + 0.45 * scale, "positive_accuracy": 0.9},
        "retrieval": {
            d: {
                "recall@1": 0.2 + 0.6 * scale,
                "recall@5": 0.5 + 0.4 * scale,
                "recall@10": 0.9,
                "precision@10": 0.5,
                "mAP": 0.2 + 0.7 * scale,
                "nDCG@30": 0.6,
                "queries": 90.0,
            }
            for d in ("image->audio", "audio->image", "image->image", "audio->audio")
        },
        "localization": {
            "samples": 60,
            "cIoU@0.5": 0.02 * scale,
            "AUC": 0.1 + 0.1 * scale,
            "mean_cIoU": 0.1,
            "pointing_accuracy": 0.1 + 0.7 * scale,
            "ceiling_cIoU@0.5": 0.05,
            "ceiling_AUC": 0.3,
            "ceiling_mean_cIoU": 0.2,
        },
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assets = out / "assets"
    assets.mkdir()
    gallery, heatmaps = [], []
    for qi, label in enumerate(["lion", "drum"]):
        hits = [
            {
                "score": 0.9 - 0.1 * hi,
                "labels": [label if hi % 2 == 0 else "bell"],
                "source": f"v{hi}.mp4",
                "start_sec": float(hi),
                "audio": _wav(assets / f"q{qi}_hit{hi}.wav"),
                "frame": _png(assets / f"q{qi}_hit{hi}.png", (40 * hi, 90, 120)),
                "relevant": hi % 2 == 0,
            }
            for hi in range(5)
        ]
        gallery.append({"query": _png(assets / f"query{qi}.png", (200, 40 * qi, 10)), "label": label, "visible": f"{label};bell", "hits": hits})
        heatmaps.append(
            {"overlay": _png(assets / f"loc{qi}_overlay.png", (250, 120, 0), 128), "audio": _wav(assets / f"loc{qi}.wav"), "label": label, "score": 0.8}
        )
    steps = list(range(0, 901, 30))
    curve = lambda f: [(s, f(s)) for s in steps]  # noqa: E731
    curves = {
        m: {"train/loss": curve(lambda s: 0.7 * np.exp(-s / 300) + 0.1), "val/loss": curve(lambda s: 0.7 * np.exp(-s / 400) + 0.15),
            "train/acc": curve(lambda s: 1 - 0.5 * np.exp(-s / 300)), "val/acc": curve(lambda s: 1 - 0.5 * np.exp(-s / 400))}
        for m in ("ave_net", "avol_net")
    }  # fmt: skip
    result = {
        "config": {"videos": 240, "seconds": 6.0, "categories": 8, "ave_steps": 900, "avol_steps": 500},
        "world": {"videos": 240, "seconds": 6.0, "sounding_categories": ["lion", "drum", "bell"], "counts": {"train": 180, "test": 30}, "real_media": True},
        "eval": {"trained": _side(1.0), "random": _side(0.0), "segments": 180, "videos": 30},
        "service": {"gallery": gallery, "heatmaps": heatmaps, "job": {"state": "succeeded", "files_total": 3, "segments": 40}, "index": {"bundle_id": "b1"}},
        "timings_sec": {"synth world": 0.1, "train AVE-Net": 0.2, "train AVOL-Net": 300.0},
        "reused": ["synth world", "train AVE-Net"],
        "curves": curves,
    }
    write_report(out, result)
    return out / "report.html"


def test_every_reported_metric_has_words_and_a_baseline():
    rows = metric_rows({"trained": _side(1.0), "random": _side(0.0)})
    assert len(rows) == len(METRICS)
    for r in rows:
        assert r["name"] and len(r["definition"]) > 30 and r["random"] is not None
    ciou = next(r for r in rows if r["path"] == "localization/cIoU@0.5")
    assert ciou["best"] == 0.05  # the ceiling the boxes allow is shown with it, not as a row of its own


def test_report_reads_in_the_browser(report, tmp_path):
    from selenium.webdriver.common.by import By

    browser = _browser(tmp_path)
    try:
        browser.set_window_size(1280, 900)
        browser.get(report.as_uri())
        # the summary comes first and is on the first screen, in words, against random weights
        first = browser.find_element(By.CSS_SELECTOR, "h1 + section")
        assert first.get_attribute("id") == "summary" and first.rect["y"] + 200 < 900
        text = first.text
        assert "What was trained" in text and "random weights" in text and "never seen in training" in text and "beat random weights on 3 of these 3" in text
        assert "Reused from an earlier run" in text and "train AVE-Net" in text
        # metrics: plain names with definitions; the raw names are folded away
        table = browser.find_element(By.ID, "metric-table")
        assert "Points at the sounding object" in table.text and "best possible 5.0%" in table.text and "chance 50%" in table.text
        assert "ceiling_cIoU" not in table.text and not browser.find_element(By.TAG_NAME, "details").get_attribute("open")
        # gallery rows in query order (by sounding category), each saying how many hits are right
        labels = [q.text.split("sounding: ")[1].split("\n")[0] for q in browser.find_elements(By.CSS_SELECTOR, "#gallery .q")]
        assert labels == sorted(labels) and "3 of 5 hits right" in browser.find_element(By.ID, "gallery").text
        # curves: a loss and an accuracy panel per model, labelled axes, legend below the plot area
        charts = browser.find_elements(By.CSS_SELECTOR, "#curves svg.chart")
        assert len(charts) == 4
        for chart in charts:
            assert chart.find_element(By.CSS_SELECTOR, ".xlabel").text == "training step" and chart.find_element(By.CSS_SELECTOR, ".ylabel").text
            plot = chart.find_element(By.CSS_SELECTOR, "rect.plot").rect
            legend = chart.find_element(By.XPATH, "following-sibling::div[@class='legend']").rect
            assert legend["y"] >= plot["y"] + plot["height"], "the legend overlaps the plot"
        titles = [c.get_attribute("aria-label") for c in charts]
        assert titles == ["AVE-Net: loss", "AVE-Net: accuracy", "AVOL-Net: loss", "AVOL-Net: accuracy"]
        # everything loads and nothing runs off the page sideways
        assert browser.execute_script("return [...document.images].every(i => i.complete && i.naturalWidth > 0)")
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        browser.quit()
