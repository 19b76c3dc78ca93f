"""AVOL-Net: heatmap on the grid, score = max of the heatmap, unit cell embeddings, trainable calibration."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from avlearn.media.features import AudioFeatureConfig
from avlearn.models import create_model, list_models


def _inputs(model: torch.nn.Module, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = model.preprocessing["image_size_px"]
    shape = AudioFeatureConfig.from_dict(model.preprocessing["audio"]).shape
    return torch.randn(batch, 3, h, w), torch.randn(batch, *shape)


def test_registered_with_presets() -> None:
    assert set(list_models()["avol_net"]) >= {"test_tiny", "small", "paper"}


@pytest.mark.parametrize(("preset", "grid"), [("test_tiny", (4, 4)), ("small", (8, 8))])
def test_heatmap_is_the_grid_and_score_its_max(preset: str, grid: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = create_model("avol_net", preset).eval()
    assert model.grid_size == grid
    x, s = _inputs(model, 3)
    with torch.no_grad():
        out = model(x, s)
        cells = model.cell_embeddings(x)
        audio = model.embed_audio(s)
    assert out["heatmap"].shape == (3, *grid) and out["logit"].shape == out["score"].shape == (3,)
    assert cells.shape == (3, model.embed_dim, *grid)
    torch.testing.assert_close(cells.norm(dim=1), torch.ones(3, *grid))
    torch.testing.assert_close(audio.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(out["score"], out["heatmap"].amax(dim=(1, 2)))
    torch.testing.assert_close(out["score"], torch.sigmoid(out["logit"]))
    # the heatmap is the calibrated per-cell cosine similarity
    expected = torch.sigmoid(model.scale * torch.einsum("bdhw,bd->bhw", cells, audio) + model.bias)
    torch.testing.assert_close(out["heatmap"], expected)
    emb = model.embed_image(x)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))


def test_paper_preset_has_a_14x14_grid() -> None:
    model = create_model("avol_net", "paper").eval()
    assert model.grid_size == (14, 14)
    x, s = _inputs(model, 1)
    with torch.no_grad():
        out = model(x, s)
    assert out["heatmap"].shape == (1, 14, 14) and model.embed_dim == 128


def test_mil_loss_trains_calibration_and_towers() -> None:
    torch.manual_seed(0)
    model = create_model("avol_net", "test_tiny")
    x, s = _inputs(model, 4)
    s = s[torch.tensor([0, 1, 2, 3, 1, 2, 3, 0])]
    x = x[torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])]
    labels = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = F.binary_cross_entropy_with_logits(model(x, s)["logit"], labels)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.scale.grad is not None and model.bias.grad is not None
    assert model.vision.body[0][0].weight.grad.abs().sum() > 0
    assert losses[-1] < 0.5 * losses[0], losses
