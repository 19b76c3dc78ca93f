"""Embedder: checkpoints → batched embeddings, correspondence and heatmaps, with clear input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avlearn.checkpoint import CheckpointError, checkpoint_hash, save_checkpoint
from avlearn.embed import Embedder, NoLocalizerError, peak
from avlearn.embed.preprocess import Preprocessor
from avlearn.media import read_segments
from avlearn.models import create_model
from avlearn.models._towers import TINY_AUDIO


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    return {
        "ave": save_checkpoint(root / "ave", create_model("ave_net", "test_tiny")),
        "avol": save_checkpoint(root / "avol", create_model("avol_net", "test_tiny")),
        # a localizer trained at another sample rate and image size than the AVE-Net
        "avol8k": save_checkpoint(
            root / "avol8k", create_model("avol_net", "test_tiny", image_size_px=[48, 48], audio=dict(TINY_AUDIO.to_dict(), sample_rate_hz=8000))
        ),
    }


@pytest.fixture(scope="module")
def media() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 45, 77, 3), dtype=np.uint8)
    waves = (0.1 * rng.standard_normal((5, 11000))).astype(np.float32)  # shorter than 1 s at 16 kHz
    return frames, waves


def test_properties(ckpts: dict[str, Path]) -> None:
    e = Embedder.from_checkpoint(ckpts["ave"], device="auto")
    assert e.dim == 16 and e.image_size_px == (32, 32) and e.sample_rate_hz == 16000 and e.segment_sec == 1.0
    assert e.checkpoint_hash == checkpoint_hash(ckpts["ave"])
    assert not e.has_localizer and e.grid_size is None
    assert e.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert Embedder.from_checkpoint(ckpts["avol"], device="cpu").has_localizer
    assert Embedder.from_checkpoint(ckpts["ave"], localizer=ckpts["avol"], device="cpu").has_localizer


def test_embeddings_match_the_model_and_are_unit(ckpts: dict[str, Path], media) -> None:
    frames, waves = media
    e = Embedder.from_checkpoint(ckpts["ave"], device="cpu", batch_size=2)  # forces 3 batches
    img, aud = e.embed_images(frames), e.embed_audio(waves)
    assert img.shape == aud.shape == (5, 16) and img.dtype == aud.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(aud, axis=1), 1.0, atol=1e-5)
    pre = Preprocessor.from_config(e.model.preprocessing)
    with torch.no_grad():
        np.testing.assert_allclose(img, e.model.embed_image(pre.images(frames)).numpy(), atol=1e-5)
        np.testing.assert_allclose(aud, e.model.embed_audio(pre.audio(waves)).numpy(), atol=1e-5)
    # torch input and a list of differently sized frames give the same vectors
    np.testing.assert_allclose(e.embed_images(torch.from_numpy(frames)), img, atol=1e-6)
    np.testing.assert_allclose(e.embed_images([f for f in frames]), img, atol=1e-6)


def test_waves_of_any_length(ckpts: dict[str, Path]) -> None:
    e = Embedder.from_checkpoint(ckpts["ave"], device="cpu")
    rng = np.random.default_rng(1)
    long = (0.1 * rng.standard_normal((2, 40000))).astype(np.float32)
    np.testing.assert_allclose(e.embed_audio(long), e.embed_audio(long[:, :16000]), atol=1e-6)
    short = long[:, :500]
    padded = np.concatenate([short, np.zeros((2, 15500), np.float32)], axis=1)
    np.testing.assert_allclose(e.embed_audio(short), e.embed_audio(padded), atol=1e-6)


def test_correspondence_is_the_model_probability(ckpts: dict[str, Path], media) -> None:
    frames, waves = media
    for key in ("ave", "avol"):
        e = Embedder.from_checkpoint(ckpts[key], device="cpu")
        p = e.correspondence(frames, waves)
        assert p.shape == (5,) and p.dtype == np.float32 and ((p >= 0) & (p <= 1)).all()
        pre = e.preprocessor
        with torch.no_grad():
            out = e.model(pre.images(frames), pre.audio(waves))
        expected = torch.softmax(out["logits"], 1)[:, 1] if key == "ave" else out["score"]
        np.testing.assert_allclose(p, expected.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="batch size"):
        e.correspondence(frames, waves[:3])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda e: e.embed_images(np.zeros((32, 32, 3), np.uint8)), r"\(N, H, W, 3\)"),
        (lambda e: e.embed_images(np.zeros((2, 32, 32, 1), np.uint8)), r"\(N, H, W, 3\)"),
        (lambda e: e.embed_images(np.zeros((2, 32, 32, 3), np.float64)), "uint8"),
        (lambda e: e.embed_images(np.zeros((0, 32, 32, 3), np.uint8)), "empty"),
        (lambda e: e.embed_audio(np.zeros(16000, np.float32)), r"\(N, n\)"),
        (lambda e: e.embed_audio(np.zeros((0, 16000), np.float32)), "empty"),
        (lambda e: e.embed_audio(np.zeros((2, 16000), np.int32)), "float"),
        (lambda e: e.localize(np.zeros((2, 32, 32, 3), np.uint8), np.zeros(16000, np.float32)), "one uint8"),
        (lambda e: e.localize(np.zeros((32, 32, 3), np.uint8), np.zeros((1, 16000), np.float32)), "one mono"),
    ],
)
def test_bad_inputs_raise_value_error(ckpts: dict[str, Path], call, match: str) -> None:
    e = Embedder.from_checkpoint(ckpts["avol"], device="cpu")
    with pytest.raises(ValueError, match=match):
        call(e)


def test_localize_with_main_avol(ckpts: dict[str, Path], media) -> None:
    frames, waves = media
    e = Embedder.from_checkpoint(ckpts["avol"], device="cpu")
    hm = e.localize(frames[0], waves[0])
    assert hm.grid.shape == e.grid_size == (4, 4) and hm.grid.dtype == np.float32
    assert ((hm.grid >= 0) & (hm.grid <= 1)).all()
    assert hm.score == pytest.approx(float(hm.grid.max()), abs=1e-6)
    assert hm.peak_yx == peak(hm.grid)
    iy, ix = int(hm.peak_yx[0] * 4), int(hm.peak_yx[1] * 4)
    assert hm.grid[iy, ix] == hm.grid.max()
    with torch.no_grad():
        out = e.model(e.preprocessor.images(frames[:1]), e.preprocessor.audio(waves[:1]))
    np.testing.assert_allclose(hm.grid, out["heatmap"][0].numpy(), atol=1e-6)
    # the batch call agrees with single calls and with correspondence()
    batch = e.localize_batch(frames, waves)
    np.testing.assert_allclose(batch[0].grid, hm.grid, atol=1e-6)
    np.testing.assert_allclose([h.score for h in batch], e.correspondence(frames, waves), atol=1e-6)


def test_localize_needs_an_avol_net(ckpts: dict[str, Path], media) -> None:
    frames, waves = media
    e = Embedder.from_checkpoint(ckpts["ave"], device="cpu")
    with pytest.raises(NoLocalizerError, match="AVOL-Net"):
        e.localize(frames[0], waves[0])
    with pytest.raises(NoLocalizerError, match="AVOL-Net"):
        Embedder.from_checkpoint(ckpts["ave"], localizer=ckpts["ave"], device="cpu")


def test_separate_localizer_with_its_own_preprocessing(ckpts: dict[str, Path], media) -> None:
    import torchaudio

    frames, waves = media
    e = Embedder.from_checkpoint(ckpts["ave"], localizer=ckpts["avol8k"], device="cpu")
    assert e.sample_rate_hz == 16000 and e.grid_size == (6, 6)
    assert e.localizer_hash == checkpoint_hash(ckpts["avol8k"])
    hm = e.localize(frames[1], waves[1])
    assert hm.grid.shape == (6, 6)
    # the wave is resampled 16 kHz → 8 kHz for the localizer and the frame resized to its 48 px
    pre = e.localizer_preprocessor
    fitted = torch.nn.functional.pad(torch.from_numpy(waves[1:2]), (0, 16000 - waves.shape[1]))
    wave8k = torchaudio.functional.resample(fitted, 16000, 8000)
    with torch.no_grad():
        out = e.localizer(pre.images(frames[1:2]), pre.audio(wave8k))
    np.testing.assert_allclose(hm.grid, out["heatmap"][0].numpy(), atol=1e-5)
    # retrieval still comes from the AVE-Net
    assert e.embed_images(frames).shape == (5, 16)


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        Embedder.from_checkpoint(tmp_path / "missing")


def test_real_video_segments(ckpts: dict[str, Path], tone_video: Path) -> None:
    """Frames and audio decoded from a real H.264+AAC file go through the whole path."""
    e = Embedder.from_checkpoint(ckpts["avol"], device="cpu")
    segments = read_segments(tone_video, size_px=None, sample_rate_hz=e.sample_rate_hz, segment_sec=1.0, hop_sec=1.0)
    assert len(segments) >= 2
    frames = np.stack([s.frame for s in segments])
    waves = np.stack([s.audio[: e.preprocessor.num_samples] for s in segments])
    img, aud = e.embed_images(frames), e.embed_audio(waves)
    assert img.shape == aud.shape == (len(segments), e.dim)
    assert np.isfinite(img).all() and np.isfinite(aud).all()
    # different frames (pixel values differ per frame) → different image embeddings
    assert not np.allclose(img[0], img[1])
    hm = e.localize(segments[0].frame, segments[0].audio)
    assert hm.grid.shape == e.grid_size


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(ckpts: dict[str, Path], media) -> None:
    frames, waves = media
    cpu = Embedder.from_checkpoint(ckpts["avol"], device="cpu")
    gpu = Embedder.from_checkpoint(ckpts["avol"], device="cuda")
    # TF32 convolutions (PyTorch's CUDA default) and the float resize path on the GPU: ~1e-2 apart
    for g, c in [(gpu.embed_images(frames), cpu.embed_images(frames)), (gpu.embed_audio(waves), cpu.embed_audio(waves))]:
        np.testing.assert_allclose(g, c, atol=2e-2)
        assert (g * c).sum(axis=1).min() > 0.999  # cosine similarity
    np.testing.assert_allclose(gpu.localize(frames[0], waves[0]).grid, cpu.localize(frames[0], waves[0]).grid, atol=2e-2)
    amp = Embedder.from_checkpoint(ckpts["avol"], device="cuda", amp=True)
    np.testing.assert_allclose(np.linalg.norm(amp.embed_images(frames), axis=1), 1.0, atol=1e-2)


def test_image_only_trunk_embeds_frames_and_refuses_audio():
    """Shuffle-and-Learn's trunk serves image vectors (an image→image index); audio calls fail clearly."""
    from avlearn.models import create_model

    emb = Embedder(create_model("shuffle_learn", "test_tiny"), device="cpu")
    assert not emb.has_audio
    vecs = emb.embed_images(np.random.default_rng(0).integers(0, 255, (3, 40, 50, 3), dtype=np.uint8))
    assert vecs.shape == (3, emb.dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    with pytest.raises(TypeError, match="images only"):
        emb.embed_audio(np.zeros((1, 16000), np.float32))
