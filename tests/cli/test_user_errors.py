"""A newcomer's mistakes (issue 23), each through the real `avlearn` console entry in a fresh process:
one line on stderr naming the fix, exit code 2, no traceback (unless -v). Plus help at every level."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avlearn.cli import Parser, build_parser, iter_parsers

ROOT = Path(__file__).resolve().parents[2]


def avlearn(*argv: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the console script (``avlearn`` beside this Python, else ``python -m avlearn.cli``) with this tree first on the path."""
    script = Path(sys.executable).with_name("avlearn")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "avlearn.cli"]
    path = os.pathsep.join([str(ROOT), str(ROOT / "clients"), str(ROOT / "proto"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "AVLEARN_SERVER": "127.0.0.1:9"}
    return subprocess.run([*cmd, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line(proc: subprocess.CompletedProcess, *expect: str) -> str:
    """Exit code 2, exactly one stderr line starting 'avlearn...: error:', no traceback; returns the line."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("avlearn") and ": error: " in lines[0], lines[0]
    for text in expect:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mistakes")
    (root / "empty").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a world\n")
    run = root / "run"  # a training run folder (its state file is what marks it)
    (run / "state").mkdir(parents=True)
    (run / "state" / "trainer.pt").write_bytes(b"")
    return {"root": root, "empty": root / "empty", "notes": root / "notes", "run": run}


# (argv, text the one line must hold); {root} etc. are filled from the fixture
MISTAKES = [
    # issue 23, as reported
    (["demo", "--minute", "5"], ["avlearn demo: error: unrecognized arguments: --minute 5", "did you mean --minutes?"]),
    (["embed"], ["avlearn embed: error:", "--checkpoint", "--data"]),
    (["embed", "--data", "{empty}", "--out", "{root}/e"], ["required", "--checkpoint"]),
    (["embed", "--checkpoint", "{root}/nope", "--data", "{empty}", "--out", "{root}/e"], ["--checkpoint", "no such file"]),
    (["serve"], ["avlearn serve: error: nothing to serve", "--bundle"]),
    (["serve", "--bundle", "{empty}"], ["--bundle needs --checkpoint"]),
    (["serve", "--bundle", "{root}/nope", "--checkpoint", "{root}/nope"], ["--bundle", "no such file"]),
    (["embed", "--checkpoint", "c", "--data", "d", "--out", "o", "--wrokers", "2"], ["avlearn embed: error: unrecognized arguments: --wrokers", "--workers"]),
    (["train", "avcc", "--data", "{empty}", "--out", "{run}", "--steps", "5"], ["unknown task 'avcc'", "avc"]),
    # missing or wrong arguments, files, values; unknown names
    (["trian"], ["invalid choice: 'trian'"]),
    (["train", "avc", "--data", "{empty}", "--out", "{root}/r", "--steps", "ten"], ["--steps: invalid int value"]),
    (["train", "avc", "--data", "{empty}", "--out", "{root}/r", "--steps", "1", "--set", "bogus=1"], ["unknown avc option", "bogus", "train avc --help"]),
    (["train", "avc", "--data", "{empty}", "--out", "{root}/r", "--steps", "1", "--set", "model=resnet"], ["model", "resnet", "ave_net"]),
    (["train", "avc", "--data", "{empty}", "--out", "{root}/r", "--steps", "1", "--set", "nokey"], ["KEY=VALUE"]),
    (["train", "avc", "--data", "{empty}", "--out", "{run}", "--steps", "1"], ["already holds a run", "--resume"]),
    (["train", "avc", "--data", "{root}/nope", "--out", "{root}/r2", "--steps", "1"], ["nope"]),
    (["eval"], ["name an evaluation", "avc"]),
    (["eval", "avcc"], ["unknown evaluation 'avcc'"]),
    (["eval", "avc", "--checkpoint", "{root}/nope", "--data", "{empty}"], ["no checkpoint"]),
    (["eval", "avc", "--data", "{empty}"], ["avlearn eval avc: error:", "--checkpoint"]),
    (["index", "build", "--embeddings", "{empty}", "--out", "{root}/b"], ["not an embeddings dir"]),
    (["index", "build", "--embeddings", "{root}/nope", "--out", "{root}/b"], ["--embeddings", "no such file"]),
    (["index", "info", "{root}/nope"], ["no such file"]),
    (["index"], ["ACTION"]),
    (["prepare", "--data", "{root}/nope", "--out", "{root}/s"], ["--data", "no such file"]),
    (["embed", "--checkpoint", "{notes}", "--data", "{empty}", "--out", "{root}/e"], ["holds no files to embed"]),
    (["synth", "--out", "{notes}"], ["not empty", "--overwrite"]),
    (["synth", "--out", "{root}/w", "--size", "15"], ["size_px"]),
    (["track", "--video", "v.mp4", "--first-mask", "m.png", "--out", "o"], ["--checkpoint is required"]),
    (["query", "image2audio", "{root}/nope.jpg"], ["avlearn query image2audio: error:", "nope.jpg", "no such file"]),
    (["query", "audio2image", "seg:abc"], ["seg:ID"]),
    (["query"], ["KIND"]),
    (["localize", "--audio", "{root}/nope.wav", "--image", "{root}/nope.png"], ["--audio", "no such file"]),
    (["jobs", "status", "j1", "--token-file", "{root}/nope"], ["--token-file"]),
    (["web", "--auth-token-file", "{root}/nope"], ["--auth-token-file"]),
    (["demo", "--minutes", "0"], ["--minutes must be > 0"]),
    (["demo", "--out", "{notes}"], ["holds no demo run", "--overwrite"]),
]


def _fill(argv: list[str], files: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]


@pytest.mark.parametrize("argv,expect", MISTAKES, ids=[" ".join(a)[:60] for a, _ in MISTAKES])
def test_mistake_is_one_line_and_exit_2(argv, expect, files):
    assert_one_line(avlearn(*_fill(argv, files), cwd=files["root"]), *expect)


def test_training_on_an_empty_folder_ends_in_one_error_line(files):
    """Found once the task reads the data, after its INFO progress lines: the last line names the problem, exit 2, no traceback."""
    proc = avlearn("train", "avc", "--data", str(files["empty"]), "--out", str(files["root"] / "r3"), "--steps", "1", "--preset", "test_tiny")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert lines[-1].startswith("avlearn train: error: ") and "at least two videos" in lines[-1]
    assert all(" INFO " in line for line in lines[:-1]), lines


def test_verbose_adds_the_traceback(files):
    proc = avlearn("-v", "serve", "--bundle", str(files["root"] / "nope"), "--checkpoint", "x")
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "avlearn serve: error: --bundle" in proc.stderr.strip().splitlines()[-1]
    proc = avlearn("serve", "--bundle", str(files["root"] / "nope"), "--checkpoint", "x", "-v")  # -v after the command works too
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_demo_into_a_folder_of_another_run_is_refused_and_untouched(tmp_path):
    """The issue's `--minute 5` into runs/demo, as `--minutes 5`: refused before anything is written, naming the way on."""
    from avlearn.outdir import claim_output
    from demo.run import SETTINGS_FILE, demo_settings

    out = tmp_path / "demo"
    claim_output(out, demo_settings(15.0, None, 0), what="demo run", marker=SETTINGS_FILE)
    (out / "world").mkdir()
    (out / "world" / "v.mp4").write_bytes(b"served video")
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    line = assert_one_line(avlearn("demo", "--out", str(out), "--minutes", "5", "--no-shared"), "minutes 15.0 → 5.0", "--minutes 15", "--overwrite")
    assert "another --out" in line
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert (out / "world" / "v.mp4").read_bytes() == b"served video"
    # a folder from before settings were recorded (a world, no demo_settings.json) is refused too
    old = tmp_path / "old"
    (old / "world").mkdir(parents=True)
    assert_one_line(avlearn("demo", "--out", str(old), "--no-shared"), "holds no demo run")


def test_claim_output_resumes_same_settings_refuses_others(tmp_path):
    from avlearn.outdir import OutputExists, claim_output

    out = tmp_path / "o"
    assert claim_output(out, {"a": 1}, what="thing", marker="m.json") == "new"
    (out / "artefact").write_text("x")
    assert claim_output(out, {"a": 1}, what="thing", marker="m.json") == "resume"
    with pytest.raises(OutputExists, match=r"a 1 → 2"):
        claim_output(out, {"a": 2}, what="thing", marker="m.json")
    assert claim_output(out, {"a": 2}, what="thing", marker="m.json", overwrite=True) == "overwrite"
    assert claim_output(out, {"a": 2}, what="thing", marker="m.json") == "resume"
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputExists, match="is a file"):
        claim_output(tmp_path / "f", {"a": 1}, what="thing", marker="m.json")


def test_demo_world_of_other_settings_goes_beside_the_served_one(tmp_path):
    """A demo world a server may be serving is never rewritten: other settings → world-2; the same → reused."""
    from demo.run import DemoConfig, _make_world

    small = DemoConfig(videos=4, seconds=1.0, categories=2, size_px=32, workers=1)
    world, reused = _make_world(tmp_path, small, None)
    assert world == tmp_path / "world" and not reused
    stamp = {p.name: p.stat().st_mtime_ns for p in (world / "videos").iterdir()}
    again, reused = _make_world(tmp_path, small, None)
    assert again == world and reused
    other, reused = _make_world(tmp_path, DemoConfig(videos=4, seconds=1.0, categories=2, size_px=32, workers=1, seed=1), None)
    assert other == tmp_path / "world-2" and not reused
    assert {p.name: p.stat().st_mtime_ns for p in (world / "videos").iterdir()} == stamp


def test_synth_reruns_same_settings_and_refuses_others(tmp_path):
    out = tmp_path / "w"
    args = ["synth", "--out", str(out), "--videos", "2", "--seconds", "1", "--size", "32", "--categories", "2", "--davis", "0", "--no-shared", "--workers", "1"]
    first = avlearn(*args)
    assert first.returncode == 0, first.stderr
    again = avlearn(*args)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert_one_line(avlearn(*args[:-2], "--seed", "3"), "seed 0 → 3", "--overwrite")


# ---------------------------------------------------------------- help at every level


def test_help_at_every_level_describes_each_flag_with_its_default():
    parser = build_parser()
    for p in iter_parsers(parser):
        assert isinstance(p, Parser) and p.allow_abbrev is False, p.prog
        text = p.format_help()  # formats every %(default)s
        if p is not parser:
            assert p.description, f"{p.prog}: no description"
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            assert action.help, f"{p.prog} {action.option_strings or action.dest}: no help text"
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS, [], ()):
                assert "default" in p._get_formatter()._expand_help(action), f"{p.prog} {action.option_strings}: default not shown"
        assert "usage:" in text


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["--help"], ["train", "embed", "serve"]),
        (["eval", "--help"], ["evaluations:", "avc ", "tracking"]),
        (["eval", "avc", "--help"], ["--checkpoint CHECKPOINT", "--max-segments", "(default: 2000)", "--random-weights"]),
        (["train", "--help"], ["tasks", "shuffle_learn", "--batch-size", "(default: 32)"]),
        (["train", "avc", "--help"], ["--set options", "model=ave_net|avol_net", "hard_negatives=", "(default: 1024)"]),
        (["train", "colorization", "--help"], ["task colorization"]),
        (["index", "build", "--help"], ["--target-recall", "(default: 0.95)"]),
        (["serve", "--help"], ["--job-root", "--port", "(default: 50051)"]),
        (["demo", "--help"], ["--overwrite", "(default: runs/demo)"]),
    ],
)
def test_help(argv, expect):
    proc = avlearn(*argv)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    flat = " ".join(proc.stdout.split())  # help wraps long lines
    for text in expect:
        assert text in flat, (text, proc.stdout)


