"""Benchmark (issue 21, "Must show"): every stage of the pipeline at N and factor x N clips, as real CLI subprocesses.

Archives: ``avlearn synth`` makes a world of N short clips; the N archive is a manifest csv of
its videos, the factor x N archive one of factor hard links of each video under new file names
(so new clip ids: new clips to every stage, no new disk space). For each archive, each stage is
one subprocess of the real CLI, run under a fresh wrapper process, so the wrapper's
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is the stage's own peak RSS (its largest process,
children included, that was waited for; the wrapper also samples the stage's process tree from /proc
every 0.1 s, since decoder children forked by a forkserver are waited for by it, not by the stage):

- prepare: ``avlearn prepare`` → shards (frames at the model's input size);
- train: ``avlearn train avc`` from those shards (streaming), a fixed number of steps;
- eval: ``avlearn eval avc`` on the shards with a fixed ``--max-segments``;
- embed: ``avlearn embed`` of the shards with the trained checkpoint;
- index: ``avlearn index build`` of the embeddings (``--gpu off``, factory auto);
- serve: ``avlearn serve`` on the bundle; a fixed set of SearchSimilar queries by stored segment id
  (ids drawn with a fixed seed, both modalities) sent one after the other through the Python client;
  peak RSS is VmHWM of the server's processes from /proc after the queries (VmRSS beside it).

Throughput per segment: prepare = segments written / s; train = steps x batch size / s; eval =
segments evaluated / s; embed = segments embedded / s; index = vectors (both modalities) / s;
serve = queries / s. Wall time is the whole subprocess, interpreter and imports included.

The table: per stage, seconds / segments per second / peak RSS MB at N and at factor x N, the
ratios, and the bars: peak RSS ratio <= 1.3 for every stage but the index (whose growth is compared
with the bundle's FAISS bytes per vector), throughput ratio within 1 ± 0.2. Written to
``WORK/scale.json`` and ``WORK/scale.txt``; the JSON is rewritten after every stage.

Usage: python bench/scale.py [--clips 2000] [--factor 10] [--seconds 2] [--work DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from eval_memory import link_archives  # bench/ is sys.path[0] when run as a script

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "avlearn.cli"]
STAGES = ("prepare", "train", "eval", "embed", "index", "serve")
RSS_BAR, RATE_BAR = 1.3, 0.2


WRAP = "--wrap-stage"  # argv[1] of the wrapper process (not a user flag)


def wrap_stage(out: str, cmd: list[str]) -> None:
    """The stage wrapper, a fresh process per stage: runs ``cmd`` and writes {"seconds", "rc", "peak_rss_kb", "tree_kb", "proc_kb"} to ``out``.

    ``peak_rss_kb`` is ru_maxrss of this process's children (KiB on Linux). It also samples the child's process tree every
    0.1 s from /proc (forkserver children are waited for by the forkserver, which ru_maxrss may miss): ``tree_kb`` is the
    largest sum of VmRSS over the tree, ``proc_kb`` the largest single VmRSS seen.
    """
    t = time.perf_counter()
    proc = subprocess.Popen(cmd)
    tree_kb = proc_kb = 0
    while proc.poll() is None:
        r = [_vmrss_kb(p) for p in _descendants(proc.pid)]
        tree_kb, proc_kb = max(tree_kb, sum(r)), max(proc_kb, max(r))
        time.sleep(0.1)
    s = time.perf_counter() - t
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    Path(out).write_text(json.dumps({"seconds": s, "rc": proc.returncode, "peak_rss_kb": kb, "tree_kb": tree_kb, "proc_kb": proc_kb}))


def run_stage(name: str, cmd: list[str], work: Path) -> dict:
    """Run ``cmd`` under a fresh wrapper process; its output goes to ``work/name.log``. Returns seconds, rc, peak_rss_mb."""
    out, log = work / f"{name}.rusage.json", work / f"{name}.log"
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        subprocess.run([sys.executable, __file__, WRAP, str(out), *cmd], stdout=f, stderr=subprocess.STDOUT, check=False)
    r = json.loads(out.read_text())
    res = {"seconds": round(r["seconds"], 2), "rc": r["rc"], "peak_rss_mb": round(r["peak_rss_kb"] / 1024, 1), "log": str(log)}
    res |= {"sampled_tree_mb": round(r["tree_kb"] / 1024, 1), "sampled_proc_mb": round(r["proc_kb"] / 1024, 1)}
    if r["rc"] != 0:
        res["error"] = log.read_text().strip().splitlines()[-1][-400:]
    return res


def make_archives(work: Path, clips: int, factor: int, seconds: float, size_px: int) -> tuple[Path, Path]:
    """(manifest csv of N clips, of factor x N clips): an ``avlearn synth`` world and hard links of its videos."""
    world = work / "world"
    if not (world / "world.json").exists():
        cmd = [*CLI, "synth", "--out", str(world), "--videos", str(clips), "--seconds", str(seconds), "--size", str(size_px), "--davis", "0", "--workers", "2"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return link_archives(world, work, factor)


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(line.split()[1])
    return out


def _vmrss_kb(pid: int) -> int:
    try:
        return _status_kb(pid).get("VmRSS", 0)
    except OSError:  # gone since it was listed
        return 0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except OSError:
            pass
    return out


def serve_stage(bundle: Path, checkpoint: Path, queries: int, work: Path) -> dict:
    """Start ``avlearn serve`` on the bundle, send ``queries`` SearchSimilar calls by stored segment id, read memory from /proc."""
    from avlearn.index.manifest import MODALITIES, ids_file
    from avlearn_client import Client

    log = open(work / "serve.log", "w")
    cmd = [*CLI, "serve", "--bundle", str(bundle), "--checkpoint", str(checkpoint), "--host", "127.0.0.1", "--port", "0", "--device", "cpu"]
    cmd += ["--cache-size", "0", "--job-slots", "0", "--job-output", str(work / "jobs"), "--processes", "1"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    address = None
    for line in proc.stdout:
        log.write(line)
        m = re.search(r"listening on (\S+:\d+)", line)
        if m:
            address = m.group(1)
            break
    if address is None:
        proc.wait()
        log.close()
        return {"rc": proc.returncode, "error": (work / "serve.log").read_text().strip().splitlines()[-1][-400:], "seconds": 0.0, "peak_rss_mb": 0.0}
    started = time.perf_counter() - t0
    threading.Thread(target=lambda: [log.write(x) for x in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    root = bundle.resolve()
    rng = np.random.default_rng(0)
    calls = []
    for m in MODALITIES:
        ids = np.load(ids_file(root, m), mmap_mode="r")
        calls += [(m, int(i)) for i in ids[rng.choice(len(ids), queries // len(MODALITIES), replace=False)]]
    try:
        with Client(address, timeout_sec=120) as c:
            c.search_similar(calls[0][0], segment_id=calls[0][1], k=10)  # first call (connection, lazy loads) apart
            t1 = time.perf_counter()
            for m, i in calls:
                c.search_similar(m, segment_id=i, k=10)
            sec = time.perf_counter() - t1
        mem = {p: _status_kb(p) for p in _descendants(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    return {
        "rc": 0, "seconds": round(sec, 2), "start_sec": round(started, 2), "queries": len(calls), "per_sec": round(len(calls) / sec, 1),
        "peak_rss_mb": round(max(v["VmHWM"] for v in mem.values()) / 1024, 1), "rss_mb": round(sum(v["VmRSS"] for v in mem.values()) / 1024, 1),
        "processes": len(mem),
    }  # fmt: skip


def pipeline(name: str, data: Path, work: Path, args: argparse.Namespace, size_px: int, rows: dict, save) -> None:
    """All stages over one archive; each result is stored in ``rows[stage][name]`` and saved at once."""
    from avlearn.index.manifest import Manifest, index_file

    d = work / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    shards, run, emb, bundle = d / "shards", d / "run", d / "embeddings", d / "bundle"

    def done(stage: str, r: dict) -> bool:
        rows.setdefault(stage, {})[name] = r
        save()
        print(f"{name:>4s} {stage:<8s} " + json.dumps({k: v for k, v in r.items() if k != "log"}), flush=True)
        return r["rc"] == 0

    r = run_stage("prepare", [*CLI, "prepare", "--data", str(data), "--out", str(shards), "--frame-size", str(size_px), "--workers", str(args.workers), "--no-progress"], d)  # fmt: skip
    if r["rc"] == 0:
        r["segments"] = sum(json.loads(p.read_text())["segments"] for p in shards.glob("*.done.json"))
        r["per_sec"] = round(r["segments"] / r["seconds"], 1)
    if not done("prepare", r):
        return
    cmd = [*CLI, "train", "avc", "--data", str(shards), "--preset", args.preset, "--out", str(run), "--steps", str(args.steps)]
    cmd += ["--batch-size", str(args.batch_size), "--device", "cpu", "--workers", "auto", "--no-progress", "--seed", "0"]
    r = run_stage("train", cmd, d)
    r["segments"] = args.steps * args.batch_size
    r["per_sec"] = round(r["segments"] / r["seconds"], 1)
    if not done("train", r):
        return
    ckpt = next((run / c for c in ("best", "last") if (run / c / "config.json").is_file()), run / "last")
    cmd = [*CLI, "eval", "avc", "--checkpoint", str(ckpt), "--data", str(shards), "--max-segments", str(args.max_segments)]
    cmd += ["--device", "cpu", "--seed", "0", "--out", str(d / "eval.json")]
    r = run_stage("eval", cmd, d)
    if r["rc"] == 0:
        r["segments"] = json.loads((d / "eval.json").read_text())["segments"]
        r["per_sec"] = round(r["segments"] / r["seconds"], 1)
    done("eval", r)
    cmd = [*CLI, "embed", "--checkpoint", str(ckpt), "--data", str(shards), "--out", str(emb), "--workers", str(args.workers), "--device", "cpu", "--no-progress"]  # fmt: skip
    r = run_stage("embed", cmd, d)
    if not done("embed", r):
        return
    r = run_stage("index", [*CLI, "index", "build", "--embeddings", str(emb), "--out", str(bundle), "--gpu", "off"], d)
    if r["rc"] == 0:
        m = Manifest.read(bundle)
        rows["embed"][name]["segments"] = m.counts["image"]
        rows["embed"][name]["per_sec"] = round(m.counts["image"] / rows["embed"][name]["seconds"], 1)
        r["segments"] = m.counts["image"] + m.counts["audio"]
        r["per_sec"] = round(r["segments"] / r["seconds"], 1)
        faiss_bytes = sum(index_file(bundle.resolve(), k).stat().st_size for k in ("image", "audio"))
        r.update(factories=m.factories, faiss_bytes=faiss_bytes, faiss_bytes_per_vector=round(faiss_bytes / r["segments"], 1))
    if not done("index", r):
        return
    done("serve", serve_stage(bundle, ckpt, args.queries, d))


def table(rows: dict, big: str) -> tuple[str, dict]:
    """The text table and the ratios (factor x N over N) per stage."""
    head = f"{'stage':<8s} | {'N: s':>8s} {'seg/s':>9s} {'RSS MB':>8s} | {big + ': s':>9s} {'seg/s':>9s} {'RSS MB':>8s} | {'RSS x':>6s} {'rate x':>7s}  bars"
    lines, ratios = [head, "-" * len(head)], {}
    for stage in STAGES:
        a, b = rows.get(stage, {}).get("N"), rows.get(stage, {}).get(big)

        def cells(r: dict | None) -> str:
            if r is None:
                return f"{'-':>8s} {'-':>9s} {'-':>8s}"
            if r.get("rc"):
                return f"{'FAILED rc=' + str(r['rc']):>27s}"
            return f"{r['seconds']:>8.1f} {r.get('per_sec', float('nan')):>9.1f} {r['peak_rss_mb']:>8.1f}"

        note = ""
        if a and b and not a.get("rc") and not b.get("rc") and a.get("per_sec") and b.get("per_sec"):
            rss, rate = b["peak_rss_mb"] / a["peak_rss_mb"], b["per_sec"] / a["per_sec"]
            ratios[stage] = {"rss": round(rss, 3), "rate": round(rate, 3)}
            if stage == "index":
                added = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 2**20 / max(1, b["segments"] - a["segments"])
                ratios[stage]["rss_bytes_per_added_vector"] = round(added, 1)
                note = f"RSS +{added:.0f} B/added vector vs FAISS {b['faiss_bytes_per_vector']:.0f} B/vector on disk; "
            else:
                note = f"RSS {'ok' if rss <= RSS_BAR else 'OVER'} (<= {RSS_BAR}); "
            note += f"rate {'ok' if abs(rate - 1) <= RATE_BAR else 'OUT'} (1 ± {RATE_BAR})"
            lines.append(f"{stage:<8s} | {cells(a)} | {cells(b):>27s} | {rss:>6.3f} {rate:>7.3f}  {note}")
        else:
            lines.append(f"{stage:<8s} | {cells(a)} | {cells(b):>27s} |")
    lines.append("sampled from /proc every 0.1 s (process tree incl. forkserver children): largest sum of VmRSS MB, N -> " + big)
    for stage in STAGES:
        a, b = rows.get(stage, {}).get("N") or {}, rows.get(stage, {}).get(big) or {}
        if a.get("sampled_tree_mb") and b.get("sampled_tree_mb"):
            x = b["sampled_tree_mb"] / a["sampled_tree_mb"]
            ratios.setdefault(stage, {})["sampled_tree"] = round(x, 3)
            lines.append(f"  {stage:<8s} {a['sampled_tree_mb']:>8.1f} -> {b['sampled_tree_mb']:>8.1f}  x {x:.3f}")
    return "\n".join(lines), ratios


def main() -> int:
    if sys.argv[1:2] == [WRAP]:
        wrap_stage(sys.argv[2], sys.argv[3:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--clips", type=int, default=2000, help="N: clips of the generated world")
    ap.add_argument("--factor", type=int, default=10, help="the large archive holds factor x N clips (hard links)")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each clip (segments of 1 s)")
    ap.add_argument("--size", type=int, default=64, help="frame size of the generated videos (px)")
    ap.add_argument("--preset", default="test_tiny", help="AVE-Net preset trained, evaluated and served")
    ap.add_argument("--steps", type=int, default=30, help="training steps (fixed)")
    ap.add_argument("--batch-size", type=int, default=32, help="`avlearn train --batch-size`")
    ap.add_argument("--max-segments", type=int, default=500, help="`avlearn eval avc --max-segments`")
    ap.add_argument("--queries", type=int, default=400, help="SearchSimilar calls to the server (half per modality)")
    ap.add_argument("--workers", type=int, default=2, help="`--workers` of prepare and embed")
    ap.add_argument("--work", type=Path, default=Path("/tmp/avlearn-bench-scale"), help="folder for the world, archives and outputs (the world is reused)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 20 clips x 2, 1 s each, 2 steps, 20 segments, 20 queries")
    args = ap.parse_args()
    if args.quick:
        args.clips, args.factor, args.seconds, args.steps, args.batch_size, args.max_segments, args.queries = 20, 2, 1.0, 2, 8, 20, 20
        if args.work == ap.get_default("work"):
            args.work = Path("/tmp/avlearn-bench-scale-quick")
    if args.clips < 1 or args.factor < 2:
        print("--clips must be >= 1 and --factor >= 2", file=sys.stderr)
        return 2

    from avlearn.models import create_model

    size_px = int(create_model("ave_net", args.preset).preprocessing["image_size_px"][0])
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    small, big = make_archives(args.work, args.clips, args.factor, args.seconds, args.size)
    big_name = f"{args.factor}N"
    print(f"archives: {args.clips} and {args.factor * args.clips} clips of {args.seconds} s under {args.work} ({time.perf_counter() - t0:.0f} s)", flush=True)
    rows: dict = {}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()} | {"frame_size_px": size_px, "cores": os.cpu_count()}

    def save() -> None:
        text, ratios = table(rows, big_name)
        (args.work / "scale.json").write_text(json.dumps({"settings": settings, "stages": rows, "ratios": ratios}, indent=1))
        (args.work / "scale.txt").write_text(text + "\n")

    for name, data in (("N", small), (big_name, big)):
        pipeline(name, data, args.work, args, size_px, rows, save)
    text, ratios = table(rows, big_name)
    print(f"\n{args.clips} clips (N) and {args.factor * args.clips} ({big_name}) of {args.seconds} s; preset {args.preset}; {os.cpu_count()} cores\n{text}")
    print(f"written: {args.work / 'scale.json'}, {args.work / 'scale.txt'}")
    failed = any(r.get("rc") for s in rows.values() for r in s.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
