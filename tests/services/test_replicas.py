"""Several server processes on one port (services/replicas.py, ``avlearn serve --processes N``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from fixtures import copy_bundle

from avlearn.index.bundle import Bundle
from avlearn_client import Client
from avlearn_proto import service_pb2, service_pb2_grpc
from services.replicas import Replica, ReplicaSync, ReplicaSyncError

ROOT = Path(__file__).resolve().parents[2]


def bundle_ids(address: str, connections: int) -> list[str]:
    """GetIndexInfo over ``connections`` separate TCP connections (own subchannel pool each)."""
    ids = []
    for _ in range(connections):
        with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            ids.append(service_pb2_grpc.AvlearnServiceStub(ch).GetIndexInfo(service_pb2.GetIndexInfoRequest(), timeout=10).bundle_id)
    return ids


def test_reload_reaches_every_replica_before_the_call_returns(start_server, assets, tmp_path):
    """Two servers on one port (SO_REUSEPORT): ReloadIndex on either leaves both on the new bundle."""
    sync_dir = tmp_path / "sync"
    sync_dir.mkdir()
    roots = (tmp_path / "bundles", assets.bundle.resolve().parent)
    first_id = Bundle.open(assets.bundle).bundle_id
    second = copy_bundle(assets, tmp_path / "bundles" / "second-bundle", "second-bundle")
    a = start_server(replica=Replica(0, 2, sync_dir), job_roots=roots)
    b = start_server(replica=Replica(1, 2, sync_dir), job_roots=roots, port=a.port, job_slots=0)
    assert b.port == a.port
    for target, want in ((second, "second-bundle"), (assets.bundle, first_id), (second, "second-bundle")):
        with Client(a.address) as c:
            _, new = c.reload_index(str(target))
        assert new == want
        assert a.holder.current.bundle_id == want and b.holder.current.bundle_id == want  # no waiting: the call waited
        assert set(bundle_ids(a.address, 6)) == {want}
    assert a.holder.reloads + b.holder.reloads == 6


def test_publish_fails_when_a_replica_does_not_follow(tmp_path):
    """A replica that never loads the published bundle → ReplicaSyncError (ABORTED over gRPC) after the timeout."""
    sync = ReplicaSync(Replica(0, 2, tmp_path), timeout_sec=0.3)
    t0 = time.monotonic()
    with pytest.raises(ReplicaSyncError, match=r"replica\(s\) \[1\] did not load"):
        sync.publish(tmp_path / "bundle", "some-id")
    assert 0.3 <= time.monotonic() - t0 < 5


def _metric(port: int, method: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(v) for v in re.findall(rf'avlearn_requests_total\{{code="OK",method="{method}"\}} ([0-9.e+]+)', text))


@contextmanager
def replicated_server(
    assets, tmp_path: Path, processes: int = 2, *, bundle: Path | None = None, extra: tuple[str, ...] = ()
) -> Iterator[tuple[subprocess.Popen, str, tuple[int, ...]]]:
    """`avlearn serve --processes N` (on ``bundle``, default the test bundle; ``extra`` flags) on a free port;
    yields (process, address, metrics ports); killed at exit."""
    cmd = [
        sys.executable, "-m", "avlearn.cli", "serve", "--processes", str(processes), "--bundle", str(bundle or assets.bundle), "--checkpoint", str(assets.checkpoint),
        "--localizer-checkpoint", str(assets.localizer), "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--device", "cpu",
        "--job-output", str(tmp_path / "jobs"), "--job-root", str(assets.archive.parent), "--grace-sec", "1", *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 180
        match = None
        while match is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(rf"listening on 127\.0\.0\.1:(\d+) \({processes} processes\), metrics on((?: :\d+)+)", line)
        assert match, "".join(lines)
        yield proc, f"127.0.0.1:{match.group(1)}", tuple(int(p) for p in match.group(2).split(":")[1:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _reloads(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found = re.findall(r'avlearn_reloads_total\{result="ok"\} ([0-9.e+]+)', text)
    return float(found[0]) if found else 0.0


def _gone(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except OSError:
        return True
    return False


def test_serve_processes_spreads_connections_and_stops_cleanly(assets, tmp_path):
    """`avlearn serve --processes 2`: both replicas answer (per-replica metrics), an embed job submitted to either
    runs (on replica 0) and is visible from both, reloading its bundle reaches both, SIGHUP reloads in both, SIGTERM stops all."""
    with replicated_server(assets, tmp_path) as (proc, address, ports):
        assert len(ports) == 2
        assert set(bundle_ids(address, 16)) == {Bundle.open(assets.bundle).bundle_id}
        served = [_metric(p, "GetIndexInfo") for p in ports]
        assert sum(served) == 16 and min(served) > 0, served  # all on one replica: p = 2 ** -15
        with Client(address) as c:
            job = c.submit_embed_job(str(assets.archive), job_id="rep", workers=1)
        with Client(address) as c:  # another connection, maybe another replica
            states = [j.state for j in c.watch_job(job.job_id, timeout_sec=120)]
            final = c.get_job("rep")
            assert states[-1] == "succeeded", final.error
            assert final.segments == 12
            _, new_id = c.reload_index(final.summary["bundle"])
        assert set(bundle_ids(address, 8)) == {new_id} and new_id != Bundle.open(assets.bundle).bundle_id
        before = [_reloads(p) for p in ports]
        proc.send_signal(signal.SIGHUP)  # the supervisor forwards it: every replica reopens its bundle path
        deadline = time.monotonic() + 30
        while [_reloads(p) for p in ports] != [b + 1 for b in before] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [_reloads(p) for p in ports] == [b + 1 for b in before]
        assert proc.poll() is None and set(bundle_ids(address, 8)) == {new_id}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert all(_gone(p) for p in ports)  # both replicas are gone


def test_a_replica_that_dies_takes_the_server_down(assets, tmp_path):
    """kill -9 of one replica: the supervisor stops the other and exits 1 (the orchestrator restarts the server whole)."""
    with replicated_server(assets, tmp_path) as (proc, address, ports):
        children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        replicas = [p for p in children if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]  # not the resource tracker
        assert len(replicas) == 2
        os.kill(replicas[-1], signal.SIGKILL)
        assert proc.wait(timeout=60) == 1
        deadline = time.monotonic() + 20
        while not all(_gone(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(_gone(p) for p in ports)
