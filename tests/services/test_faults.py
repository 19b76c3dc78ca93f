"""Faults under load: Redis killed and restarted, bundles reloaded 20 times, SIGHUP reloads — zero failed queries."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures import Load, copy_bundle

from avlearn.index.bundle import Bundle
from avlearn_client.client import Client
from avlearn_client.types import AvlearnError

ROOT = Path(__file__).resolve().parents[2]


def test_redis_killed_and_restarted_under_load(start_server, redis_server, assets):
    srv = start_server(redis_url=redis_server.url)
    with Bundle.open(assets.bundle) as b:
        ids = [int(i) for i in b._indices["image"].ids]

    def query(c, rng):  # a few distinct queries, so both hits and misses happen
        return c.search_images_by_audio(segment_id=ids[int(rng.integers(3))], k=3)

    with Load(srv.address, query) as load:
        time.sleep(1.0)
        hits_before = srv.metrics.cache.labels("hit")._value.get()
        redis_server.kill()
        time.sleep(1.5)
        during = load.ok
        redis_server.start()  # same port, same AOF dir
        time.sleep(2.5)  # the cache retries Redis after retry_after_sec
        n_after_restart = load.ok
    assert load.failures == []
    assert hits_before > 0 and during > 0 and n_after_restart > during
    assert srv.cache.errors > 0  # Redis really was down for the cache
    text = srv.metrics.text()
    assert 'avlearn_cache_total{result="hit"}' in text
    assert srv.metrics.cache.labels("hit")._value.get() > hits_before  # cache works again after the restart


def test_twenty_reloads_under_load(start_server, assets, tmp_path):
    """Alternate between two bundles 20 times while queries run: no query fails, both bundles answer."""
    second = copy_bundle(assets, tmp_path / "bundles" / "second", "second-bundle")
    srv = start_server(job_roots=(tmp_path / "bundles",))
    with Bundle.open(assets.bundle) as b:
        vec = b.vector("audio", int(b._indices["audio"].ids[0]))
        first_id = b.bundle_id

    def query(c, rng):
        return c.search_audio_by_image(vector=vec + 0.01 * rng.standard_normal(vec.shape).astype(np.float32), k=5)

    engines = []
    with Load(srv.address, query, threads=4) as load, Client(srv.address) as admin:
        for i in range(20):
            engines.append(srv.holder.current)
            target = str(second) if i % 2 == 0 else str(assets.bundle)
            old, new = admin.reload_index(target)
            assert new == ("second-bundle" if i % 2 == 0 else first_id)
            time.sleep(0.05)
        time.sleep(0.3)
    assert load.failures == []
    assert load.ok > 20 and load.bundle_ids == {first_id, "second-bundle"}
    assert all(e.closed for e in engines)  # every replaced bundle was closed once its queries finished
    assert srv.holder.reloads == 20


def test_reload_refuses_a_bundle_of_another_checkpoint(server, assets, tmp_path):
    other = assets.root / "other_ckpt_bundle"
    if not other.exists():
        shutil.copytree(assets.bundle.resolve(), other)
        m = other / "manifest.json"
        m.write_text(m.read_text().replace(Bundle.open(assets.bundle).manifest.checkpoint_hash, "0" * 64))
    with Client(server.address) as c:
        with pytest.raises(AvlearnError) as err:
            c.reload_index(str(other))
        assert err.value.code == "FAILED_PRECONDITION" and "checkpoint" in err.value.message
        with pytest.raises(AvlearnError) as err:
            c.reload_index(str(assets.root / "no_bundle_here"))
        assert err.value.code == "NOT_FOUND"
        assert c.index_info().bundle_id == Bundle.open(assets.bundle).bundle_id  # still serving the old one


def test_sighup_under_load_reloads_and_fails_no_call(assets, tmp_path):
    """`avlearn serve` under load: 5 SIGHUPs → 5 reloads of the bundle path, each logged, zero failed
    queries, the server still up; then SIGTERM drains and exits 0."""
    cmd = [
        sys.executable, "-m", "avlearn.cli", "serve", "--bundle", str(assets.bundle), "--checkpoint", str(assets.checkpoint), "--host", "127.0.0.1",
        "--port", "0", "--device", "cpu", "--job-output", str(tmp_path / "jobs"), "--grace-sec", "2", "--cache-size", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    listening = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "listening on" in line:
                listening.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert listening.wait(120), "".join(lines)
        address = re.search(r"listening on (\S+:\d+)", "".join(lines)).group(1)
        with Bundle.open(assets.bundle) as b:
            ids = [int(i) for i in b._indices["audio"].ids]

        def query(c, rng):
            return c.search_images_by_audio(segment_id=ids[int(rng.integers(len(ids)))], k=3)

        with Load(address, query, threads=3) as load:
            time.sleep(0.3)
            for _ in range(5):
                proc.send_signal(signal.SIGHUP)
                time.sleep(0.4)
            during = load.ok
            time.sleep(0.3)
        assert proc.poll() is None, "".join(lines)
        assert load.failures == [] and during > 10 and load.ok > during
        with Client(address) as c:
            assert c.index_info().reloads == 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.2)
    log = "".join(lines)
    assert log.count("SIGHUP: reloaded") == 5, log
    assert "SIGTERM: draining" in log and "stopped in" in log, log
