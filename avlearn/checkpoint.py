"""Checkpoints: ``model.safetensors`` (weights) + ``config.json`` (model config, preprocessing, run).

``config.json`` = {"format_version": 1, "model": model.model_config, "preprocessing":
model.preprocessing, "run": run_config}. ``load_checkpoint`` rebuilds the model with
``create_model(name, preset, **hyper-parameters)`` and loads the weights strictly, so a
checkpoint restores the architecture, its preprocessing and its weights, nothing re-guessed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from avlearn.atomic import atomic_path, atomic_write_text

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, corrupt or does not match its model."""


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        else:
            return model


def save_checkpoint(out_dir: str | os.PathLike, model: torch.nn.Module, *, run_config: dict | None = None) -> Path:
    """Write ``out_dir/model.safetensors`` and ``out_dir/config.json``; returns ``out_dir``.

    The model must carry ``model_config`` (with "name" and "preset") and ``preprocessing``.
    ``run_config`` (JSON-ready: data, steps, metrics, ...) is stored as provenance.
    """
    from safetensors.torch import save_file

    model = _unwrap(model)
    model_config = getattr(model, "model_config", None)
    preprocessing = getattr(model, "preprocessing", None)
    if not isinstance(model_config, dict) or "name" not in model_config or "preset" not in model_config:
        raise CheckpointError(f"{type(model).__name__} has no model_config with 'name' and 'preset'; build it with create_model")
    if not isinstance(preprocessing, dict):
        raise CheckpointError(f"{type(model).__name__} has no preprocessing dict")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"format_version": FORMAT_VERSION, "model": model_config, "preprocessing": preprocessing, "run": run_config}
    text = json.dumps(config, indent=2, sort_keys=True)  # fails early on a non-JSON run_config
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "model": model_config["name"]})
    atomic_write_text(out / CONFIG_NAME, text + "\n")
    return out


def _resolve(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights file, config file) for a checkpoint dir or a path to one of its two files."""
    p = Path(path)
    if p.is_dir():
        d = p
    elif p.name in (WEIGHTS_NAME, CONFIG_NAME):
        d = p.parent
    elif p.exists():
        raise CheckpointError(f"{p} is not a checkpoint (expected a directory holding {WEIGHTS_NAME} and {CONFIG_NAME})")
    else:
        raise CheckpointError(f"no checkpoint at {p}")
    weights, config = d / WEIGHTS_NAME, d / CONFIG_NAME
    for f in (weights, config):
        if not f.is_file():
            raise CheckpointError(f"incomplete checkpoint {d}: missing {f.name}")
    return weights, config


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed and validated ``config.json`` of a checkpoint (dir or file path)."""
    _, config_file = _resolve(path)
    try:
        config = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"corrupt checkpoint config {config_file}: {exc}") from exc
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        version = config.get("format_version") if isinstance(config, dict) else None
        raise CheckpointError(f"unsupported checkpoint format_version {version!r} in {config_file} (expected {FORMAT_VERSION})")
    model_cfg = config.get("model")
    if not isinstance(model_cfg, dict) or "name" not in model_cfg or "preset" not in model_cfg:
        raise CheckpointError(f"checkpoint config {config_file} has no model name/preset")
    return config


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model from ``config.json`` and load ``model.safetensors`` strictly.

    Args:
        path: the checkpoint directory, or its model.safetensors / config.json.
        device: where the model's weights go.

    Returns:
        (model in eval mode on ``device``, the parsed config.json dict).

    Raises:
        CheckpointError: missing/corrupt files, unknown model, or weights that do not fit the model.
    """
    from avlearn.models import model_from_config

    weights_file, _ = _resolve(path)
    config = read_config(path)
    try:
        model = model_from_config(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot rebuild the model of {weights_file.parent}: {exc}") from exc
    load_weights(model, path)
    return model.to(device).eval(), config


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load a checkpoint's weights and buffers into an already built ``model`` (strict).

    Raises:
        CheckpointError: missing/corrupt files, or weights that do not fit ``model``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_file, _ = _resolve(path)
    model_cfg = read_config(path)["model"]
    try:
        state = load_file(str(weights_file), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"corrupt checkpoint weights {weights_file}: {exc}") from exc
    try:
        _unwrap(model).load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights in {weights_file} ({model_cfg['name']}/{model_cfg['preset']}) do not fit {type(_unwrap(model)).__name__}: {exc}"
        ) from exc


def checkpoint_hash(path: str | os.PathLike) -> str:
    """sha256 (hex) of the checkpoint's weights file."""
    weights_file, _ = _resolve(path)
    h = hashlib.sha256()
    with open(weights_file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
