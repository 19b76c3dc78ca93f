"""AVE-Net: shapes per preset, L2-normalised embeddings, logits as a function of the distance, overfitting."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from avlearn.media.features import AudioFeatureConfig
from avlearn.models import create_model, list_models
from avlearn.models.ave_net import AVENet


def _inputs(model: AVENet, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = model.preprocessing["image_size_px"]
    shape = AudioFeatureConfig.from_dict(model.preprocessing["audio"]).shape
    return torch.randn(batch, 3, h, w), torch.randn(batch, *shape)


def test_registered_with_presets() -> None:
    assert set(list_models()["ave_net"]) >= {"test_tiny", "small", "paper"}


@pytest.mark.parametrize("preset", ["test_tiny", "small"])
def test_forward_shapes_and_unit_embeddings(preset: str) -> None:
    torch.manual_seed(0)
    model = create_model("ave_net", preset)
    x, s = _inputs(model, 3)
    out = model(x, s)
    assert out["logits"].shape == (3, 2) and out["distance"].shape == (3,)
    v, a = model.embed_image(x), model.embed_audio(s)
    assert v.shape == a.shape == (3, model.embed_dim)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    assert model.model_config["name"] == "ave_net" and model.model_config["preset"] == preset


def test_paper_preset_forward() -> None:
    model = create_model("ave_net", "paper").eval()
    assert model.preprocessing["image_size_px"] == [224, 224]
    assert model.model_config["vision_channels"] == [64, 128, 256, 512]
    x, s = _inputs(model, 1)
    assert s.shape == (1, 1, 257, 200)
    with torch.no_grad():
        out = model(x, s)
    assert out["logits"].shape == (1, 2) and model.embed_dim == 128


def test_logits_are_a_function_of_the_distance() -> None:
    torch.manual_seed(0)
    model = create_model("ave_net", "test_tiny").eval()
    x, s = _inputs(model, 4)
    with torch.no_grad():
        out = model(x, s)
        d = (model.embed_image(x) - model.embed_audio(s)).norm(dim=1)
        torch.testing.assert_close(out["distance"], d)
        torch.testing.assert_close(out["logits"], model.classifier(d[:, None]))
        # at initialisation "corresponds" wins exactly when the distance is below 1
        margin = model.classify(torch.tensor([0.0, 0.5, 1.5, 2.0]))
        assert (margin[:, 1] > margin[:, 0]).tolist() == [True, True, False, False]
        # identical embeddings → distance ~0 → "corresponds"
        same = model.classify(torch.zeros(1))
        assert same[0, 1] > same[0, 0]


def test_overrides_are_recorded_and_validated() -> None:
    model = create_model("ave_net", "test_tiny", embed_dim=24, image_size_px=(48, 40))
    assert model.embed_dim == 24 and model.model_config["embed_dim"] == 24
    assert model.preprocessing["image_size_px"] == [48, 40]
    hp = {k: v for k, v in model.model_config.items() if k not in ("name", "preset")}
    rebuilt = create_model("ave_net", "test_tiny", **hp)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="unknown ave_net hyper-parameter"):
        create_model("ave_net", "test_tiny", no_such_option=1)
    with pytest.raises(KeyError):
        create_model("ave_net", "huge")


def test_tiny_model_overfits_fixed_pairs() -> None:
    """Gradients flow through both towers and the classifier: 8 fixed pairs are learned."""
    torch.manual_seed(0)
    model = create_model("ave_net", "test_tiny")
    images, sounds = _inputs(model, 4)
    idx_img = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    idx_snd = torch.tensor([0, 1, 2, 3, 1, 2, 3, 0])
    labels = (idx_img == idx_snd).long()
    x, s = images[idx_img], sounds[idx_snd]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = F.cross_entropy(model(x, s)["logits"], labels)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.vision.body[0][0].weight.grad.abs().sum() > 0
    assert model.audio.body[0][0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        final = float(F.cross_entropy(model(x, s)["logits"], labels))
    assert final < 0.15 < first, (first, final)
