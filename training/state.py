"""What a resumable run saves besides its weights: RNG streams of every library, atomic trainer state, checkpoints."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avlearn.atomic import atomic_path, replace_dir, temp_name

STATE_FILE = "trainer.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def publish_checkpoint(model: torch.nn.Module, target: Path, run_config: dict[str, Any]) -> Path:
    """Write a checkpoint into a temp dir beside ``target`` and swap it in."""
    from avlearn.checkpoint import save_checkpoint

    tmp = temp_name(target)
    save_checkpoint(tmp, model, run_config=run_config)
    return replace_dir(tmp, target)
