"""Tracking by propagation: carry the first frame's object mask through a video with a pointer.

The colorization model (Vondrick et al., ECCV 2018) learns to copy colours from
reference frames by pointing at similar embeddings; at test time the same pointer
copies *labels*. For each target frame, the references are the first frame (its
given mask) plus the ``refs`` most recent frames (their predicted soft labels). Each
target cell looks only at reference cells within ``radius`` cells of its own position,
keeps the ``topk`` most similar ones over all references, and takes the softmax-
weighted average of their labels (the usual practical settings of CRW / UVC / MAST).

Features come from a trained colorizer (``model.embed``: L channel → (D, h, w)
L2-normalised embeddings, similarity = cosine / temperature) or, as a no-learning
baseline, from raw Lab pixels average-pooled to the same stride (similarity =
−squared distance / temperature).

Shapes: frames (H, W, 3) uint8 RGB; masks (H, W) uint8 object ids (0 = background);
soft labels (C, h, w) with C = 1 + number of objects, at feature resolution.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

FeatureFn = Callable[[np.ndarray], torch.Tensor]


@dataclass
class TrackConfig:
    """Propagation settings.

    Attributes:
        topk: reference cells kept per target cell (over all references).
        radius: local search radius, in feature cells (Euclidean).
        refs: number of previous frames used as references (besides the first frame).
        temperature: softmax temperature; None → the feature extractor's default.
        scale: frames are resized by this factor before feature extraction.
        tile: target tile side (cells) for the blocked local attention.
        device: where the propagation runs ("cpu" | "cuda").
    """

    topk: int = 10
    radius: int = 12
    refs: int = 3
    temperature: float | None = None
    scale: float = 1.0
    tile: int = 8
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Features:
    """A feature extractor: ``fn(frames (N,H,W,3) uint8) -> (N, D, h, w)`` plus its metric."""

    fn: FeatureFn
    metric: str  # "cosine" (L2-normalised, dot product) | "l2" (negative squared distance)
    temperature: float
    name: str
    stride: int = 4  # input pixels per feature cell


# ---------------------------------------------------------------- feature extractors


def lab_features(stride: int = 4, temperature: float = 15.0) -> Features:
    """Raw Lab pixels average-pooled by ``stride`` (no learning): the baseline.

    Similarity is ``-||x - y||² / temperature`` with x, y in Lab units (L 0..100).
    """
    from avlearn.color import uint8_to_lab

    def fn(frames: np.ndarray) -> torch.Tensor:
        lab = uint8_to_lab(torch.from_numpy(np.ascontiguousarray(frames)))
        return F.avg_pool2d(lab, stride, stride, ceil_mode=True)

    return Features(fn, "l2", temperature, f"lab/{stride}", stride)


def model_features(model: torch.nn.Module, *, batch_size: int = 2, device: str | torch.device = "cpu") -> Features:
    """Embeddings of a colorizer: ``model.embed_frames`` (uint8 frames → (N, D, h, w), L2-normalised)."""
    model = model.to(device).eval()

    def fn(frames: np.ndarray) -> torch.Tensor:
        outs = []
        with torch.inference_mode():
            for i in range(0, len(frames), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch_size])).to(device)
                outs.append(model.embed_frames(x).float().cpu())
        return torch.cat(outs)

    cfg = model.model_config
    return Features(fn, "cosine", float(cfg.get("track_temperature", 0.05)), f"model/{cfg.get('name')}/{cfg.get('preset')}", int(cfg.get("stride_px", 4)))


# ---------------------------------------------------------------- label maps


def mask_to_onehot(mask: np.ndarray, object_ids: Sequence[int]) -> torch.Tensor:
    """(H, W) ids → (C, H, W) float one-hot; channel 0 = background, channel i = object_ids[i-1]."""
    m = torch.from_numpy(np.asarray(mask).astype(np.int64))
    chans = [(m == 0)] + [(m == i) for i in object_ids]
    return torch.stack(chans).float()


def downsample_labels(onehot: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) → (C, h, w) soft labels (area average)."""
    out = F.adaptive_avg_pool2d(onehot[None], size_hw)[0]
    return out / out.sum(0, keepdim=True).clamp_min(1e-6)


