"""`avlearn demo`: the whole system on embedded defaults, end to end, on one machine.

Steps (each timed): make a synthetic world (real photos and sounds from ../shared/data
when present, plus its real videos as an extra archive), train the `small` AVE-Net and
AVOL-Net briefly on CPU, embed the held-out videos, build the FAISS bundle, start the
gRPC server in-process on a free port, then use it through the real client: image →
audio clips, audio → heatmap on a frame, and a batch-embed job over an archive.
Everything is written under ``out``; ``out/report.html`` shows it.

``out`` belongs to one demo run (``demo_settings.json``, see ``avlearn.outdir``): run again with the
same settings, the demo reuses what is done (the report says which stages were reused); with
other settings it refuses, unless ``overwrite``. Nothing a running server may be using is replaced
in place: a world made with other settings goes to a new folder (``world-2``, ...) with its own job
archive, and the bundle gets a new version (the old one stays until a reload).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.service_tour import serve_and_query

log = logging.getLogger(__name__)

SETTINGS_FILE = "demo_settings.json"  # the settings of the run in ``out`` (avlearn.outdir.claim_output)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of each stage; ``scaled(minutes)`` stretches training to a time budget.

    The defaults fit in about 15 minutes on 2 CPU cores.
    """

    videos: int = 240
    seconds: float = 6.0
    categories: int = 8
    size_px: int = 128
    ave_steps: int = 900
    avol_steps: int = 500
    batch_size: int = 64
    lr: float = 1e-3
    queries: int = 4
    workers: int = 2
    seed: int = 0

    def scaled(self, minutes: float) -> DemoConfig:
        """Scale training steps (the dominant cost) with the budget; 15 minutes = the defaults."""
        f = max(0.05, minutes / 15.0)
        return DemoConfig(
            videos=max(24, int(self.videos * min(1.0, f * 1.5))),
            seconds=self.seconds,
            categories=self.categories,
            size_px=self.size_px,
            ave_steps=max(20, int(self.ave_steps * f)),
            avol_steps=max(20, int(self.avol_steps * f)),
            batch_size=self.batch_size,
            lr=self.lr,
            queries=self.queries,
            workers=self.workers,
            seed=self.seed,
        )


class _Timer:
    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.reused: list[str] = []  # stages that reused an earlier run's output (their time is the check, not the work)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("demo: %s ...", name)
        t0 = time.perf_counter()
        yield
        self.stages[name] = round(time.perf_counter() - t0, 2)
        log.info("demo: %s done in %.1f s", name, self.stages[name])


def _make_world(out: Path, cfg: DemoConfig, shared: Path | None) -> tuple[Path, bool]:
    """The world of these settings: reused when ``out/world`` (or ``world-N``) holds it, else made in the first free
    one of those folders (a world a server may be serving is never rewritten). Returns (folder, reused)."""
    from avlearn.data.synth import make_world

    params = {"videos": cfg.videos, "seconds": cfg.seconds, "categories": cfg.categories, "size_px": cfg.size_px, "seed": cfg.seed, "shared": bool(shared)}
    world = out / "world"
    for n in range(2, 1000):
        marker = world / "demo_params.json"
        if marker.exists() and json.loads(marker.read_text()) == params and (world / "world.json").exists():
            log.info("demo: reusing the world in %s", world)
            return world, True
        if not world.exists() or (marker.exists() and json.loads(marker.read_text()) == params):
            break  # free, or this world's own unfinished run (generation is deterministic)
        world = out / f"world-{n}"
    world.mkdir(parents=True, exist_ok=True)
    (world / "demo_params.json").write_text(json.dumps(params))
    make_world(
        world,
        videos=cfg.videos,
        seed=cfg.seed,
        categories=cfg.categories,
        seconds=cfg.seconds,
        size_px=cfg.size_px,
        davis=0,
        workers=cfg.workers,
        use_shared=shared is not None,
        shared_dir=shared,
    )
    return world, False


