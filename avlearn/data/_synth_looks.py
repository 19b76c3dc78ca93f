"""Looks of the synthetic worlds: a family's body plan and ranges -> an instance's parameters -> an RGBA sprite.

A look family fixes a body plan (how the parts are laid out), a hue range and the
textures its members use; each instance draws its part count, proportions, part
placement, colour, texture frequency and angle, and typical scale from those. Real
photos give photo looks, whose derived instances differ in crop, mirroring, tint and frame.

A sprite is (D, D, 4) uint8 RGBA, straight alpha; the shape is fitted to the square.
Look parameters are JSON-ready dicts; :func:`look_sprite` is a pure function of them.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_SUPERSAMPLE = 2
_FILL = 0.94  # the shape's extent as a fraction of the sprite square

Uniform = Callable[[], float]  # a number in [0, 1): ``rng.random``, or ``lambda: 0.5`` for a family's central member

# plan -> (min parts, max parts); what "parts", "a" and "b" mean is in each plan's drawing code below
PLANS: dict[str, tuple[int, int]] = {
    "star": (4, 9),  # arms; a: inner radius; b: arm length jitter
    "polygon": (3, 8),  # sides; a: vertex radius jitter; b: rotation
    "cluster": (3, 7),  # lobes; a: spread; b: lobe size
    "chain": (3, 7),  # segments; a: spine curvature; b: taper
    "ring": (0, 6),  # knobs on the rim; a: hole size; b: knob size
    "flower": (4, 10),  # petals; a: centre size; b: petal width
    "bug": (2, 5),  # leg pairs; a: body width; b: leg length
    "fish": (0, 3),  # fins; a: body height; b: tail size
    "tower": (2, 5),  # stacked blocks; a: taper; b: block width jitter
    "gear": (6, 14),  # teeth; a: tooth length; b: hole size
    "spokes": (2, 4),  # bars through the centre; a: bar width; b: bar length jitter
    "chevron": (1, 3),  # stacked chevrons; a: notch depth; b: thickness
    "slab": (0, 3),  # holes; a: elongation; b: corner rounding
    "pebble": (1, 4),  # outline harmonics; a: bumpiness; b: elongation
    "leaf": (0, 4),  # side notches; a: width; b: stem length
    "crescent": (0, 2),  # inner dots; a: bite offset; b: bite size
}
TEXTURES = ("stripes", "checker", "dots", "rings", "radial", "noise")


@dataclass(frozen=True)
class LookFamily:
    """The shared character of a family's looks: a body plan, a hue range (hue in [0, 1)) and textures."""

    plan: str
    hue: float
    textures: tuple[str, ...]
    hue_spread: float = 0.05


def between(u: Uniform, lo: float, hi: float) -> float:
    return lo + (hi - lo) * u()


def draw_look(family: LookFamily, u: Uniform, shape_seed: int) -> dict:
    """JSON-ready parameters of one member of ``family`` (``shape_seed`` places its parts)."""
    lo, hi = PLANS[family.plan]
    hue = (family.hue + between(u, -family.hue_spread, family.hue_spread)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, between(u, 0.45, 0.95), between(u, 0.55, 0.95))
    return {
        "plan": family.plan,
        "parts": min(hi, lo + int(u() * (hi - lo + 1))),
        "a": round(u(), 4),
        "b": round(u(), 4),
        "aspect": round(between(u, 0.7, 1.0), 4),
        "color": [int(round(255 * c)) for c in rgb],
        "texture": family.textures[min(len(family.textures) - 1, int(u() * len(family.textures)))],
        "texture_freq": round(between(u, 3.0, 9.0), 3),
        "texture_angle_deg": round(between(u, 0.0, 180.0), 2),
        "scale": round(float(np.exp(between(u, np.log(0.8), np.log(1.25)))), 4),
        "shape_seed": int(shape_seed),
    }


def draw_photo_look(photo: str, u: Uniform, *, original: bool) -> dict:
    """Parameters of a look derived from a real photo (``original``: the photo itself, uncropped and untinted)."""
    if original:
        return {"photo": photo, "crop": [0.5, 0.5, 1.0], "mirror": False, "hue_shift": 0.0, "saturation": 1.0, "frame": "rounded", "scale": 1.0}
    side = between(u, 0.55, 1.0)
    return {
        "photo": photo,
        "crop": [round(between(u, side / 2, 1 - side / 2), 4), round(between(u, side / 2, 1 - side / 2), 4), round(side, 4)],
        "mirror": u() < 0.5,
        "hue_shift": round(between(u, -0.08, 0.08), 4),
        "saturation": round(between(u, 0.6, 1.3), 4),
        "frame": ("rounded", "circle", "square")[min(2, int(u() * 3))],
        "scale": round(float(np.exp(between(u, np.log(0.8), np.log(1.25)))), 4),
    }