def soft_to_mask(soft: torch.Tensor, size_hw: tuple[int, int], object_ids: Sequence[int]) -> np.ndarray:
    """(C, h, w) soft labels → (H, W) uint8 ids (bilinear upsampling, then argmax)."""
    up = F.interpolate(soft[None], size=size_hw, mode="bilinear", align_corners=False)[0]
    idx = up.argmax(0).cpu().numpy()
    lut = np.array([0, *object_ids], np.uint8)
    return lut[idx]


# ---------------------------------------------------------------- the pointer


_BIAS_CACHE: dict = {}


def _window_bias(
    ty: tuple[int, int], tx: tuple[int, int], ry: tuple[int, int], rx: tuple[int, int], radius: int, n: int, device: torch.device, cache: dict
) -> torch.Tensor:
    """(P, n * rh * rw) additive mask: 0 where a reference cell lies within ``radius`` of the target cell, -inf elsewhere.

    Depends only on the tile geometry relative to its reference window, so interior tiles share one.
    """
    key = (ty[1] - ty[0], tx[1] - tx[0], ty[0] - ry[0], tx[0] - rx[0], ry[1] - ry[0], rx[1] - rx[0], n, str(device))
    bias = cache.get(key)
    if bias is None:
        gy, gx = torch.meshgrid(torch.arange(ty[0] - ry[0], ty[1] - ry[0]), torch.arange(tx[0] - rx[0], tx[1] - rx[0]), indexing="ij")
        hy, hx = torch.meshgrid(torch.arange(ry[1] - ry[0]), torch.arange(rx[1] - rx[0]), indexing="ij")
        dist2 = (gy.reshape(-1, 1) - hy.reshape(1, -1)) ** 2 + (gx.reshape(-1, 1) - hx.reshape(1, -1)) ** 2
        bias = torch.zeros(dist2.shape, dtype=torch.float32).masked_fill(dist2 > radius * radius, float("-inf"))
        bias = bias.repeat(1, n).to(device)
        cache[key] = bias
    return bias


