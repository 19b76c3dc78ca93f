"""Action probe of a frozen temporal trunk: clip features, a linear classifier and a k-NN fitted on
labelled training videos and scored on held-out videos, against random weights and against the
same architecture trained supervised from scratch.

The papers' protocol in small (Shuffle-and-Learn and Odd-One-Out report action recognition on
UCF101/HMDB51 split 1: a network trained on the training videos, accuracy on the test videos).
Here the trunk stays frozen, which measures what the pretext task put into the features:

1. Clips: a :class:`avlearn.data.action_sets.LabelledSplit` (a world's train/test splits, two
   labelled sources, or UCF101/HMDB51 with the official split files); each clip's class is its
   first label; no video on both sides (checked). Test clips of a class absent from training are
   left out (counted).
2. Input: ``moments`` moments evenly spread over each clip. At each moment the trunk gets what it
   was trained on (``input="auto"``): a single frame for a per-frame trunk (Shuffle-and-Learn,
   Odd-One-Out ``frames``), a stack of K frames ``stack_gap_frames`` grid frames apart centred on
   the moment for a stacked-frames trunk (as the first frame and the differences for the
   ``differences`` encoder), the dynamic image of those K frames for a dynamic-image trunk
   (``model.input_frames`` = K). ``input="frame"`` forces single frames (a stacked trunk then
   sees stills, as the Embedder shows it).
3. Clip feature: the features of one layer (``LAYERS``: ``embedding`` = ``embed_image``, the
   L2-normalised trunk output; ``conv`` = the conv tower's output, global-average-pooled) at every
   moment, pooled over the moments: ``"meanstd"`` (default) concatenates their mean and standard
   deviation (what the features are on average, and how much they change), ``"mean"`` the mean alone.
4. Probes, fitted on the training clips only: logistic regression on standardised features
   (``linear``), and the majority vote of the ``k`` nearest training clips by cosine similarity of
   the standardised features (``knn``); accuracy over the test clips.
5. References: the same architecture at ``random_inits`` seeded random initialisations (seeds
   ``seed`` … ``seed + n − 1``), probed the same way and averaged (each kept); ``delta_*`` =
   trained − mean random. And the same architecture trained end to end from scratch on the
   labelled training clips (``supervised``): trunk → the same layer → the same pooling → a linear
   layer, cross-entropy, AdamW, one random crop + flip per clip, ``supervised_epochs`` epochs; its
   own classifier's accuracy on the test clips (the last epoch's model; the test side is never
   used to choose anything).

The bar layer (``BAR_LAYER``) is declared here, before any figure: ``embedding``, the trunk
output that the pretext heads consume and the Embedder serves; ``conv`` is reported beside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from avlearn.data.action_sets import LabelledSplit
from avlearn.data.spans import ClipSpan

log = logging.getLogger(__name__)

LAYERS = {"embedding": "embed_image", "conv": "conv_features"}  # probe layer → model method
BAR_LAYER = "embedding"
POOLS = ("meanstd", "mean")
INPUTS = ("auto", "frame")


@dataclass
class ClipSet:
    """Decoded moments of labelled clips.

    Attributes:
        frames: uint8 (C, T, H, W, 3), or (C, T, K, H, W, 3) with stacks of K frames.
        labels: class of each clip.
        clip_ids, paths: of each clip.
        skipped: one record per clip that could not be decoded.
    """

    frames: np.ndarray
    labels: list[str]
    clip_ids: list[str]
    paths: list[str]
    skipped: list[dict]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: Sequence[int]) -> ClipSet:
        idx = list(keep)
        return ClipSet(self.frames[idx], [self.labels[i] for i in idx], [self.clip_ids[i] for i in idx], [self.paths[i] for i in idx], self.skipped)


def decode_clips(spans: Sequence[ClipSpan], *, size_px: tuple[int, int], moments: int = 8, stack: int = 1, stack_gap_frames: int = 1) -> ClipSet:
    """``moments`` moments evenly spread over each labelled clip, decoded at ``size_px`` (H, W).

    ``stack`` > 1: each moment is K = ``stack`` frames ``stack_gap_frames`` grid frames apart, centred on
    it (clamped to the clip's first and last frame), in temporal order. A clip that cannot be decoded is
    logged and skipped (``skipped``).
    """
    from avlearn.media import MediaError, probe, read_frames

    if moments < 1 or stack < 1 or stack_gap_frames < 1:
        raise ValueError(f"moments, stack and stack_gap_frames must be >= 1, got {moments}, {stack}, {stack_gap_frames}")
    labelled = [span for span in spans if span.labels]
    shape = (moments, stack, *size_px, 3) if stack > 1 else (moments, *size_px, 3)
    out = np.empty((len(labelled), *shape), np.uint8)  # filled in place: memory = the clips asked for, no second copy
    labels: list[str] = []
    ids: list[str] = []
    paths: list[str] = []
    skipped: list[dict] = []
    for span in labelled:
        try:
            end, fps = span.end_sec, 0.0
            if end is None or stack > 1:  # open the file only when its length or frame rate is needed
                info = probe(span.path)
                end, fps = (info.duration_sec if end is None else end), (info.fps or 25.0)
            dur = max(0.0, end - span.start_sec)
            times = span.start_sec + (np.arange(moments) + 0.5) * dur / moments
            if stack > 1:  # whole grid frames around each moment, clamped to the clip's first and last frame
                offsets = np.arange(stack) * stack_gap_frames - (stack - 1) * stack_gap_frames // 2
                first, last = np.ceil(span.start_sec * fps - 1e-6), np.floor(end * fps - 1e-6)
                grid = np.clip(np.round(times * fps)[:, None] + offsets[None, :], first, max(first, last))
                times = grid.reshape(-1) / fps
            # fillers every <= 2 s keep read_frames decoding straight on: its seek path hung on
            # the synthetic H.264 files (see docs/temporal.md)
            fillers = np.arange(span.start_sec, times.max(), 2.0)
            fr = read_frames(span.path, np.concatenate([times, fillers]), size_px=size_px)
            images = fr.images[: len(times)]
            images = images.reshape(moments, stack, *images.shape[1:]) if stack > 1 else images
        except MediaError as exc:
            log.warning("probe: skipping %s: %s", span.path, exc)
            skipped.append(exc.to_record())
            continue
        out[len(labels)] = images
        labels.append(span.labels[0])
        ids.append(span.clip_id)
        paths.append(span.path)
    return ClipSet(out[: len(labels)], labels, ids, paths, skipped)


def _inputs(pre, frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) → normalised (..., 3, H, W)."""
    x = pre.images(frames.reshape(-1, *frames.shape[-3:]))
    return x.reshape(*frames.shape[:-3], *x.shape[1:])


def pool_moments(f: torch.Tensor, pool: str) -> torch.Tensor:
    """Per-moment features (C, T, D) → clip features: (C, 2D) mean ‖ std over T ("meanstd") or (C, D) mean ("mean")."""
    if pool == "mean":
        return f.mean(dim=1)
    if pool == "meanstd":
        return torch.cat([f.mean(dim=1), f.std(dim=1, unbiased=False)], dim=1)
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")


def moment_features(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Normalised clips (C, T, 3, H, W) or (C, T, K, 3, H, W) → features of ``layer`` at every moment (C, T, D)."""
    c, t = x.shape[:2]
    f = getattr(model, LAYERS[layer])(x.flatten(0, 1))
    return f.reshape(c, t, -1)


@torch.no_grad()
def clip_features(
    model: nn.Module, clips: ClipSet, *, layer: str = BAR_LAYER, pool: str = "meanstd", device: str | torch.device = "cpu", batch_clips: int = 16
) -> np.ndarray:
    """(C, D') float32 clip features of ``layer`` pooled over the moments (see the module docstring)."""
    from avlearn.embed.preprocess import Preprocessor

    pre = Preprocessor.from_config(model.preprocessing).to(device)
    model = model.to(device).eval()
    out = [
        pool_moments(moment_features(model, _inputs(pre, clips.frames[i : i + batch_clips]), layer), pool).float().cpu().numpy()
        for i in range(0, len(clips), batch_clips)
    ]
    return np.concatenate(out).astype(np.float32)


def fit_probes(x_train: np.ndarray, y_train: Sequence[str], x_test: np.ndarray, y_test: Sequence[str], *, k: int = 5, seed: int = 0) -> dict[str, float]:
    """Linear (logistic regression) and k-NN (cosine, majority of ``k``) accuracy on the test clips, both on features standardised on the training clips."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    a, b = scaler.transform(x_train), scaler.transform(x_test)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    linear = LogisticRegression(max_iter=3000, C=1.0, random_state=seed).fit(a, y_train)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(a)), metric="cosine", algorithm="brute").fit(a, y_train)
    return {"linear": float((linear.predict(b) == y_test).mean()), "knn": float((knn.predict(b) == y_test).mean())}


def random_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """The same architecture (from ``model.model_config``) at a seeded random initialisation."""
    from avlearn.models import model_from_config

    return model_from_config(model.model_config, seed=seed).eval()


class ClipClassifier(nn.Module):
    """A trunk model's ``layer`` at every moment, pooled over the moments, then a linear layer: clips → logits (B, classes)."""

    def __init__(self, trunk_model: nn.Module, *, layer: str, pool: str, feature_dim: int, classes: int) -> None:
        super().__init__()
        self.net, self.layer, self.pool = trunk_model, layer, pool
        self.head = nn.Linear(feature_dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(pool_moments(moment_features(self.net, x, self.layer), self.pool))


def train_supervised(
    model: nn.Module,
    train: ClipSet,
    test: ClipSet,
    classes: Sequence[str],
    *,
    layer: str = BAR_LAYER,
    pool: str = "meanstd",
    epochs: int = 30,
    batch_clips: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """The architecture of ``model`` from scratch (seed ``seed``), trained end to end on ``train``'s labels; accuracy on ``test``.

    One random crop (60-100 % of the area) + flip per clip and epoch, the same for all its frames.
    """
    from avlearn.embed.preprocess import Preprocessor
    from avlearn.pretext.augment import crop_flip

    t0 = time.perf_counter()
    net = random_like(model, seed).to(device)
    pre = Preprocessor.from_config(net.preprocessing).to(device)
    index = {c: i for i, c in enumerate(classes)}
    with torch.no_grad():
        dim = moment_features(net.eval(), _inputs(pre, train.frames[:1]), layer).shape[-1] * (2 if pool == "meanstd" else 1)
    clf = ClipClassifier(net, layer=layer, pool=pool, feature_dim=dim, classes=len(classes)).to(device)
    opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=weight_decay)
    y = torch.tensor([index[c] for c in train.labels], device=device)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(epochs):
        clf.train()
        order = rng.permutation(len(train))
        for i in range(0, len(order), batch_clips):
            idx = order[i : i + batch_clips]
            x = torch.stack([_inputs(pre, crop_flip(train.frames[j], rng)) for j in idx])
            loss = F.cross_entropy(clf(x), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))

    @torch.no_grad()
    def accuracy(clips: ClipSet) -> float:
        clf.eval()
        pred = torch.cat([clf(_inputs(pre, clips.frames[i : i + batch_clips])).argmax(1).cpu() for i in range(0, len(clips), batch_clips)])
        return float((pred.numpy() == np.array([index[c] for c in clips.labels])).mean())

    return {
        "test_accuracy": accuracy(test), "train_accuracy": accuracy(train), "epochs": epochs, "lr": lr, "batch_clips": batch_clips,
        "final_loss": float(np.mean(losses[-max(1, len(train) // batch_clips) :])) if losses else None, "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip


def _describe_input(model: nn.Module, k: int, gap: int) -> str:
    if k == 1:
        return "frame" if getattr(model, "stack_frames", 1) == 1 else "frame shown as a still"
    kind = {"dynamic": "dynamic image of", "differences": "first frame and differences of"}.get(getattr(model, "encoder", ""), "stack of")
    return f"{kind} {k} frames {gap} grid frames apart"


def probe_actions(
    model: nn.Module,
    split: LabelledSplit,
    *,
    moments: int = 8,
    input: str = "auto",  # noqa: A002 - the probe's input mode
    stack_gap_frames: int = 1,
    pool: str = "meanstd",
    k: int = 5,
    random_inits: int = 5,
    supervised_epochs: int = 30,
    max_clips: int = 0,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """The action probe of ``model``'s frozen trunk on ``split`` (see the module docstring).

    ``max_clips`` > 0: at most that many clips of each side, a seeded draw from the listing made before decoding
    (:func:`avlearn.eval.sampling.iter_sampled_spans`); 0: every clip (the papers' protocol).

    Returns {"layers": {layer: {"trained": {"linear", "knn"}, "random": {..., "linear_per_init", "knn_per_init"},
    "delta_linear", "delta_knn"}}, "delta_linear", "delta_knn" (of ``BAR_LAYER``), "supervised", counts, settings},
    or {"skipped_reason": ...} when fewer than two classes have training clips.
    """
    if input not in INPUTS or pool not in POOLS:
        raise ValueError(f"input must be one of {INPUTS} and pool one of {POOLS}, got {input!r}, {pool!r}")
    if random_inits < 1:
        raise ValueError(f"random_inits must be >= 1, got {random_inits}")
    size = tuple(model.preprocessing["image_size_px"])
    stack = int(getattr(model, "input_frames", 1)) if input == "auto" else 1
    if stack == 1 and getattr(model, "encoder", "") == "dynamic":
        raise ValueError("a dynamic-image trunk was never trained on single frames: probe it with input=auto")
    from avlearn.eval.sampling import iter_sampled_spans

    t0 = time.perf_counter()
    train_spans, test_spans = (list(iter_sampled_spans(side, max_clips, seed)) for side in (split.train, split.test))
    train = decode_clips(train_spans, size_px=size, moments=moments, stack=stack, stack_gap_frames=stack_gap_frames)  # type: ignore[arg-type]
    test = decode_clips(test_spans, size_px=size, moments=moments, stack=stack, stack_gap_frames=stack_gap_frames)  # type: ignore[arg-type]
    classes = sorted(set(train.labels))
    known = [i for i, c in enumerate(test.labels) if c in set(classes)]
    out: dict[str, Any] = {
        "protocol": "frozen trunk; clip features pooled over moments; linear and k-NN fitted on the training clips, scored on the test clips",
        "split": split.name, "input": _describe_input(model, stack, stack_gap_frames), "moments": moments, "pool": pool, "k": k,
        "bar_layer": BAR_LAYER, "train_clips": len(train), "test_clips": len(known), "test_clips_of_unseen_classes": len(test) - len(known),
        "classes": len(classes), "missing": len(split.missing), "skipped": len(train.skipped) + len(test.skipped),
        "max_clips": max_clips, "train_clips_listed": len(split.train), "test_clips_listed": len(split.test),
    }  # fmt: skip
    test = test.subset(known)
    if len(classes) < 2 or not len(test):
        out["skipped_reason"] = f"the probe needs >= 2 classes with training clips and some test clips; got {len(classes)} classes, {len(test)} test clips"
        return out
    counts = {c: test.labels.count(c) for c in classes}
    out["majority"] = max(counts.values()) / len(test)
    out["decode_sec"] = round(time.perf_counter() - t0, 1)
    twins = [random_like(model, seed + i) for i in range(random_inits)]
    layers: dict[str, Any] = {}
    for layer, method in LAYERS.items():
        if not hasattr(model, method):
            continue

        def score(m: nn.Module, layer: str = layer) -> dict[str, float]:
            return fit_probes(
                clip_features(m, train, layer=layer, pool=pool, device=device), train.labels,
                clip_features(m, test, layer=layer, pool=pool, device=device), test.labels, k=k, seed=seed,
            )  # fmt: skip

        trained = score(model)
        rand = [score(t) for t in twins]
        mean_random: dict[str, Any] = {key: float(np.mean([r[key] for r in rand])) for key in ("linear", "knn")}
        mean_random |= {f"{key}_per_init": [r[key] for r in rand] for key in ("linear", "knn")} | {"inits": random_inits}
        layers[layer] = {
            "trained": trained, "random": mean_random,
            "delta_linear": trained["linear"] - mean_random["linear"], "delta_knn": trained["knn"] - mean_random["knn"],
        }  # fmt: skip
    out["layers"] = layers
    out["delta_linear"], out["delta_knn"] = layers[BAR_LAYER]["delta_linear"], layers[BAR_LAYER]["delta_knn"]
    if supervised_epochs > 0:
        out["supervised"] = train_supervised(model, train, test, classes, layer=BAR_LAYER, pool=pool, epochs=supervised_epochs, seed=seed, device=device)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out
