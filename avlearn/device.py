"""Device choice, the one rule for every command: ``auto`` is CUDA when torch sees a GPU, else the CPU."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto", *, local_rank: int = 0) -> torch.device:
    """ "auto" → ``cuda:local_rank`` when available, else ``cpu``; "cuda" → ``cuda:local_rank``; anything else as given.

    Raises:
        ValueError: CUDA asked for but torch sees no CUDA device.
    """
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device (use --device cpu or auto)")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)