def propagate_labels(
    target: torch.Tensor,
    refs: torch.Tensor,
    ref_labels: torch.Tensor,
    *,
    topk: int,
    radius: int,
    temperature: float,
    metric: str = "cosine",
    tile: int = 8,
) -> torch.Tensor:
    """One propagation step: labels of the target frame from reference frames.

    Blocked local attention: target cells are processed in ``tile`` x ``tile`` blocks
    against the reference window around the block (one matmul), with cells outside each
    target's radius masked out; then top-k and a softmax over the kept scores.

    Args:
        target: (D, h, w) target features.
        refs: (N, D, h, w) reference features.
        ref_labels: (N, C, h, w) reference soft labels.
        topk: reference cells kept per target cell (over all N references in its window).
        radius: window radius in cells (Euclidean disk).
        temperature: softmax temperature.
        metric: "cosine" (features already L2-normalised: score = x·y) or "l2" (score = -|x-y|²).

    Returns:
        (C, h, w) soft labels (each cell sums to 1), on ``target``'s device.
    """
    if metric not in ("cosine", "l2"):
        raise ValueError(f"unknown metric {metric!r}")
    d, h, w = target.shape
    n, c = refs.shape[0], ref_labels.shape[1]
    if refs.shape[1:] != target.shape or ref_labels.shape[2:] != (h, w):
        raise ValueError(f"shape mismatch: target {tuple(target.shape)}, refs {tuple(refs.shape)}, labels {tuple(ref_labels.shape)}")
    r = int(radius)
    out = torch.empty(c, h, w, device=target.device)
    ref_sq = (refs * refs).sum(1) if metric == "l2" else None  # (N, h, w)
    cache = _BIAS_CACHE
    if len(cache) > 512:
        cache.clear()
    for y0 in range(0, h, tile):
        y1 = min(h, y0 + tile)
        ry0, ry1 = max(0, y0 - r), min(h, y1 + r)
        for x0 in range(0, w, tile):
            x1 = min(w, x0 + tile)
            rx0, rx1 = max(0, x0 - r), min(w, x1 + r)
            t = target[:, y0:y1, x0:x1].reshape(d, -1).T  # (P, D)
            rf = refs[:, :, ry0:ry1, rx0:rx1].permute(1, 0, 2, 3).reshape(d, -1)  # (D, M), M = n * rh * rw
            rl = ref_labels[:, :, ry0:ry1, rx0:rx1].permute(0, 2, 3, 1).reshape(-1, c)  # (M, C)
            bias = _window_bias((y0, y1), (x0, x1), (ry0, ry1), (rx0, rx1), r, n, target.device, cache)
            if ref_sq is None:
                score = torch.addmm(bias, t, rf)
            else:  # -|x - y|^2 up to the per-target constant |x|^2 (softmax and top-k ignore it)
                score = torch.addmm(bias - ref_sq[:, ry0:ry1, rx0:rx1].reshape(1, -1), t, rf, alpha=2.0)
            k = min(topk, score.shape[1])
            val, idx = score.topk(k, dim=1)
            wgt = torch.softmax(val / temperature, dim=1)  # (P, k); a cell's own position is always in its window
            lab = (wgt.unsqueeze(-1) * rl[idx]).sum(1)  # (P, C)
            out[:, y0:y1, x0:x1] = lab.T.reshape(c, y1 - y0, x1 - x0)
    return out


def propagate_masks(frames: Iterable[np.ndarray], first_mask: np.ndarray, features: Features, config: TrackConfig | None = None) -> Iterator[np.ndarray]:
    """Propagate ``first_mask`` through ``frames``; yields one (H, W) uint8 id map per frame (the first is the given mask).

    Args:
        frames: (H, W, 3) uint8 RGB frames, the first one annotated by ``first_mask``.
        first_mask: (H, W) object ids (0 = background), any number of objects.
        features: a feature extractor (:func:`model_features` or :func:`lab_features`).
    """
    cfg = config or TrackConfig()
    temperature = cfg.temperature if cfg.temperature is not None else features.temperature
    first_mask = np.asarray(first_mask)
    object_ids = [int(i) for i in np.unique(first_mask) if i != 0]
    first_feat: torch.Tensor | None = None
    first_lab: torch.Tensor | None = None
    history: list[tuple[torch.Tensor, torch.Tensor]] = []
    size_hw: tuple[int, int] | None = None
    for t, frame in enumerate(frames):
        frame = np.asarray(frame)
        if size_hw is None:
            size_hw = frame.shape[:2]
            if first_mask.shape != size_hw:
                raise ValueError(f"first mask is {first_mask.shape}, frames are {size_hw}")
        elif frame.shape[:2] != size_hw:
            raise ValueError(f"frame {t} is {frame.shape[:2]}, expected {size_hw}")
        feat = features.fn(_rescale(frame, cfg.scale)[None])[0].to(cfg.device)
        if features.metric == "cosine":
            feat = F.normalize(feat, dim=0)
        if t == 0:
            first_feat = feat
            first_lab = downsample_labels(mask_to_onehot(first_mask, object_ids), feat.shape[1:]).to(cfg.device)
            yield first_mask.astype(np.uint8)
            continue
        assert first_feat is not None and first_lab is not None
        ref_feats = torch.stack([first_feat] + [f for f, _ in history])
        ref_labels = torch.stack([first_lab] + [lab for _, lab in history])
        soft = propagate_labels(feat, ref_feats, ref_labels, topk=cfg.topk, radius=cfg.radius, temperature=temperature, metric=features.metric, tile=cfg.tile)
        history.append((feat, soft))
        if len(history) > cfg.refs:
            history.pop(0)
        yield soft_to_mask(soft, size_hw, object_ids)