def look_sprite(look: dict, size_px: int, shared_dir: Path | None = None) -> np.ndarray:
    """(size_px, size_px, 4) uint8 RGBA sprite of a look (photo looks are read from ``shared_dir``)."""
    if "photo" in look:
        if shared_dir is None:
            raise ValueError(f"photo look {look['photo']!r} needs the shared data folder")
        return _photo_sprite(look, shared_dir / look["photo"], size_px)
    return _procedural_sprite(look, size_px)


# ---------------------------------------------------------------- body plans (normalised coordinates, y down)


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _box(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]]) + [cx, cy]


def _radial(n: int, radii: np.ndarray, phase: float) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radii * np.cos(a), radii * np.sin(a)], axis=1)


Shape = list[tuple[np.ndarray, int]]  # polygons (K, 2) with fill 255 (add) or 0 (cut), drawn in order


def _plan_shapes(look: dict) -> Shape:
    """The look's polygons in normalised coordinates (any extent; fitted to the sprite later)."""
    plan, k, a, b = look["plan"], int(look["parts"]), float(look["a"]), float(look["b"])
    rng = np.random.default_rng(look["shape_seed"])
    tau = 2 * np.pi
    if plan == "star":
        radii = np.tile([1.0, 0.3 + 0.3 * a], k) * np.repeat(1 - 0.3 * b * rng.random(k), 2)
        return [(_radial(2 * k, radii, -np.pi / 2), 255)]
    if plan == "polygon":
        return [(_radial(k, 1 - 0.35 * a * rng.random(k), tau * b / k), 255)]
    if plan == "cluster":
        centres = _radial(k, (0.3 + 0.4 * a) * (0.6 + 0.4 * rng.random(k)), rng.uniform(0, tau))
        return [(_ellipse(x, y, r, r), 255) for (x, y), r in zip(centres, (0.3 + 0.3 * b) * (0.7 + 0.3 * rng.random(k)))]
    if plan == "chain":
        xs = np.linspace(-1, 1, k)
        ys = (0.2 + 0.5 * a) * np.sin(np.pi * xs + rng.uniform(0, tau)) / 2
        radii = (2.2 / k + 0.2) * np.linspace(1.0, 1.0 - 0.5 * b, k)
        return [(_ellipse(x, y, r, r), 255) for x, y, r in zip(xs, ys, radii)]
    if plan == "ring":
        knobs = [(_ellipse(x, y, 0.12 + 0.15 * b, 0.12 + 0.15 * b), 255) for x, y in _radial(k, np.full(k, 0.95), rng.uniform(0, tau))]
        return [(_ellipse(0, 0, 1, 1), 255), *knobs, (_ellipse(0, 0, 0.3 + 0.35 * a, 0.3 + 0.35 * a), 0)]
    if plan == "flower":
        angles = rng.uniform(0, tau) + tau * np.arange(k) / k
        width = 0.12 + 0.2 * b
        petals = [(_ellipse(0.5 * np.cos(t), 0.5 * np.sin(t), 0.5, width, t), 255) for t in angles]
        return [*petals, (_ellipse(0, 0, 0.2 + 0.2 * a, 0.2 + 0.2 * a), 255)]
    if plan == "bug":
        h, leg = 0.35 + 0.25 * a, 0.3 + 0.4 * b
        legs = []
        for x in np.linspace(-0.5, 0.5, k):
            tilt = rng.uniform(-0.4, 0.4)
            legs += [(_box(x, side * (h + leg / 2 - 0.1), 0.08, leg, tilt * side), 255) for side in (-1, 1)]
        return [*legs, (_ellipse(0, 0, 0.8, h), 255), (_ellipse(0.85, 0, 0.25, 0.25), 255)]
    if plan == "fish":
        h, tail = 0.3 + 0.25 * a, 0.3 + 0.35 * b
        fins = [(_ellipse(rng.uniform(-0.3, 0.3), side * h, 0.25, 0.1, side * 0.5), 255) for side in (-1, 1, -1)[:k]]
        tail_poly = np.array([[-0.6, 0.0], [-0.6 - tail, -tail], [-0.6 - tail, tail]])
        return [*fins, (tail_poly, 255), (_ellipse(0, 0, 0.75, h), 255)]
    if plan == "tower":
        widths = np.linspace(1.0, 1.0 - 0.6 * a, k) * (1 - 0.3 * b * rng.random(k))
        hs = 2.0 / k
        return [(_box(rng.uniform(-0.1, 0.1), 1 - hs * (i + 0.5), w * 1.6, hs * 0.92, 0.0), 255) for i, w in enumerate(widths)]
    if plan == "gear":
        r, tooth = 0.7, 0.15 + 0.2 * a
        angles = tau * np.arange(k) / k
        teeth = [(_box((r + tooth / 2) * np.cos(t), (r + tooth / 2) * np.sin(t), tooth + 0.1, 1.6 * r / k + 0.08, t), 255) for t in angles]
        return [(_ellipse(0, 0, r, r), 255), *teeth, (_ellipse(0, 0, 0.1 + 0.3 * b, 0.1 + 0.3 * b), 0)]
    if plan == "spokes":
        width = 0.18 + 0.22 * a
        return [(_box(0, 0, 2 * (1 - 0.35 * b * rng.random()), width, np.pi * i / k + rng.uniform(-0.2, 0.2)), 255) for i in range(k)]
    if plan == "chevron":
        notch, thick = 0.3 + 0.4 * a, 0.3 + 0.4 * b
        shapes = []
        for i in range(k):
            y0 = -1 + 2 * i / k
            h = 2 / k
            shapes.append(
                (np.array([[0, y0], [1, y0 + h * thick], [1, y0 + h], [0, y0 + h * (1 - notch) + h * thick * notch], [-1, y0 + h], [-1, y0 + h * thick]]), 255)
            )
        return shapes
    if plan == "slab":
        w, h = 1.0, 1.0 / (1.3 + 1.2 * a)
        corner = 0.05 + 0.35 * b * h
        body = [(_box(0, 0, 2 * w, 2 * (h - corner), 0), 255), (_box(0, 0, 2 * (w - corner), 2 * h, 0), 255)]
        body += [(_ellipse(sx * (w - corner), sy * (h - corner), corner, corner), 255) for sx in (-1, 1) for sy in (-1, 1)]
        return body + [(_ellipse(x, rng.uniform(-0.3, 0.3) * h, 0.15 * h, 0.15 * h), 0) for x in np.linspace(-0.6, 0.6, k)]
    if plan == "pebble":
        t = np.linspace(0, tau, 64, endpoint=False)
        r = 1 + sum((0.04 + 0.12 * a) * rng.random() * np.cos(m * t + rng.uniform(0, tau)) for m in range(2, 2 + k))
        return [(np.stack([r * np.cos(t), r * np.sin(t) * (1 - 0.4 * b)], axis=1), 255)]
    if plan == "leaf":
        t = np.linspace(-1, 1, 33)
        half = (0.35 + 0.35 * a) * (1 - t**2)
        outline = np.concatenate([np.stack([t, -half], 1), np.stack([t[::-1], half[::-1]], 1)])
        notches = [(_ellipse(x, side * (0.35 + 0.35 * a) * (1 - x**2), 0.1, 0.1), 0) for x, side in zip(rng.uniform(-0.6, 0.6, k), rng.choice([-1, 1], k))]
        return [(outline, 255), (_box(1.0 + 0.2 * b, 0, 0.1 + 0.4 * b, 0.06, 0), 255), *notches]
    if plan == "crescent":
        bite = 0.6 + 0.3 * b
        dots = [(_ellipse(-0.55 + 0.1 * i, 0.2 * (i - 0.5), 0.08, 0.08), 0) for i in range(k)]
        return [(_ellipse(0, 0, 1, 1), 255), (_ellipse(0.3 + 0.4 * a, -0.1, bite, bite), 0), *dots]
    raise ValueError(f"unknown body plan {plan!r}")


