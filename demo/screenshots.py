"""Screenshots of a finished demo in headless Chromium: report.html and the web page in use.

    python -m demo.screenshots --demo runs/demo --out runs/demo/screenshots

Starts the gRPC server on the demo's bundle and checkpoints and the web page in-process,
uses each of the page's three forms with a query frame and sound from the demo's assets, and saves PNGs. Needs Debian's chromium +
chromium-driver.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
from pathlib import Path


class BrowserMissing(RuntimeError):
    """Debian's chromium or chromedriver is not installed."""


def headless_chromium(profile: Path, width: int = 1280, height: int = 1600):
    """A headless Chromium WebDriver (profile folder, window size in px). Raises BrowserMissing without chromium + chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise BrowserMissing("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def take(demo: Path, out: Path) -> list[Path]:
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    from werkzeug.serving import make_server

    from avlearn_web.app import create_app
    from services.server import serve
    from services.settings import Settings

    out.mkdir(parents=True, exist_ok=True)
    shots = []
    # Illustrate with the demo query whose heatmap scored highest (report.html shows all of them).
    heat = max(json.loads((demo / "demo.json").read_text())["service"]["heatmaps"], key=lambda h: h["score"])
    query_png, query_wav = demo / "assets" / heat["image"], demo / "assets" / heat["audio"]
    settings = Settings(
        bundle=demo / "bundle",
        checkpoint=demo / "runs" / "ave_net" / "best",
        localizer_checkpoint=demo / "runs" / "avol_net" / "best",
        host="127.0.0.1",
        port=0,
        job_output=Path(tempfile.mkdtemp()),
    )
    handle = serve(settings)
    httpd = make_server("127.0.0.1", 0, create_app(handle.address), threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_port}"
    with tempfile.TemporaryDirectory() as profile:
        browser = headless_chromium(Path(profile))
        try:
            browser.set_window_size(1280, 900)
            browser.get((demo / "report.html").resolve().as_uri())
            shots.append(out / "report_first_screen.png")  # what a reader sees on opening it
            browser.save_screenshot(str(shots[-1]))
            browser.set_window_size(1280, min(6000, browser.execute_script("return document.body.scrollHeight") + 100))
            shots.append(out / "report.png")
            browser.save_screenshot(str(shots[-1]))

            browser.set_window_size(1280, 1000)
            browser.get(url)
            form = browser.find_element(By.ID, "image2audio")
            form.find_element(By.NAME, "image").send_keys(str(query_png.resolve()))
            form.find_element(By.CSS_SELECTOR, "button").click()
            WebDriverWait(browser, 60).until(EC.presence_of_element_located((By.ID, "results")))
            WebDriverWait(browser, 60).until(
                lambda b: b.execute_script("return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")
            )
            shots.append(out / "web_image2audio.png")
            browser.save_screenshot(str(shots[-1]))

            browser.get(url)
            form = browser.find_element(By.ID, "audio2image")
            form.find_element(By.NAME, "audio").send_keys(str(query_wav.resolve()))
            form.find_element(By.CSS_SELECTOR, "button").click()
            WebDriverWait(browser, 60).until(EC.presence_of_element_located((By.ID, "results")))
            WebDriverWait(browser, 60).until(
                lambda b: b.execute_script("return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")
            )
            shots.append(out / "web_audio2image.png")
            browser.save_screenshot(str(shots[-1]))

            browser.get(url)
            form = browser.find_element(By.ID, "localize")
            form.find_element(By.NAME, "audio").send_keys(str(query_wav.resolve()))
            form.find_element(By.NAME, "image").send_keys(str(query_png.resolve()))
            form.find_element(By.CSS_SELECTOR, "button").click()
            WebDriverWait(browser, 60).until(EC.presence_of_element_located((By.ID, "heatmap")))
            shots.append(out / "web_localize.png")
            browser.save_screenshot(str(shots[-1]))
        finally:
            browser.quit()
            httpd.shutdown()
            handle.stop(1.0)
    return shots


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--demo", default="runs/demo", type=Path)
    p.add_argument("--out", default=None, type=Path)
    args = p.parse_args()
    try:
        shots = take(args.demo, args.out or args.demo / "screenshots")
    except BrowserMissing as exc:
        raise SystemExit(f"demo.screenshots: {exc}") from None
    for shot in shots:
        print(shot)


if __name__ == "__main__":
    main()
