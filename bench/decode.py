"""Benchmark: segment extraction (avlearn.media.read_segments) against a plain ffmpeg decode.

Ours: one frame + ``segment_sec`` of audio per second of video (``read_segments`` with
the hop = segment = 1 s), frames resized to the size the presets store (paper:
224x224, 48 kHz; ``--size 128 --rate 16000`` for the small preset), audio down-mixed
and resampled. Reference: ``ffmpeg -threads 1 -i FILE -f null -``, which decodes
every video frame and every audio sample and converts nothing.

Both run on one core (this process pins itself with ``os.sched_setaffinity``;
ffmpeg inherits the pin and runs with ``taskset -c CORE`` when available) with one
decoder thread. Each measurement is the best of ``--repeats`` runs, ours and
ffmpeg interleaved, so load from other processes hits both alike.

Two clocks: CPU seconds (user + system; ours from ``time.process_time`` around the
call, ffmpeg's from the child's rusage) — the fair figure on a shared, loaded
machine — and wall seconds. ffmpeg's figures are for its whole process, so they
include its start-up; the start-up of a 1-frame null source is printed and a
second ratio subtracts it.

Prints a table (file, media duration, ours CPU s, ffmpeg CPU s, ratio = ffmpeg /
ours, i.e. our media-seconds-per-CPU-second over ffmpeg's, ratio without ffmpeg's
start-up, and the wall-clock ratio) and the totals.

Usage: python bench/decode.py [--data ../shared/data/video] [--synth] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from avlearn.media import MediaError, probe, read_segments

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "video"


def ours_sec(path: Path, size_px: tuple[int, int], rate_hz: int) -> tuple[float, float]:
    """(CPU s, wall s) for read_segments over the whole file (1 s segments, 1 s hop)."""
    c0, t0 = time.process_time(), time.perf_counter()
    read_segments(path, size_px=size_px, sample_rate_hz=rate_hz, require_audio=False, threads=1)
    return time.process_time() - c0, time.perf_counter() - t0


def ffmpeg_cmd(path: Path | None, core: int) -> list[str]:
    prefix = ["taskset", "-c", str(core)] if shutil.which("taskset") else []
    src = ["-f", "lavfi", "-i", "nullsrc=s=16x16:d=0.04"] if path is None else ["-threads", "1", "-i", str(path)]
    return prefix + ["ffmpeg", "-nostdin", "-v", "error", *src, "-f", "null", "-"]


def ffmpeg_sec(path: Path | None, core: int) -> tuple[float, float]:
    """(CPU s, wall s) of ``ffmpeg -threads 1 -i FILE -f null -`` (None: a 1-frame null source = start-up)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(ffmpeg_cmd(path, core), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def make_synth(folder: Path) -> list[Path]:
    """Two small generated videos (H.264 + AAC), for a run without ../shared."""
    from avlearn.media.writer import write_video

    out = []
    for name, seconds, size in (("synth_10s_320x240.mp4", 10.0, (240, 320)), ("synth_20s_640x360.mp4", 20.0, (360, 640))):
        rng = np.random.default_rng(0)
        n = int(seconds * 25)
        frames = (np.clip(rng.normal(128, 40, (*size, 3)) + i, 0, 255).astype(np.uint8) for i in range(n))
        t = np.arange(int(seconds * 48000)) / 48000
        write_video(folder / name, frames, 25, audio=(0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
        out.append(folder / name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of videos")
    parser.add_argument("--synth", action="store_true", help="also time two generated videos")
    parser.add_argument("--size", type=int, default=224, help="square frame size in px (paper: 224)")
    parser.add_argument("--rate", type=int, default=48000, help="audio rate in Hz (paper: 48000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", type=int, default=0)
    args = parser.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is not installed (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    files = sorted(p for p in args.data.glob("*") if p.is_file()) if args.data.is_dir() else []
    tmp = tempfile.TemporaryDirectory()
    if args.synth:
        files += make_synth(Path(tmp.name))
    if not files:
        print(f"no videos in {args.data} (pass --data or --synth)", file=sys.stderr)
        return 2
    size_px = (args.size, args.size)
    startups = [ffmpeg_sec(None, args.core) for _ in range(args.repeats)]
    startup_cpu, startup_wall = min(c for c, _ in startups), min(w for _, w in startups)
    print(f"segments: 1 frame at {args.size}x{args.size} + 1 s audio at {args.rate} Hz per second; one core, 1 thread; best of {args.repeats}")
    print(f"ffmpeg start-up (1-frame null source): {startup_cpu:.3f} CPU s, {startup_wall:.3f} wall s\n")
    print(f"{'file':40s} {'dur s':>6s} {'ours cpu':>8s} {'ff cpu':>7s} {'ratio':>6s} {'-start':>6s} {'wall':>6s}")
    tot = dict(media=0.0, ours=0.0, ff=0.0, ours_wall=0.0, ff_wall=0.0, n=0)
    for path in files:
        try:
            duration = probe(path).duration_sec
            ours_sec(path, size_px, args.rate)  # warm the page cache
        except MediaError as exc:
            print(f"{path.name:40s} skipped: {exc}")
            continue
        ours, ff = [], []
        for _ in range(args.repeats):
            ours.append(ours_sec(path, size_px, args.rate))
            ff.append(ffmpeg_sec(path, args.core))
        o, f = min(c for c, _ in ours), min(c for c, _ in ff)
        ow, fw = min(w for _, w in ours), min(w for _, w in ff)
        for key, value in (("media", duration), ("ours", o), ("ff", f), ("ours_wall", ow), ("ff_wall", fw), ("n", 1)):
            tot[key] += value
        print(f"{path.name[:40]:40s} {duration:6.2f} {o:8.3f} {f:7.3f} {f / o:6.2f} {(f - startup_cpu) / o:6.2f} {fw / ow:6.2f}")
    ff_net = tot["ff"] - tot["n"] * startup_cpu
    print(
        f"\n{'total':40s} {tot['media']:6.2f} {tot['ours']:8.3f} {tot['ff']:7.3f} {tot['ff'] / tot['ours']:6.2f} {ff_net / tot['ours']:6.2f} {tot['ff_wall'] / tot['ours_wall']:6.2f}"
    )
    print(
        f"media seconds per CPU second: ours {tot['media'] / tot['ours']:.1f}, ffmpeg {tot['media'] / tot['ff']:.1f} "
        f"({tot['media'] / ff_net:.1f} without start-up); ratio {tot['ff'] / tot['ours']:.2f} ({ff_net / tot['ours']:.2f} without start-up); "
        f"wall-clock ratio {tot['ff_wall'] / tot['ours_wall']:.2f}"
    )
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