def _train(world: Path, run: Path, model: str, steps: int, cfg: DemoConfig) -> tuple[Path, bool]:
    """Train ``model`` on ``world`` into ``run`` (reused when a finished run of the same world and steps is there).
    Returns (checkpoint, reused). A served checkpoint is in the server's memory: rewriting it is safe."""
    from training.loop import train

    best = run / "best"
    made_for = {"world": world.name, "steps": steps, "model": model}
    marker = run / "demo_train.json"
    if (best / "model.safetensors").exists() and (run / "summary.json").exists() and marker.exists() and json.loads(marker.read_text()) == made_for:
        log.info("demo: reusing the trained %s in %s", model, run)
        return best, True
    if run.exists():
        shutil.rmtree(run)
    summary = train(
        "avc",
        str(world / "splits" / "train.csv"),
        run,
        preset="small",
        steps=steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        workers=0,
        seed=cfg.seed,
        device="auto",
        options={"model": model},
        val_data=str(world / "splits" / "val.csv"),
    )
    (run / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    marker.write_text(json.dumps(made_for))
    return (best if (best / "model.safetensors").exists() else run / "final"), False


def _archive_for_job(out: Path, world: Path, shared: Path | None) -> Path:
    """The archive the embed job processes: the real videos of ../shared/data when present, else the world's val videos.

    One archive per world (``archive`` for ``world``, ``archive-2`` for ``world-2``, ...); files are added, never rewritten.
    """
    archive = out / world.name.replace("world", "archive", 1)
    archive.mkdir(parents=True, exist_ok=True)
    src = sorted((shared / "video").glob("*")) if shared is not None and (shared / "video").is_dir() else []
    if not src:
        import csv

        with open(world / "splits" / "val.csv") as f:
            src = [(world / "splits" / row["path"]).resolve() for row in csv.DictReader(f)]
    for p in src:
        if not (archive / p.name).exists():
            shutil.copy2(p, archive / p.name)
    return archive


def demo_settings(minutes: float, shared: Path | None, seed: int) -> dict[str, Any]:
    """What makes one demo run (its folder is reused only for the same values)."""
    return {"minutes": float(minutes), "seed": int(seed), "shared_data": str(shared) if shared else None}


def _claim(out: Path, settings: dict[str, Any], overwrite: bool) -> str:
    """Claim ``out`` for this run (avlearn.outdir): "new", "resume" or "overwrite"; raises OutputExists otherwise."""
    from avlearn.outdir import claim_output, read_marker

    saved = read_marker(out, SETTINGS_FILE)
    hint = "rerun with the same settings to reuse it"
    if saved:
        flags = [f"--minutes {saved.get('minutes'):g}", f"--seed {saved.get('seed')}"] + (["--no-shared"] if saved.get("shared_data") is None else [])
        hint = f"rerun with {' '.join(flags)} to reuse it"
    return claim_output(out, settings, what="demo run", marker=SETTINGS_FILE, overwrite=overwrite, same_settings_hint=hint)


def run_demo(
    out: str | Path = "runs/demo", *, minutes: float = 15.0, shared: str | Path | None = "auto", seed: int = 0, overwrite: bool = False
) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the report's data (also in ``out/demo.json``).

    Raises:
        avlearn.outdir.OutputExists: ``out`` holds a demo run with other settings (or other files) and not ``overwrite``.
    """
    out = Path(out).resolve()
    shared_dir = (SHARED_DATA if SHARED_DATA.is_dir() else None) if shared == "auto" else (Path(shared) if shared else None)
    how = _claim(out, demo_settings(minutes, shared_dir, seed), overwrite)
    from avlearn.eval.avc import evaluate_avc  # noqa: F401  (fail early if the stack is incomplete)

    cfg = DemoConfig(seed=seed).scaled(minutes)
    timer = _Timer()
    result: dict[str, Any] = {"config": cfg.__dict__, "minutes": minutes, "shared_data": str(shared_dir) if shared_dir else None, "out_claim": how}

    with timer.stage("synth world"):
        world, reused = _make_world(out, cfg, shared_dir)
    if reused:
        timer.reused.append("synth world")
    with timer.stage("train AVE-Net"):
        ave, ave_reused = _train(world, out / "runs" / "ave_net", "ave_net", cfg.ave_steps, cfg)
    if ave_reused:
        timer.reused.append("train AVE-Net")
    with timer.stage("train AVOL-Net"):
        avol, reused = _train(world, out / "runs" / "avol_net", "avol_net", cfg.avol_steps, cfg)
    if reused:
        timer.reused.append("train AVOL-Net")
    with timer.stage("evaluate"):
        result["eval"] = _evaluate(world, ave, avol)
    with timer.stage("embed held-out videos"):
        from avlearn.pipeline.embed import run_embed
        from avlearn.pipeline.writer import read_embed_config

        emb = out / "embeddings"
        if emb.exists() and (not ave_reused or _embedded_with(emb, read_embed_config) != (str(ave), str(world / "splits" / "test.csv"))):
            shutil.rmtree(emb)  # made by an earlier model or from another world (no server reads embeddings)
        result["embed"] = run_embed(ave, world / "splits" / "test.csv", emb, workers=cfg.workers, show_progress=True)
    with timer.stage("build bundle"):
        from avlearn.index.build import build_bundle

        bundle = build_bundle(emb, out / "bundle")
    archive = _archive_for_job(out, world, shared_dir)
    with timer.stage("serve + query"):
        result["service"] = serve_and_query(out, world, bundle, ave, avol, archive, seed=cfg.seed, queries=cfg.queries)
    result["timings_sec"] = timer.stages
    result["reused"] = timer.reused
    result["world"] = _world_facts(world)
    result["training"] = {name: _train_facts(out / "runs" / name) for name in ("ave_net", "avol_net")}
    result["curves"] = {name: _curves(out / "runs" / name) for name in ("ave_net", "avol_net")}
    (out / "demo.json").write_text(json.dumps(result, indent=2, default=str))
    from demo.report import write_report

    report = write_report(out, result)
    log.info("demo: report at %s", report)
    result["report"] = str(report)
    return result


def _embedded_with(emb: Path, read_embed_config: Any) -> tuple[str, str] | None:
    try:
        plan = read_embed_config(emb)
    except (FileNotFoundError, ValueError):
        return None
    return plan.get("checkpoint"), plan.get("data")


def _world_facts(world: Path) -> dict[str, Any]:
    """What the report says about the world: folder, sizes, categories, split counts."""
    w = json.loads((world / "world.json").read_text())
    p = w.get("parameters", {})
    return {
        "folder": world.name,
        "videos": p.get("videos"),
        "seconds": p.get("seconds"),
        "size_px": p.get("size_px"),
        "sounding_categories": w.get("sounding_categories", []),
        "counts": w.get("counts", {}),
        "real_media": bool(p.get("use_shared")),
    }


def _train_facts(run: Path) -> dict[str, Any]:
    """Steps, wall time and best validation of a training run (its summary.json)."""
    try:
        s = json.loads((run / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: s.get(k) for k in ("step", "elapsed_sec", "val", "best", "samples_per_sec") if k in s}


def _evaluate(world: Path, ave: Path, avol: Path) -> dict[str, Any]:
    """Held-out metrics of the trained models and of the same architectures with random weights."""
    from avlearn.eval.avc import evaluate_avc

    res = evaluate_avc(
        str(ave), str(world / "splits" / "test.csv"), boxes=str(world / "boxes.json"), localizer=str(avol), random_weights=True, max_segments=600
    )
    return {"trained": res["trained"], "random": res["random_weights"], "segments": res["segments"], "videos": res["videos"]}


def _curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    curves: dict[str, list[tuple[int, float]]] = {}
    path = run / "metrics.jsonl"
    if not path.exists():
        return curves
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for key in ("loss", "acc"):
            if key in row:
                curves.setdefault(f"{row['split']}/{key}", []).append((int(row["step"]), float(row[key])))
    return curves
