"""Scenes of the synthetic worlds: object motion, numpy compositing, boxes and masks, backgrounds, the soundtrack.

Coordinates are pixels in the frame, x to the right and y down; times are seconds
on the video's frame grid (frame i at i / fps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from avlearn.data._synth_assets import Category, Instance
from avlearn.data._synth_sounds import clip_wave, procedural_wave

MOTIONS = ("linear", "accelerating", "bouncing", "enter")
BACKGROUNDS = ("gradient", "horizon", "tiles", "blobs")
_SUBSTEPS = 4
SOUNDING_SIZE = (0.15, 0.8)  # on-screen size of a sounding object, fraction of the frame (log-uniform, times its instance's scale)
DISTRACTOR_SIZE = (0.14, 0.40)
_MAX_SIZE = 0.9


@dataclass
class SceneObject:
    """One object of a scene and its path, sampled on the frame grid.

    Attributes:
        label: its category's name.
        sounding: whether this object is the sound source.
        xy_px: (T, 2) float64 centre per frame.
        angle_deg: (T,) rotation per frame.
        scale: (T,) on-screen size relative to ``base`` (the sprite pre-resized once per object).
        base: (S, S, 4) uint8 RGBA sprite at the object's mean size.
        params: JSON-ready description (category, instance, motion, size, ...).
    """

    label: str
    sounding: bool
    xy_px: np.ndarray
    angle_deg: np.ndarray
    scale: np.ndarray
    base: np.ndarray
    params: dict
    _premultiplied: Image.Image | None = None


def _simulate(
    pos: np.ndarray, vel: np.ndarray, accel: np.ndarray, *, drag: float, restitution: float, lo: float, hi: float, num_frames: int, fps: int
) -> np.ndarray:
    """(num_frames, 2) positions of a point under constant acceleration, drag and wall bounces.

    Walls at ``lo``/``hi`` act on an axis only once the point is inside them, so an
    object can enter from outside the frame.
    """
    dt = 1.0 / (fps * _SUBSTEPS)
    pos = pos.astype(np.float64).copy()
    vel = vel.astype(np.float64).copy()
    inside = (pos >= lo) & (pos <= hi)
    out = np.empty((num_frames, 2))
    decay = np.exp(-drag * dt)
    for i in range(num_frames):
        out[i] = pos
        for _ in range(_SUBSTEPS):
            vel = (vel + accel * dt) * decay
            pos = pos + vel * dt
            inside |= (pos >= lo) & (pos <= hi)
            for ax in range(2):
                if not inside[ax]:
                    continue
                if pos[ax] < lo and vel[ax] < 0:
                    pos[ax] = 2 * lo - pos[ax]
                    vel[ax] = -vel[ax] * restitution
                elif pos[ax] > hi and vel[ax] > 0:
                    pos[ax] = 2 * hi - pos[ax]
                    vel[ax] = -vel[ax] * restitution
    return out


def _unit(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(a), np.sin(a)])


def resize_sprite(sprite: np.ndarray, size_px: int) -> np.ndarray:
    """(size_px, size_px, 4) uint8: ``sprite`` resized once for an object (Lanczos)."""
    return np.asarray(Image.fromarray(sprite, "RGBA").resize((size_px, size_px), Image.LANCZOS))


def make_object(
    category: Category,
    instance: Instance,
    sprite: np.ndarray,
    *,
    sounding: bool,
    rng: np.random.Generator,
    size_px: int,
    num_frames: int,
    fps: int,
    allow_offscreen: bool,
) -> SceneObject:
    """Sample an object's size, spin, scale change and path (the sounding object's centre stays in frame).

    ``sprite``: the instance's (D, D, 4) RGBA look; the on-screen size is drawn from SOUNDING_SIZE or
    DISTRACTOR_SIZE times the instance's typical ``scale``.
    """
    w = float(size_px)
    lo_frac, hi_frac = SOUNDING_SIZE if sounding else DISTRACTOR_SIZE
    mean_frac = min(_MAX_SIZE, float(np.exp(rng.uniform(np.log(lo_frac), np.log(hi_frac)))) * instance.look["scale"])
    scale_ratio = float(np.exp(rng.uniform(-0.3, 0.3)))  # end size / start size
    base = resize_sprite(sprite, max(6, int(round(mean_frac * w))))
    u = np.arange(num_frames) / max(1, num_frames - 1)
    scale = np.exp((u - 0.5) * np.log(scale_ratio))
    photo = "photo" in instance.look
    spin_max = 25.0 if photo else 70.0
    spin = rng.uniform(8.0, spin_max) * rng.choice([-1.0, 1.0])
    angle0 = rng.uniform(-20, 20) if photo else rng.uniform(0, 360)
    t = np.arange(num_frames) / fps
    angle = angle0 + spin * t

    margin = max(0.15, 0.4 * mean_frac) * w  # big objects keep most of themselves in view
    lo, hi = margin, w - margin
    kind = str(rng.choice(MOTIONS))
    pos = rng.uniform(lo, hi, 2)
    accel = np.zeros(2)
    drag, restitution = 0.0, 1.0
    if kind == "linear":
        vel = _unit(rng) * rng.uniform(0.10, 0.25) * w
    elif kind == "accelerating":
        vel = _unit(rng) * rng.uniform(0.0, 0.05) * w
        accel = _unit(rng) * rng.uniform(0.04, 0.12) * w
        restitution = 0.7
    elif kind == "bouncing":
        vel = np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.5, -0.1)]) * w
        accel = np.array([0.0, rng.uniform(0.5, 1.0) * w])
        restitution = 0.75
    else:  # enter: slides in from an edge and slows down (friction)
        edge = int(rng.integers(4))
        axis, side = edge // 2, edge % 2
        start_out = 0.0 if sounding or not allow_offscreen else 0.5 * mean_frac * w * 1.3
        pos[axis] = -start_out if side == 0 else w + start_out
        speed = rng.uniform(0.5, 0.9) * w
        vel = np.zeros(2)
        vel[axis] = speed if side == 0 else -speed
        vel[1 - axis] = rng.uniform(-0.1, 0.1) * w
        drag = rng.uniform(1.2, 2.0)
        restitution = 0.6
    xy = _simulate(pos, vel, accel, drag=drag, restitution=restitution, lo=lo, hi=hi, num_frames=num_frames, fps=fps)
    if sounding or not allow_offscreen:
        xy = np.clip(xy, 0.0, w)
    params = {
        "category": category.name,
        "instance": instance.id,
        "sounding": sounding,
        "motion": kind,
        "start_xy": [round(float(v) / w, 4) for v in xy[0]],
        "end_xy": [round(float(v) / w, 4) for v in xy[-1]],
        "size": round(mean_frac, 4),
        "scale_ratio": round(scale_ratio, 4),
        "spin_deg_per_sec": round(float(spin), 3),
    }
    return SceneObject(category.name, sounding, xy, angle, scale, base, params)


def render_patch(obj: SceneObject, frame_index: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """The object's rotated, scaled sprite at one frame.

    Returns:
        (x0, y0, rgb, alpha): the patch's top-left in frame pixels, (P, P, 3) float32
        premultiplied colour in [0, 255] and (P, P, 1) float32 alpha in [0, 1].
    """
    cx, cy = obj.xy_px[frame_index]
    s = float(obj.scale[frame_index])
    theta = np.deg2rad(obj.angle_deg[frame_index])
    d = obj.base.shape[0]
    radius = 0.5 * d * s * np.sqrt(2.0)
    p = int(np.ceil(2 * radius)) + 2
    x0, y0 = int(np.floor(cx - p / 2)), int(np.floor(cy - p / 2))
    c, si = np.cos(theta) / s, np.sin(theta) / s
    ox, oy = x0 - cx, y0 - cy
    coeffs = (c, si, c * ox + si * oy + d / 2, -si, c, -si * ox + c * oy + d / 2)
    if obj._premultiplied is None:
        obj._premultiplied = Image.fromarray(obj.base, "RGBA").convert("RGBa")
    img = obj._premultiplied.transform((p, p), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    arr = np.asarray(img, np.float32)
    return x0, y0, arr[..., :3], arr[..., 3:] / 255.0


def composite(
    background: np.ndarray, objects: list[SceneObject], order: list[int], frame_index: int, *, want_masks: bool
) -> tuple[np.ndarray, list[tuple[int, int, int, int] | None], np.ndarray | None]:
    """Draw one frame.

    Args:
        background: (H, W, 3) float32.
        order: object indices back to front.
    Returns:
        frame (H, W, 3) uint8; per object its visible box (x0, y0, x1, y1) in pixels (x1, y1
        exclusive; alpha >= 0.5, clipped to the frame, occlusion ignored) or None when off screen;
        and (H, W) uint8 ids (0 background, object k → k + 1, front-most wins) when ``want_masks``.
    """
    h, w = background.shape[:2]
    frame = background.copy()
    boxes: list[tuple[int, int, int, int] | None] = [None] * len(objects)
    ids = np.zeros((h, w), np.uint8) if want_masks else None
    for k in order:
        x0, y0, rgb, alpha = render_patch(objects[k], frame_index)
        p = rgb.shape[0]
        fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + p), min(h, y0 + p)
        if fx0 >= fx1 or fy0 >= fy1:
            continue
        sx0, sy0 = fx0 - x0, fy0 - y0
        a = alpha[sy0 : sy0 + fy1 - fy0, sx0 : sx0 + fx1 - fx0]
        region = frame[fy0:fy1, fx0:fx1]
        region *= 1.0 - a
        region += rgb[sy0 : sy0 + fy1 - fy0, sx0 : sx0 + fx1 - fx0]
        solid = a[..., 0] >= 0.5
        if solid.any():
            rows, cols = np.nonzero(solid.any(axis=1))[0], np.nonzero(solid.any(axis=0))[0]
            boxes[k] = (fx0 + int(cols[0]), fy0 + int(rows[0]), fx0 + int(cols[-1]) + 1, fy0 + int(rows[-1]) + 1)
            if ids is not None:
                ids[fy0:fy1, fx0:fx1][solid] = k + 1
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8), boxes, ids


def make_background(rng: np.random.Generator, size_px: int) -> tuple[np.ndarray, str]:
    """(H, W, 3) float32 background of a random kind (one of BACKGROUNDS) with soft low-frequency texture, and its kind.

    Colours are muted (saturation cut to 30-70 %) so that objects stand out.
    """
    n = size_px
    kind = str(rng.choice(BACKGROUNDS))
    c0 = rng.uniform(40, 190, 3)
    c1 = np.clip(c0 + rng.uniform(-70, 70, 3), 20, 235)
    keep = rng.uniform(0.3, 0.7)
    c0, c1 = [c.mean() + keep * (c - c.mean()) for c in (c0, c1)]
    yy, xx = (np.mgrid[0:n, 0:n] + 0.5) / n
    d = _unit(rng)
    along = (xx - 0.5) * d[0] + (yy - 0.5) * d[1]
    if kind == "gradient":
        t = np.clip(along + 0.5, 0, 1)
    elif kind == "horizon":  # two regions split by a tilted line, softly blended
        t = 1 / (1 + np.exp(-(along - rng.uniform(-0.3, 0.3)) * 40))
    elif kind == "tiles":  # a low-contrast checker at a random scale and angle
        f = rng.uniform(2, 8)
        across = -(xx - 0.5) * d[1] + (yy - 0.5) * d[0]
        t = 0.5 + 0.35 * (((np.floor(along * f) + np.floor(across * f)) % 2) - 0.5)
    else:  # blobs: soft discs of the second colour
        t = np.zeros((n, n))
        for _ in range(int(rng.integers(2, 6))):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.35)
            t = np.maximum(t, np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))
    bg = c0 * (1 - t[..., None]) + c1 * t[..., None]
    small = (rng.uniform(0, 255, (6, 6))).astype(np.uint8)
    tex = np.asarray(Image.fromarray(small).resize((n, n), Image.BICUBIC), np.float32)[..., None] / 255.0 - 0.5
    return (bg + 24.0 * tex).astype(np.float32), kind


def sound_events(rng: np.random.Generator, seconds: float) -> list[tuple[float, float]]:
    """[(onset_sec, offset_sec)]: stretches of 1-3.5 s separated by 0.1-0.7 s gaps, from a 0-0.4 s start."""
    events = []
    t = rng.uniform(0.0, 0.4)
    while t < seconds - 0.1:
        dur = rng.uniform(1.0, 3.5)
        events.append((round(t, 4), round(min(seconds, t + dur), 4)))
        t += dur + rng.uniform(0.1, 0.7)
    return events


def make_soundtrack(category: Category, instance: Instance, rng: np.random.Generator, *, seconds: float, sample_rate_hz: int) -> tuple[np.ndarray, dict]:
    """(n,) float32 in [-1, 1]: the instance's sound (random pitch jitter of +/- 1 semitone, excerpt, gain and
    on/off events whose ramps are the instance's attack and decay) over low background noise; plus a JSON-ready description."""
    n = int(round(seconds * sample_rate_hz))
    sr = sample_rate_hz
    p = instance.sound
    if p is None:
        raise ValueError(f"instance {instance.id!r} has no sound")
    rate = float(np.exp(rng.uniform(-0.06, 0.06)))
    if p["kind"] == "clip":
        if not category.clips:
            raise ValueError(f"category {category.name!r} has no decoded clips (load_clips)")
        wave = clip_wave(category.clips, p, n, sr, rng, pitch=rate)
    else:
        wave = procedural_wave(p, n, sr, rng, pitch=rate)
    events = sound_events(rng, seconds)
    gate = np.zeros(n)
    for on, off in events:
        a, b = int(on * sr), int(off * sr)
        ramp = np.arange(b - a) / sr
        gate[a:b] = np.minimum(1.0, np.minimum(ramp / p["attack_sec"], (ramp[::-1] + 1 / sr) / p["decay_sec"]))
    gain = float(np.exp(rng.uniform(np.log(0.5), np.log(1.5))))
    noise_rms = float(rng.uniform(0.002, 0.008))
    mix = 0.1 * gain * wave * gate + noise_rms * rng.standard_normal(n)
    peak = np.abs(mix).max()
    if peak > 0.98:
        mix *= 0.98 / peak
    info = {"events_sec": [list(e) for e in events], "gain": round(gain, 4), "rate": round(rate, 4), "noise_rms": round(noise_rms, 5)}
    return mix.astype(np.float32), info
