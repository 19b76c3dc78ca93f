"""Embedder: a checkpoint → batched media-to-vector / heatmap inference, the single path used by
the indexer, the service, eval and the demo.

Retrieval embeddings come from the main checkpoint. With AVE-Net, images and audio use its two
embedding towers. With AVOL-Net as the main checkpoint, the audio embedding is its audio tower
and the image embedding is the max over cells of its per-cell embeddings, L2-normalised (the
cell space is aligned with the audio space, so cross-modal retrieval still works, although
AVE-Net is the model trained for it). Localization needs an AVOL-Net: the ``localizer``
checkpoint, else the main one if it is AVOL-Net.

Waveforms are always given at ``Embedder.sample_rate_hz`` (the main model's rate); when a
separate localizer was trained at another rate, ``localize`` resamples for it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch

from avlearn.checkpoint import checkpoint_hash as _checkpoint_hash
from avlearn.checkpoint import load_checkpoint
from avlearn.device import resolve_device
from avlearn.embed.heatmap import Heatmap, peak
from avlearn.embed.preprocess import ArrayLike, Preprocessor


class NoLocalizerError(RuntimeError):
    """``localize`` was called but neither the main nor a ``localizer`` checkpoint is an AVOL-Net."""


def _is_localizer(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "cell_embeddings", None))


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


class Embedder:
    """Batched inference for an AVE-Net / AVOL-Net (and an optional AVOL-Net localizer).

    Build with ``Embedder.from_checkpoint(path, localizer=..., device="auto")``, or directly from
    in-memory models (``Embedder(model, localizer=...)``, e.g. in eval during training; the
    models are moved to ``device`` and put in eval mode, so call ``model.train()`` afterwards).
    Inference runs under ``torch.inference_mode`` in chunks of ``batch_size``; ``amp=True``
    runs it in float16 autocast on CUDA (faster; vectors then differ from CPU ones by up to
    ~5e-2 per component, so the default is off). Even in float32, CUDA vectors differ from CPU
    ones by up to ~1e-2 (TF32 convolutions, PyTorch's default; cosine > 0.999). Safe to call
    from several threads.

    Attributes:
        dim: D of the retrieval embeddings.
        image_size_px: (H, W) the main model sees (frames of any size are resized to it).
        sample_rate_hz, segment_sec: the audio the main model expects.
        checkpoint_hash: sha256 of the main checkpoint's weights ("" for in-memory models).
        has_localizer: whether ``localize`` works.
        device: where inference runs.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        localizer: torch.nn.Module | None = None,
        device: str | torch.device = "auto",
        checkpoint_hash: str = "",
        localizer_hash: str = "",
        batch_size: int = 64,
        amp: bool = False,
    ) -> None:
        if not callable(getattr(model, "embed_image", None)):
            raise TypeError(f"{type(model).__name__} has no embed_image: it cannot embed frames")
        if localizer is not None and not _is_localizer(localizer):
            raise NoLocalizerError(f"the localizer must be an AVOL-Net, got {getattr(localizer, 'model_config', {}).get('name', type(localizer).__name__)!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.preprocessor = Preprocessor.from_config(model.preprocessing).to(self.device)
        if localizer is None and _is_localizer(model):
            localizer, localizer_hash = model, checkpoint_hash
        self.localizer = localizer.to(self.device).eval() if localizer is not None else None
        self.localizer_preprocessor = Preprocessor.from_config(self.localizer.preprocessing).to(self.device) if self.localizer is not None else None
        self.checkpoint_hash = checkpoint_hash
        self.localizer_hash = localizer_hash
        self.batch_size = int(batch_size)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.model_name = str(getattr(model, "model_config", {}).get("name", type(model).__name__))

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        localizer: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        batch_size: int = 64,
        amp: bool = False,
    ) -> Embedder:
        """Load the main checkpoint (AVE-Net or AVOL-Net) and optionally an AVOL-Net ``localizer``.

        Raises:
            CheckpointError: a checkpoint is missing or corrupt.
            NoLocalizerError: ``localizer`` is not an AVOL-Net checkpoint.
        """
        model, _ = load_checkpoint(path)
        loc_model, loc_hash = None, ""
        if localizer is not None:
            loc_model, _ = load_checkpoint(localizer)
            loc_hash = _checkpoint_hash(localizer)
        return cls(model, localizer=loc_model, device=device, checkpoint_hash=_checkpoint_hash(path), localizer_hash=loc_hash, batch_size=batch_size, amp=amp)

    # -------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        return int(self.model.embed_dim)

    @property
    def image_size_px(self) -> tuple[int, int]:
        return self.preprocessor.image_size_px

    @property
    def sample_rate_hz(self) -> int:
        return self.preprocessor.sample_rate_hz

    @property
    def segment_sec(self) -> float:
        return self.preprocessor.segment_sec

    @property
    def has_localizer(self) -> bool:
        return self.localizer is not None

    @property
    def grid_size(self) -> tuple[int, int] | None:
        """(h, w) of localization heatmaps, or None without a localizer."""
        return tuple(self.localizer.grid_size) if self.localizer is not None else None

    # ---------------------------------------------------------------- helpers
    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()

    def _batches(self, n: int) -> range:
        return range(0, n, self.batch_size)

    @staticmethod
    def _count(x: ArrayLike | Sequence[ArrayLike], what: str) -> int:
        if isinstance(x, (list, tuple)):
            n = len(x)
        elif isinstance(x, (np.ndarray, torch.Tensor)):
            n = int(x.shape[0]) if x.ndim > 0 else 0
        else:
            raise ValueError(f"{what}: expected a numpy array, torch tensor or list, got {type(x).__name__}")
        if n == 0:
            raise ValueError(f"{what}: empty batch")
        return n

    # -------------------------------------------------------------- retrieval
    def embed_images(self, frames: ArrayLike | Sequence[ArrayLike]) -> np.ndarray:
        """uint8 RGB frames (N, H, W, 3) of any size (or a list of (H_i, W_i, 3)) → (N, D) float32 L2-normalised.

        Raises:
            ValueError: wrong rank/channels/dtype or an empty batch.
        """
        n = self._count(frames, "frames")
        out = []
        with torch.inference_mode(), self._autocast():
            for i in self._batches(n):
                x = self.preprocessor.images(frames[i : i + self.batch_size])
                out.append(_to_numpy(self.model.embed_image(x)))
        return np.concatenate(out).astype(np.float32, copy=False)

    @property
    def has_audio(self) -> bool:
        """Whether the model embeds audio (AVE-/AVOL-Net); image-only trunks (Shuffle&Learn, O3N) do not."""
        return callable(getattr(self.model, "embed_audio", None))

    def _require_audio(self) -> None:
        if not self.has_audio:
            raise TypeError(f"{self.model_name} embeds images only: it has no audio tower")

    def embed_audio(self, waves: ArrayLike | Sequence[ArrayLike]) -> np.ndarray:
        """Float waveforms (N, n) at ``sample_rate_hz`` (cropped/padded to ``segment_sec``) → (N, D) float32 L2-normalised.

        Raises:
            ValueError: wrong rank/dtype, non-finite samples or an empty batch.
        """
        self._require_audio()
        n = self._count(waves, "waves")
        out = []
        with torch.inference_mode(), self._autocast():
            for i in self._batches(n):
                s = self.preprocessor.audio(waves[i : i + self.batch_size])
                out.append(_to_numpy(self.model.embed_audio(s)))
        return np.concatenate(out).astype(np.float32, copy=False)

    def correspondence(self, frames: ArrayLike | Sequence[ArrayLike], waves: ArrayLike | Sequence[ArrayLike]) -> np.ndarray:
        """Probability (N,) float32 that frame i and sound i come from the same moment of a video.

        AVE-Net: softmax of its classifier (class 1); AVOL-Net: its max-over-cells score.
        """
        self._require_audio()
        n = self._count(frames, "frames")
        if self._count(waves, "waves") != n:
            raise ValueError(f"frames and waves differ in batch size: {n} vs {self._count(waves, 'waves')}")
        out = []
        with torch.inference_mode(), self._autocast():
            for i in self._batches(n):
                x = self.preprocessor.images(frames[i : i + self.batch_size])
                s = self.preprocessor.audio(waves[i : i + self.batch_size])
                res = self.model(x, s)
                prob = torch.softmax(res["logits"].float(), dim=1)[:, 1] if "logits" in res else res["score"]
                out.append(_to_numpy(prob))
        return np.concatenate(out).astype(np.float32, copy=False)

    # ----------------------------------------------------------- localization
    def _localizer_waves(self, waves: ArrayLike | Sequence[ArrayLike]) -> torch.Tensor:
        """Waves at ``sample_rate_hz`` → (N, n') at the localizer's rate, fitted to its segment length."""
        w = self.preprocessor.fit_waves(waves)
        src, dst = self.sample_rate_hz, self.localizer_preprocessor.sample_rate_hz
        if src != dst:
            import torchaudio

            w = torchaudio.functional.resample(w, src, dst)
        return self.localizer_preprocessor.fit_waves(w)

    def localize_batch(self, frames: ArrayLike | Sequence[ArrayLike], waves: ArrayLike | Sequence[ArrayLike]) -> list[Heatmap]:
        """Heatmaps for N (frame, sound) pairs: frames uint8 (N, H, W, 3), waves (N, n) at ``sample_rate_hz``.

        Raises:
            NoLocalizerError: no AVOL-Net loaded.
            ValueError: bad shapes or mismatched batch sizes.
        """
        if self.localizer is None:
            raise NoLocalizerError(f"localization needs an AVOL-Net checkpoint; the main model is {self.model_name!r} and no localizer= was given")
        n = self._count(frames, "frames")
        if self._count(waves, "waves") != n:
            raise ValueError(f"frames and waves differ in batch size: {n} vs {self._count(waves, 'waves')}")
        out: list[Heatmap] = []
        pre = self.localizer_preprocessor
        with torch.inference_mode(), self._autocast():
            for i in self._batches(n):
                x = pre.images(frames[i : i + self.batch_size])
                s = pre._features(self._localizer_waves(waves[i : i + self.batch_size]))
                res = self.localizer(x, s)
                for grid, score in zip(_to_numpy(res["heatmap"]), _to_numpy(res["score"])):
                    out.append(Heatmap(grid=grid.astype(np.float32), score=float(score), peak_yx=peak(grid)))
        return out

    def localize(self, frame: ArrayLike, wave: ArrayLike) -> Heatmap:
        """Where in ``frame`` (H, W, 3) uint8 the sound ``wave`` (n,) float32 at ``sample_rate_hz`` comes from.

        Raises:
            NoLocalizerError: no AVOL-Net loaded.
            ValueError: frame not (H, W, 3) uint8, wave not 1-D float.
        """
        if np.ndim(frame) != 3:
            raise ValueError(f"frame: expected one uint8 RGB frame (H, W, 3), got shape {tuple(np.shape(frame))}")
        if np.ndim(wave) != 1:
            raise ValueError(f"wave: expected one mono waveform (n,), got shape {tuple(np.shape(wave))}")
        return self.localize_batch(frame[None], wave[None])[0]

    def __repr__(self) -> str:
        return (
            f"Embedder(model={self.model_name!r}, dim={self.dim}, image_size_px={self.image_size_px}, "
            f"sample_rate_hz={self.sample_rate_hz}, localizer={self.has_localizer}, device={self.device})"
        )
