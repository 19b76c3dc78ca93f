"""The web page against a real gRPC server: Flask test client for the forms, headless Chromium for a person's view."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from fixtures import png_bytes, wav_bytes


@pytest.fixture
def app(server):
    from avlearn_web.app import create_app

    return create_app(server.address)


def test_index_page_shows_the_bundle(app, server):
    page = app.test_client().get("/")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Image → sounds" in body and "audio:" in body  # index counts from GetIndexInfo


def test_image_upload_lists_hits_with_previews(app, assets):
    client = app.test_client()
    resp = client.post("/image2audio", data={"image": (io.BytesIO(png_bytes()), "q.png"), "k": "3"}, content_type="multipart/form-data")
    assert resp.status_code == 200
    body = resp.get_data(as_text=True)
    assert body.count('class="hit"') == 3 and "3 clips in" in body  # one hit per clip by default
    assert len({line.split("<small>")[1].split(" @ ")[0] for line in body.split('class="hit"')[1:]}) == 3  # three different files
    assert "/preview/audio?src=" in body
    # the previews the page links to are real media
    src = body.split("/preview/audio?src=")[1].split('"')[0].replace("&amp;", "&")
    audio = client.get(f"/preview/audio?src={src}")
    assert audio.status_code == 200 and audio.data[:4] == b"RIFF"
    frame_url = body.split('<img src="/preview/frame?src=')[1].split('"')[0].replace("&amp;", "&")
    frame = client.get(f"/preview/frame?src={frame_url}")
    assert frame.status_code == 200 and frame.data[:2] == b"\xff\xd8"


def test_image_upload_can_list_every_segment(app):
    resp = app.test_client().post(
        "/image2audio", data={"image": (io.BytesIO(png_bytes()), "q.png"), "k": "8", "group": "segments"}, content_type="multipart/form-data"
    )
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and body.count('class="hit"') == 8 and "8 hits in" in body  # 8 segments of the 4 clips


def test_preview_refuses_paths_the_index_did_not_return(app, tmp_path):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(wav_bytes())
    resp = app.test_client().get(f"/preview/audio?src={secret}&t=0")
    assert resp.status_code == 404


def test_bad_uploads_get_clear_errors(app):
    client = app.test_client()
    missing = client.post("/image2audio", data={}, content_type="multipart/form-data")
    assert missing.status_code == 400 and "No image file" in missing.get_data(as_text=True)
    garbage = client.post("/image2audio", data={"image": (io.BytesIO(b"not an image at all"), "x.png")}, content_type="multipart/form-data")
    assert garbage.status_code == 400 and "INVALID_ARGUMENT" in garbage.get_data(as_text=True)


def test_localize_renders_a_heatmap(app):
    resp = app.test_client().post(
        "/localize", data={"audio": (io.BytesIO(wav_bytes()), "a.wav"), "image": (io.BytesIO(png_bytes()), "i.png")}, content_type="multipart/form-data"
    )
    assert resp.status_code == 200
    body = resp.get_data(as_text=True)
    heat = body.split('id="heatmap"')[1].split(">")[0]
    assert 'src="data:image/png;base64,' in heat and "correspondence score" in body


@pytest.fixture
def web_url(app):
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def _browser(tmp_path: Path):
    """Headless Chromium (demo.screenshots); skipped without it, except under CI where .ci/run installs it."""
    from demo.screenshots import BrowserMissing, headless_chromium

    try:
        return headless_chromium(tmp_path / "profile", 1200, 900)
    except BrowserMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"chromium and chromedriver are required under CI (installed by .ci/run): {exc}")
        pytest.skip(str(exc))


def test_browser_uploads_an_image_and_sees_results(web_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    image = tmp_path / "query.png"
    image.write_bytes(png_bytes())
    audio = tmp_path / "query.wav"
    audio.write_bytes(wav_bytes())
    browser = _browser(tmp_path)
    try:
        browser.get(web_url)
        form = browser.find_element(By.ID, "image2audio")
        form.find_element(By.NAME, "image").send_keys(str(image))
        form.find_element(By.CSS_SELECTOR, "button").click()
        WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.ID, "results")))
        hits = browser.find_elements(By.CSS_SELECTOR, "#results .hit")
        assert len(hits) == 4  # k = 5, one hit per clip by default: the archive's 4 clips
        # the hit previews actually loaded in the browser (decoded frames from the real archive)
        WebDriverWait(browser, 30).until(
            lambda b: b.execute_script("return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")
        )
        browser.save_screenshot(str(tmp_path / "image2audio.png"))

        browser.get(web_url)
        form = browser.find_element(By.ID, "localize")
        form.find_element(By.NAME, "audio").send_keys(str(audio))
        form.find_element(By.NAME, "image").send_keys(str(image))
        form.find_element(By.CSS_SELECTOR, "button").click()
        heat = WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.ID, "heatmap")))
        assert browser.execute_script("return arguments[0].naturalWidth", heat) == 64  # the overlay has the image's width
    finally:
        browser.quit()


def test_index_page_names_its_provenance(app, assets):
    body = app.test_client().get("/").get_data(as_text=True)
    prov = body.split('id="provenance">')[1].split("</p>")[0]
    assert f"model {assets.checkpoint}" in prov and f"media from {assets.archive}" in prov and "built 20" in prov


def test_sound_upload_lists_frames(app):
    client = app.test_client()
    resp = client.post("/audio2image", data={"audio": (io.BytesIO(wav_bytes()), "q.wav"), "k": "4"}, content_type="multipart/form-data")
    assert resp.status_code == 200
    body = resp.get_data(as_text=True)
    assert "Nearest frames" in body and body.count('class="hit"') == 4 and "/preview/frame?src=" in body
    missing = client.post("/audio2image", data={}, content_type="multipart/form-data")
    assert missing.status_code == 400 and "No audio file" in missing.get_data(as_text=True)
    garbage = client.post("/audio2image", data={"audio": (io.BytesIO(b"RIFF not really a wav"), "x.wav")}, content_type="multipart/form-data")
    assert garbage.status_code == 400 and "INVALID_ARGUMENT" in garbage.get_data(as_text=True)


def test_browser_three_forms_and_a_large_photo_fits_the_page(web_url, tmp_path):
    """Each form from a person's view: image → sounds, sound → images, sound + a 1600 px photo → a heatmap that fits with its score."""
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    audio = tmp_path / "query.wav"
    audio.write_bytes(wav_bytes())
    photo = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), np.uint8)).save(photo)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"definitely not audio")
    browser = _browser(tmp_path)
    try:
        browser.get(web_url)
        assert browser.find_element(By.ID, "provenance").text.startswith("model ")
        form = browser.find_element(By.ID, "audio2image")
        form.find_element(By.NAME, "audio").send_keys(str(audio))
        form.find_element(By.CSS_SELECTOR, "button").click()
        WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.ID, "results")))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#results .hit")) == 4  # k = 5, one hit per clip by default: the archive's 4 clips
        WebDriverWait(browser, 30).until(
            lambda b: b.execute_script("return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")
        )
        # the uploaded sound plays back on the page (its data URI names a type the browser decodes)
        WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.querySelector('h2 + p audio').duration > 0.9"))

        browser.get(web_url)
        form = browser.find_element(By.ID, "localize")
        form.find_element(By.NAME, "audio").send_keys(str(audio))
        form.find_element(By.NAME, "image").send_keys(str(photo))
        form.find_element(By.CSS_SELECTOR, "button").click()
        heat = WebDriverWait(browser, 60).until(EC.presence_of_element_located((By.ID, "heatmap")))
        WebDriverWait(browser, 30).until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", heat))
        assert browser.execute_script("return arguments[0].naturalWidth", heat) == 1600  # the overlay keeps the photo's size ...
        view_w = browser.execute_script("return window.innerWidth")
        assert heat.rect["width"] <= min(640, view_w)  # ... and is shown at the page's scale
        score = browser.find_element(By.XPATH, "//*[contains(text(), 'correspondence score')]")
        assert score.rect["x"] + score.rect["width"] <= view_w and browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")

        browser.get(web_url)
        form = browser.find_element(By.ID, "audio2image")
        form.find_element(By.NAME, "audio").send_keys(str(bad))
        form.find_element(By.CSS_SELECTOR, "button").click()
        err = WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".error")))
        assert "INVALID_ARGUMENT" in err.text
    finally:
        browser.quit()
