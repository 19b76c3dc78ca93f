"""Typed option sets and model configs (avlearn.config): validated once, converted to their field types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from avlearn.config import OptionError, config_to_json, describe_options, opt, option_strings, parse_options, resolve_preset
from avlearn.media.features import AudioFeatureConfig


@dataclass(frozen=True)
class Opts:
    steps: int = opt(3, "how many")
    rate: float = opt(0.5, "a rate")
    on: bool = opt(False, "a switch")
    mode: Literal["a", "b"] = opt("a", "a choice")
    limit: float | None = opt(None, "optional")
    sizes: tuple[int, ...] = opt((1, 2), "sizes")
    pair: tuple[int, int] = opt((4, 4), "a pair")


def test_strings_are_converted_once_and_defaults_kept() -> None:
    o = parse_options(Opts, {"steps": "7", "rate": "2", "on": "yes", "mode": "B", "limit": "none", "sizes": "3,4,5", "pair": [8, 9]})
    assert o == Opts(steps=7, rate=2.0, on=True, mode="b", limit=None, sizes=(3, 4, 5), pair=(8, 9))
    assert option_strings(o) == {"steps": "7", "rate": "2.0", "on": "true", "mode": "b", "sizes": "3,4,5", "pair": "8,9"}
    assert parse_options(Opts, option_strings(o)) == o  # what a run config stores parses back to the same options
    assert [r[0] for r in describe_options(Opts)] == ["steps", "rate", "on", "mode", "limit", "sizes", "pair"]
    assert describe_options(Opts)[3][1] == "a|b"


@pytest.mark.parametrize(
    "raw, message",
    [({"stepz": "1"}, r"unknown thing\(s\) \['stepz'\]; known: \['limit', 'mode', "), ({"steps": "1.5"}, "steps='1.5': expected an integer"),
     ({"on": "maybe"}, "expected true/false"), ({"mode": "c"}, "not one of"), ({"pair": "1,2,3"}, "expected 2 values")],
)  # fmt: skip
def test_bad_keys_and_values_name_the_fix(raw, message) -> None:
    with pytest.raises(OptionError, match=message):
        parse_options(Opts, raw, what="thing")


@dataclass(frozen=True)
class ModelCfg:
    image_size_px: tuple[int, int]
    audio: AudioFeatureConfig
    width: int = 8


def test_resolve_preset_validates_overrides_and_round_trips_json() -> None:
    presets = {"tiny": ModelCfg((32, 32), AudioFeatureConfig(kind="mel", n_mels=16))}
    cfg = resolve_preset(presets, "tiny", {"width": 16})
    assert cfg.width == 16 and cfg.image_size_px == (32, 32)
    as_json = config_to_json(cfg)
    assert as_json["image_size_px"] == [32, 32] and as_json["audio"]["n_mels"] == 16
    assert resolve_preset(presets, "tiny", as_json) == cfg  # a checkpoint's JSON rebuilds the same config
    with pytest.raises(OptionError, match="unknown model hyper-parameter"):
        resolve_preset(presets, "tiny", {"depth": 3})
    with pytest.raises(OptionError, match="width"):
        resolve_preset(presets, "tiny", {"width": "wide"})
    with pytest.raises(KeyError, match="known: \\['tiny'\\]"):
        resolve_preset(presets, "huge", {})