def copy_first_mask(frames: Iterable[np.ndarray], first_mask: np.ndarray) -> Iterator[np.ndarray]:
    """Baseline: the first mask for every frame."""
    for _ in frames:
        yield np.asarray(first_mask).astype(np.uint8)


def _rescale(frame: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return frame
    from PIL import Image

    h, w = frame.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


# ---------------------------------------------------------------- I/O helpers


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """All frames of a video file, in order, as (H, W, 3) uint8 (decoded with avlearn.media)."""
    from avlearn.media import probe, read_frames

    info = probe(path)
    if not info.has_video or not info.fps:
        from avlearn.media import NoVideoStream

        raise NoVideoStream(str(path), "no video stream")
    n = info.num_frames or int(math.floor(info.duration_sec * info.fps))
    step = 32
    for i in range(0, n, step):
        times = [j / info.fps for j in range(i, min(n, i + step))]
        yield from read_frames(path, times).images


def iter_folder_frames(folder: str | Path) -> Iterator[np.ndarray]:
    """Frames of a folder of images (sorted by name), as (H, W, 3) uint8."""
    from avlearn.data.davis import read_frame

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no image frames (.jpg/.png)")
    for p in paths:
        yield read_frame(p)


def load_features(checkpoint: str | Path | None, *, features: str = "model", device: str = "cpu") -> Features:
    """A feature extractor from a checkpoint (``features="model"``) or the raw-Lab baseline (``features="lab"``)."""
    if features == "lab":
        stride = 4
        if checkpoint is not None:
            from avlearn.checkpoint import load_checkpoint

            model, _ = load_checkpoint(checkpoint)
            stride = int(model.model_config.get("stride_px", 4))
        return lab_features(stride)
    if features != "model":
        raise ValueError(f"features must be 'model' or 'lab', got {features!r}")
    if checkpoint is None:
        raise ValueError("a checkpoint is needed for features='model'")
    from avlearn.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint, device=device)
    if not hasattr(model, "embed_frames"):
        raise ValueError(f"{checkpoint}: model {model.model_config.get('name')!r} is not a colorization tracker")
    return model_features(model, device=device)


def track(
    *,
    features: Features,
    first_mask: str | Path | np.ndarray,
    out_dir: str | Path,
    frames_dir: str | Path | None = None,
    video: str | Path | None = None,
    config: TrackConfig | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Propagate a first-frame mask through a frame folder or a video; write DAVIS palette PNGs.

    Output files are ``out_dir/<name>.png`` with the frame file's stem as name (or
    ``00000.png, 00001.png, ...`` for a video). Returns the written paths.
    """
    from tqdm import tqdm

    from avlearn.data.davis import read_mask, write_mask

    if (frames_dir is None) == (video is None):
        raise ValueError("give exactly one of frames_dir or video")
    mask = first_mask if isinstance(first_mask, np.ndarray) else read_mask(first_mask)
    if frames_dir is not None:
        paths = sorted(p for p in Path(frames_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        names = names or [p.stem for p in paths]
        frames: Iterable[np.ndarray] = iter_folder_frames(frames_dir)
        total = len(paths)
    else:
        frames = iter_video_frames(video)  # type: ignore[arg-type]
        total = None
    out: list[Path] = []
    it = propagate_masks(frames, mask, features, config)
    for i, m in enumerate(tqdm(it, total=total, desc="track", unit="frame", disable=not progress)):
        name = names[i] if names is not None and i < len(names) else f"{i:05d}"
        out.append(write_mask(Path(out_dir) / f"{name}.png", m))
    return out