def _texture(look: dict, n: int) -> np.ndarray:
    """(n, n, 3) float32 RGB in [0, 255]: the look's colour with its pattern."""
    base = np.asarray(look["color"], np.float32)
    dark, light = base * 0.45, base + (255.0 - base) * 0.55
    freq, theta = float(look["texture_freq"]), np.deg2rad(look["texture_angle_deg"])
    yy, xx = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / n - 0.5
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    kind = look["texture"]
    if kind == "stripes":
        t = np.floor(u * freq) % 2
        mix = (base, dark)
    elif kind == "checker":
        t = (np.floor(u * freq) + np.floor(v * freq)) % 2
        mix = (base, light)
    elif kind == "dots":
        t = (((u * freq) % 1 - 0.5) ** 2 + ((v * freq) % 1 - 0.5) ** 2 < 0.09).astype(np.float32)
        mix = (base, dark)
    elif kind == "rings":
        t = np.floor(np.sqrt(xx**2 + yy**2) * 2 * freq) % 2
        mix = (base, light)
    elif kind == "radial":
        t = np.clip(np.sqrt((u + 0.2) ** 2 + v**2) / 0.8, 0, 1)
        mix = (light, dark)
    elif kind == "noise":
        cells = max(2, int(round(freq)))
        small = np.random.default_rng(look["shape_seed"]).uniform(0, 255, (cells, cells)).astype(np.uint8)
        t = np.asarray(Image.fromarray(small).resize((n, n), Image.BICUBIC), np.float32) / 255
        mix = (dark, light)
    else:
        raise ValueError(f"unknown texture {kind!r}")
    t = t[..., None]
    return mix[0] * (1 - t) + mix[1] * t


