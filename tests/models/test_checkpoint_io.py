"""Checkpoints: safetensors + config.json round trip, hashing, clear errors for broken checkpoints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from avlearn.checkpoint import CheckpointError, checkpoint_hash, load_checkpoint, read_config, save_checkpoint
from avlearn.media.features import AudioFeatureConfig
from avlearn.models import create_model


def _inputs(model: torch.nn.Module, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = model.preprocessing["image_size_px"]
    return torch.randn(batch, 3, h, w), torch.randn(batch, *AudioFeatureConfig.from_dict(model.preprocessing["audio"]).shape)


@pytest.mark.parametrize("name", ["ave_net", "avol_net"])
def test_round_trip_gives_identical_outputs(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, "test_tiny", embed_dim=12)
    x, s = _inputs(model, 4)
    model.train()
    model(x, s)  # move the BatchNorm running statistics away from their init
    model.eval()
    with torch.no_grad():
        expected = model(x, s)
    out = save_checkpoint(tmp_path / "ckpt", model, run_config={"steps": 3, "data": "synthetic"})
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()

    loaded, config = load_checkpoint(out)
    assert not loaded.training
    assert config["format_version"] == 1 and config["run"] == {"steps": 3, "data": "synthetic"}
    assert config["model"]["name"] == name and config["model"]["preset"] == "test_tiny" and config["model"]["embed_dim"] == 12
    assert loaded.preprocessing == model.preprocessing == config["preprocessing"]
    assert loaded.model_config == model.model_config
    with torch.no_grad():
        got = loaded(x, s)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)

    # the weights file path works too, and the hash is the file's sha256
    loaded2, _ = load_checkpoint(out / "model.safetensors")
    assert type(loaded2) is type(model)
    assert checkpoint_hash(out) == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()


def test_hash_changes_with_the_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    a = save_checkpoint(tmp_path / "a", create_model("ave_net", "test_tiny"))
    b = save_checkpoint(tmp_path / "b", create_model("ave_net", "test_tiny"))
    assert checkpoint_hash(a) != checkpoint_hash(b)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "empty")


def test_corrupt_weights(tmp_path: Path) -> None:
    out = save_checkpoint(tmp_path / "c", create_model("ave_net", "test_tiny"))
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(out)
    (out / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(out)


def test_corrupt_or_foreign_config(tmp_path: Path) -> None:
    out = save_checkpoint(tmp_path / "c", create_model("avol_net", "test_tiny"))
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(out)
    (out / "config.json").write_text(json.dumps(dict(cfg, format_version=99)))
    with pytest.raises(CheckpointError, match="format_version"):
        read_config(out)
    (out / "config.json").write_text(json.dumps(dict(cfg, model=dict(cfg["model"], name="no_such_model"))))
    with pytest.raises(CheckpointError, match="no_such_model"):
        load_checkpoint(out)
    # weights of another architecture do not load silently
    (out / "config.json").write_text(json.dumps(dict(cfg, model=dict(cfg["model"], embed_dim=32))))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(out)


def test_save_requires_a_registered_model(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="model_config"):
        save_checkpoint(tmp_path / "x", torch.nn.Linear(2, 2))
