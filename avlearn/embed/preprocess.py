"""The one place where uint8 frames and float waveforms become model inputs.

``Preprocessor.from_config(model.preprocessing)`` gives the transform a model was trained
with; the trainer's datasets, the Embedder and the eval tasks all use it, so sizes,
normalisation and audio features are defined once.

- Frames: uint8 RGB (N, H, W, 3) of any size → resized to the model's (H', W') by
  ``avlearn.media.resize_frames``, the decoder's own rule (swscale area averaging), so a query
  image and an indexed frame of the same picture become the same input (the whole frame,
  aspect ratio not kept, so a heatmap cell maps back onto the same region of the original
  frame) → float32 (N, 3, H', W'), normalised with the model's mean/std. Frames already on a
  GPU are resized there (antialiased bilinear).
- Audio: float waveforms (N, n) at ``sample_rate_hz`` → cropped (first ``num_samples``) or
  zero-padded to ``segment_sec`` → log-spectrogram / log-mel (N, 1, F, T).

Works on numpy arrays or torch tensors, on CPU in DataLoader workers (picklable) or on a
device after ``.to(device)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from avlearn.media.features import AudioFeatureConfig, LogAudioFeatures
from avlearn.media.video import resize_frames

ArrayLike = np.ndarray | torch.Tensor


def _as_tensor(x: ArrayLike | Sequence, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        x = np.ascontiguousarray(x)
        return torch.from_numpy(x if x.flags.writeable else x.copy())  # read-only buffers (np.frombuffer) are copied
    raise ValueError(f"{what}: expected a numpy array or torch tensor, got {type(x).__name__}")


def _as_batch(x: ArrayLike, item_rank: int, what: str) -> torch.Tensor:
    """A tensor with a batch axis added when ``x`` is a single item of rank ``item_rank``."""
    t = _as_tensor(x, what)
    return t[None] if t.dim() == item_rank else t


class Preprocessor:
    """Frames and waveforms → model inputs, per a model's ``preprocessing`` dict.

    Attributes:
        image_size_px: (H, W) the vision tower expects.
        sample_rate_hz: rate the waveforms must have.
        segment_sec: audio length the model sees; ``num_samples`` in samples.
        audio_config: the AudioFeatureConfig; ``spectrogram_shape`` = its (1, F, T).
    """

    def __init__(self, image_size_px: Sequence[int], image_mean: Sequence[float], image_std: Sequence[float], audio: AudioFeatureConfig) -> None:
        if len(image_size_px) != 2 or min(image_size_px) < 1:
            raise ValueError(f"image_size_px must be (H, W) > 0, got {image_size_px}")
        self.image_size_px = (int(image_size_px[0]), int(image_size_px[1]))
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.audio_config = audio
        self.device = torch.device("cpu")
        self._features = LogAudioFeatures(audio)
        # x_uint8 * scale + shift == (x / 255 − mean) / std
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in self.image_std]).view(1, 3, 1, 1)
        self._shift = torch.tensor([-m / s for m, s in zip(self.image_mean, self.image_std)]).view(1, 3, 1, 1)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Preprocessor:
        """From ``model.preprocessing`` (or the "preprocessing" entry of a checkpoint's config.json)."""
        try:
            return cls(config["image_size_px"], config["image_mean"], config["image_std"], AudioFeatureConfig.from_dict(dict(config["audio"])))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad preprocessing config {config!r}: {exc}") from exc

    @property
    def sample_rate_hz(self) -> int:
        return self.audio_config.sample_rate_hz

    @property
    def segment_sec(self) -> float:
        return self.audio_config.duration_sec

    @property
    def num_samples(self) -> int:
        return self.audio_config.num_samples

    @property
    def spectrogram_shape(self) -> tuple[int, int, int]:
        return self.audio_config.shape

    def to(self, device: str | torch.device) -> Preprocessor:
        """Run the transforms on ``device`` (inputs are moved there); returns self."""
        self.device = torch.device(device)
        self._features.to(self.device)
        self._scale, self._shift = self._scale.to(self.device), self._shift.to(self.device)
        return self

    # ---------------------------------------------------------------- frames
    def images(self, frames: ArrayLike | Sequence[ArrayLike]) -> torch.Tensor:
        """uint8 RGB (N, H, W, 3) of any size, or a list of (H_i, W_i, 3) → float32 (N, 3, H', W') normalised.

        Raises:
            ValueError: wrong rank, channel count, dtype, or an empty batch.
        """
        if isinstance(frames, (list, tuple)):  # frames of different sizes: one at a time
            if not frames:
                raise ValueError("frames: empty batch")
            return torch.cat([self.images(_as_batch(f, 3, "frames")) for f in frames])
        x = _as_tensor(frames, "frames")
        if x.dim() == 4 and x.dtype == torch.uint8 and x.device.type == "cpu" and tuple(x.shape[1:3]) != self.image_size_px and x.shape[-1] == 3 and x.numel():
            x = torch.from_numpy(resize_frames(x.numpy(), self.image_size_px))
        if x.dim() != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames: expected uint8 RGB (N, H, W, 3), got shape {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            raise ValueError(f"frames: expected dtype uint8, got {x.dtype}")
        if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
            raise ValueError(f"frames: empty batch or frame, shape {tuple(x.shape)}")
        x = x.to(self.device).permute(0, 3, 1, 2)
        if tuple(x.shape[-2:]) != self.image_size_px:
            x = self._resize(x)
        return x.float() * self._scale + self._shift

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) on a GPU → uint8 (N, 3, H', W'), antialiased bilinear."""
        y = F.interpolate(x.float(), size=self.image_size_px, mode="bilinear", antialias=True, align_corners=False)
        return y.round_().clamp_(0, 255).to(torch.uint8)

    def image(self, frame: ArrayLike) -> torch.Tensor:
        """One uint8 (H, W, 3) frame → (3, H', W')."""
        return self.images(_as_batch(frame, 3, "frame"))[0]

    # ----------------------------------------------------------------- audio
    def fit_waves(self, waves: ArrayLike | Sequence[ArrayLike]) -> torch.Tensor:
        """Float waveforms (N, n) or a list of (n_i,) → float32 (N, num_samples): first samples kept, zero-padded.

        Raises:
            ValueError: wrong rank or dtype, an empty batch, or non-finite samples.
        """
        if isinstance(waves, (list, tuple)):
            if not waves:
                raise ValueError("waves: empty batch")
            return torch.cat([self.fit_waves(_as_batch(w, 1, "waves")) for w in waves])
        w = _as_tensor(waves, "waves")
        if w.dim() != 2:
            raise ValueError(f"waves: expected mono float waveforms (N, n), got shape {tuple(w.shape)}")
        if not w.is_floating_point():
            raise ValueError(f"waves: expected float samples in [-1, 1], got dtype {w.dtype}")
        if w.shape[0] == 0 or w.shape[1] == 0:
            raise ValueError(f"waves: empty batch or waveform, shape {tuple(w.shape)}")
        w = w.to(self.device, torch.float32)
        if not bool(torch.isfinite(w).all()):
            raise ValueError("waves: non-finite samples (NaN/inf)")
        n = self.num_samples
        return w[:, :n] if w.shape[1] >= n else F.pad(w, (0, n - w.shape[1]))

    def audio(self, waves: ArrayLike | Sequence[ArrayLike]) -> torch.Tensor:
        """Float waveforms (N, n) at ``sample_rate_hz`` → log features (N, 1, F, T)."""
        with torch.no_grad():
            return self._features(self.fit_waves(waves))

    def spectrogram(self, wave: ArrayLike) -> torch.Tensor:
        """One (n,) waveform → (1, F, T)."""
        return self.audio(_as_batch(wave, 1, "wave"))[0]

    def __repr__(self) -> str:
        return f"Preprocessor(image_size_px={self.image_size_px}, audio={self.audio_config})"