def _procedural_sprite(look: dict, size_px: int) -> np.ndarray:
    """A textured body-plan shape with a dark outline, antialiased (2x supersampled)."""
    n = size_px * _SUPERSAMPLE
    shapes = _plan_shapes(look)
    pts = np.concatenate([p for p, fill in shapes if fill])
    centre = (pts.max(axis=0) + pts.min(axis=0)) / 2
    aspect = float(look["aspect"])
    half = np.abs((pts - centre) * [1.0, aspect]).max()
    to_px = lambda p: ((p - centre) * [1.0, aspect] / half * _FILL + 1) * n / 2  # noqa: E731
    mask = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(mask)
    for poly, fill in shapes:
        draw.polygon([tuple(q) for q in to_px(poly)], fill=fill)
    m = np.asarray(mask, np.float32) / 255
    # Erode at the sprite's own resolution (cheap), then bring the inner mask back up for the outline.
    small = mask.resize((size_px, size_px), Image.BILINEAR).filter(ImageFilter.MinFilter(2 * max(1, size_px // 40) + 1))
    inner = np.asarray(small.resize((n, n), Image.BILINEAR), np.float32) / 255
    outline = np.clip(m - inner, 0, 1)[..., None]
    rgb = _texture(look, n) * (1 - outline) + np.float32(25.0) * outline
    rgba = np.concatenate([rgb, m[..., None] * 255], axis=-1).clip(0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(rgba, "RGBA").resize((size_px, size_px), Image.LANCZOS))


def _photo_sprite(look: dict, path: Path, size_px: int) -> np.ndarray:
    """A square crop of the photo (mirrored, tinted) in a rounded-square, circle or square frame."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    cx, cy, side = look["crop"]
    s = side * min(w, h)
    x0 = min(max(0.0, cx * w - s / 2), w - s)
    y0 = min(max(0.0, cy * h - s / 2), h - s)
    n = size_px * _SUPERSAMPLE
    im = im.resize((n, n), Image.LANCZOS, box=(x0, y0, x0 + s, y0 + s))
    if look["mirror"]:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    if look["hue_shift"] or look["saturation"] != 1.0:
        hsv = np.asarray(im.convert("HSV"), np.float32)
        hsv[..., 0] = (hsv[..., 0] + 255 * look["hue_shift"]) % 255
        hsv[..., 1] = np.clip(hsv[..., 1] * look["saturation"], 0, 255)
        im = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
    mask = Image.new("L", (n, n), 0)
    pad = n * 0.04
    box = [pad, pad, n - pad, n - pad]
    radius = {"rounded": n * 0.18, "circle": n / 2, "square": n * 0.02}[look["frame"]]
    ImageDraw.Draw(mask).rounded_rectangle(box, radius=radius, fill=255)
    rgba = np.concatenate([np.asarray(im), np.asarray(mask)[..., None]], axis=-1)
    return np.asarray(Image.fromarray(rgba, "RGBA").resize((size_px, size_px), Image.LANCZOS))