def test_train_help_with_an_unknown_task_is_one_line():
    assert_one_line(avlearn("train", "avcc", "--help"), "unknown task 'avcc'")


# ---------------------------------------------------------------- empty and all-failed work; FAISS's import chatter


def test_all_failed_embed_exits_nonzero_with_a_summary_and_index_build_refuses(tmp_path):
    """A folder whose only file is a text file renamed .mp4: embed says what happened and exits 1; index build refuses."""
    from avlearn.checkpoint import save_checkpoint
    from avlearn.models import create_model

    ckpt = save_checkpoint(tmp_path / "ckpt", create_model("ave_net", "test_tiny"))
    data = tmp_path / "videos"
    data.mkdir()
    (data / "clip.mp4").write_text("just text\n")
    (data / "notes.txt").write_text("a note\n")
    proc = avlearn("embed", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "emb"), "--no-progress", "--device", "cpu")
    assert proc.returncode == 1, proc.stderr
    assert "embed: 2 file(s) seen, 0 decoded, 2 failed (" in proc.stderr and "NotMedia 1" in proc.stderr and "errors.jsonl" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["segments_total"] == 0
    assert_one_line(avlearn("index", "build", "--embeddings", str(tmp_path / "emb"), "--out", str(tmp_path / "bundle")), "no embedded segment", "errors.jsonl")
    assert not (tmp_path / "bundle").exists()


def test_faiss_import_is_quiet_at_info():
    code = "import logging; logging.basicConfig(level=logging.INFO); from avlearn.index.faiss_search import load_faiss; load_faiss(); print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.strip() == "ok" and "ModuleNotFoundError" not in proc.stderr and "faiss.loader" not in proc.stderr, proc.stderr
