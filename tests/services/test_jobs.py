"""Job stores (SQLite and a real redis-server), path confinement, and embed jobs over gRPC."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures import free_port, make_archive

from avlearn_client.client import Client
from avlearn_client.types import AvlearnError
from services.job_store import CANCELLED, RUNNING, SUCCEEDED, JobRecord, RedisJobStore, SQLiteJobStore
from services.jobs import JobRunner, PathNotAllowed, resolve_under_roots


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteJobStore(tmp_path / "jobs.sqlite")
    else:
        srv = request.getfixturevalue("redis_server")
        s = RedisJobStore(srv.url)
    yield s
    s.close()


def _job(job_id: str = "j1", archive: str = "/a") -> JobRecord:
    return JobRecord(job_id=job_id, archive_path=archive, output_path="/o/" + job_id, checkpoint="/c")


def test_store_records_leases_and_cancel(store):
    job, created = store.create(_job())
    assert created and store.get("j1").archive_path == "/a"
    again, created = store.create(_job(archive="/other"))
    assert not created and again.archive_path == "/a"
    assert store.get("missing") is None
    store.create(_job("j2"))
    assert store.unfinished() == ["j1", "j2"]
    job.state, job.segments = RUNNING, 7
    store.save(job)
    assert store.get("j1").segments == 7 and store.get("j1").state == RUNNING
    assert store.acquire_lease("j1", "A", 0.5)
    assert not store.acquire_lease("j1", "B", 0.5)  # held by A
    assert store.renew_lease("j1", "A", 0.5) and not store.renew_lease("j1", "B", 0.5)
    time.sleep(0.7)
    assert store.acquire_lease("j1", "B", 5)  # A's lease lapsed
    store.release_lease("j1", "A")  # not A's any more: no effect
    assert not store.acquire_lease("j1", "A", 5)
    store.release_lease("j1", "B")
    assert store.acquire_lease("j1", "A", 5)
    store.request_cancel("j2")
    assert store.get("j2").cancel_requested and not store.get("j1").cancel_requested
    job.state = SUCCEEDED
    store.save(job)
    assert store.unfinished() == ["j2"]


def test_runner_runs_resumes_and_cancels(tmp_path):
    """A real runner on a real store with a real (tiny) job body: stop → resumable; cancel → cancelled."""
    store = SQLiteJobStore(tmp_path / "jobs.sqlite")
    calls: list[str] = []

    def work(job, progress, should_stop):
        calls.append(job.job_id)
        for i in range(50):
            if should_stop():
                return {}
            progress({"done": i + 1, "total": 50, "segments": 3 * (i + 1)})
            time.sleep(0.02)
        return {"segments": 150}

    store.create(_job("a"))
    runner = JobRunner(store, slots=1, lease_sec=1.0, scan_interval_sec=0.05, work=work).start()
    deadline = time.monotonic() + 10
    while store.get("a").files_done < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    runner.stop()
    stopped = store.get("a")
    assert stopped.state == RUNNING and 5 <= stopped.files_done < 50 and stopped.files_total == 50
    runner2 = JobRunner(store, slots=1, lease_sec=1.0, scan_interval_sec=0.05, work=work).start()  # lease released: resumes at once
    while store.get("a").state != SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.02)
    done = store.get("a")
    assert done.state == SUCCEEDED and done.attempts == 2 and done.summary == {"segments": 150} and done.progress == 1.0
    store.create(_job("b"))
    runner2.wake()
    while store.get("b").files_done < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    store.request_cancel("b")
    while store.get("b").state != CANCELLED and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.get("b").state == CANCELLED and store.get("b").files_done < 50
    runner2.stop()
    assert calls == ["a", "a", "b"]


def test_resolve_under_roots(tmp_path):
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "inside_link").symlink_to(root / "data")
    assert resolve_under_roots(str(root / "data"), [root]) == (root / "data").resolve()
    assert resolve_under_roots("data", [root]) == (root / "data").resolve()
    assert resolve_under_roots(str(root / "inside_link"), [root]) == (root / "data").resolve()
    for bad in (str(root / ".." / "outside"), str(root / "escape"), "../outside", str(outside), "/etc"):
        with pytest.raises(PathNotAllowed):
            resolve_under_roots(bad, [root])
    with pytest.raises(FileNotFoundError):
        resolve_under_roots(str(root / "nope"), [root])
    for bad in ("", "a\x00b"):
        with pytest.raises(ValueError):
            resolve_under_roots(bad, [root])
    with pytest.raises(PathNotAllowed):
        resolve_under_roots(str(root / "data"), [])


def test_submit_errors(server, assets, tmp_path):
    with Client(server.address) as c:
        assert c.submit_embed_job.__name__
        cases = {
            str(tmp_path): "PERMISSION_DENIED",
            str(assets.archive.parent / ".." / "x"): "PERMISSION_DENIED",
            str(assets.archive.parent / "missing"): "NOT_FOUND",
            "": "INVALID_ARGUMENT",
        }
        for path, code in cases.items():
            with pytest.raises(AvlearnError) as err:
                c.submit_embed_job(path)
            assert err.value.code == code, path
        with pytest.raises(AvlearnError) as err:
            c.submit_embed_job(str(assets.archive), job_id="bad id!")
        assert err.value.code == "INVALID_ARGUMENT"
        with pytest.raises(AvlearnError) as err:
            c.reload_index(str(tmp_path / "elsewhere"))
        assert err.value.code == "PERMISSION_DENIED"


def test_cancel_a_queued_job(start_server, assets):
    srv = start_server(job_slots=0)  # nobody runs jobs here
    with Client(srv.address) as c:
        job = c.submit_embed_job(str(assets.archive), job_id="q1")
        assert job.state == "queued"
        again = c.submit_embed_job(str(assets.archive), job_id="q1")
        assert again.job_id == "q1"
        assert c.cancel_job("q1").state == "cancelled"
        assert c.get_job("q1").state == "cancelled"
        assert [j.state for j in c.watch_job("q1", timeout_sec=5)] == ["cancelled"]


def test_embed_job_end_to_end_with_redis_replicas(start_server, assets, redis_server, tmp_path):
    """Submit on replica A (which runs jobs), watch and read it on replica B (which runs none), then load the bundle."""
    a = start_server(redis_url=redis_server.url, job_slots=1)
    b = start_server(redis_url=redis_server.url, job_slots=0)
    with Client(a.address) as ca, Client(b.address) as cb:
        job = ca.submit_embed_job(str(assets.archive), job_id="e2e", workers=1)
        states = [j.state for j in cb.watch_job(job.job_id, timeout_sec=120)]
        final = cb.get_job("e2e")
        assert states[-1] == "succeeded", final.error
        assert final.files_done == final.files_total == 4 and final.segments == 12 and final.progress == 1.0
        bundle = final.summary["bundle"]
        old, new = ca.reload_index(bundle)
        assert new != old and ca.index_info().counts["audio"] == 12
    assert 'avlearn_jobs_total{state="succeeded"} 1.0' in a.metrics.text()


def _spawn_server(port: int, redis_url: str, assets, out: Path, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "avlearn.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--bundle", str(assets.bundle),
        "--checkpoint", str(assets.checkpoint), "--redis-url", redis_url, "--job-root", str(out.parent), "--job-output", str(out / "jobs"),
        "--job-lease-sec", "2", "--device", "cpu",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)


@pytest.mark.slow
def test_killed_server_resumes_job_on_restart(assets, redis_server, tmp_path):
    """SIGKILL the server mid-job; the restarted server takes the job over (lease lapsed) and finishes it, nothing lost."""
    archive = make_archive(tmp_path / "big", tones=(200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0), seconds=3.0)
    port = free_port()
    log = tmp_path / "server.log"
    proc = _spawn_server(port, redis_server.url, assets, tmp_path, log)
    try:
        with Client(f"127.0.0.1:{port}", timeout_sec=60, retries=8, backoff_sec=0.5) as c:
            assert c.health(timeout_sec=90) == "SERVING"
            c.submit_embed_job(str(archive), job_id="kill1", workers=1)
            deadline = time.monotonic() + 120
            while c.get_job("kill1").files_done < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            before = c.get_job("kill1")
            assert before.state == "running" and 2 <= before.files_done < 8
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = _spawn_server(port, redis_server.url, assets, tmp_path, log)
        with Client(f"127.0.0.1:{port}", timeout_sec=60, retries=8, backoff_sec=0.5) as c:
            assert c.health(timeout_sec=90) == "SERVING"
            final = list(c.watch_job("kill1", timeout_sec=180))[-1]
    finally:
        proc.terminate()
        proc.wait(30)
    assert final.state == "succeeded", final.error + log.read_text()[-3000:]
    assert final.attempts == 2
    assert final.files_done == 8 and final.segments == 24  # every clip, each segment once
    from avlearn.index.bundle import Bundle

    with Bundle.open(final.summary["bundle"]) as b:
        assert b.manifest.counts == {"audio": 24, "image": 24, "segments": 24}
