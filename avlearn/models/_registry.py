"""Model registry (timm-style): ``@register_model`` on a factory, ``create_model(name, preset)``.

A factory takes a preset name (``test_*``, ``small``, ``paper``, ...) and keyword
overrides and returns an ``nn.Module`` that carries its preprocessing config as
``model.preprocessing`` (a JSON-ready dict) and its resolved hyper-parameters as
``model.model_config`` (a JSON-ready dict), so a checkpoint restores both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_MODELS: dict[str, Callable[..., torch.nn.Module]] = {}
_PRESETS: dict[str, tuple[str, ...]] = {}


def register_model(name: str, presets: tuple[str, ...]) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Register ``factory(preset: str, **overrides) -> nn.Module`` under ``name``."""

    def deco(factory: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = factory
        _PRESETS[name] = presets
        return factory

    return deco


def list_models() -> dict[str, tuple[str, ...]]:
    """Registered model names → their preset names."""
    return dict(_PRESETS)


def model_from_config(model_config: dict[str, Any], *, seed: int | None = None) -> torch.nn.Module:
    """Rebuild a model from its ``model_config`` (name, preset and hyper-parameters), at a fresh
    initialisation (seeded with ``seed`` when given: the random-weights twin of a trained model)."""
    cfg = dict(model_config)
    name, preset = cfg.pop("name"), cfg.pop("preset")
    if seed is not None:
        torch.manual_seed(seed)
    return create_model(name, preset, **cfg)


def create_model(name: str, preset: str = "small", **overrides: Any) -> torch.nn.Module:
    """Build a registered model. Raises KeyError naming the known models/presets."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; known: {sorted(_MODELS)}")
    if preset not in _PRESETS[name]:
        raise KeyError(f"unknown preset {preset!r} for {name!r}; known: {list(_PRESETS[name])}")
    return _MODELS[name](preset, **overrides)
