"""Looks and sounds of the synthetic world's categories (procedural, or real files from ../shared/data).

A look is an RGBA sprite: (D, D, 4) uint8, premultiplied-free (straight alpha).
A sound is either a procedural generator (a family + fixed parameters) or a
decoded real clip (n,) float32 mono at the world's sample rate.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

import avlearn

_SUPERSAMPLE = 4


def default_shared_dir() -> Path:
    """../shared/data beside the repository (the checkout's real-media folder)."""
    return Path(avlearn.__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class ProceduralLook:
    shape: str
    color: tuple[int, int, int]
    texture: str
    aspect: float = 1.0  # width / height of the shape's box


@dataclass(frozen=True)
class ProceduralSound:
    """A sound family with its fixed parameters (pitches in Hz, rates in Hz)."""

    family: str
    params: dict = field(default_factory=dict)


@dataclass
class Category:
    """One category of the world.

    Attributes:
        name: the label.
        sounding: True when objects of this category can be the sound source.
        look_source: "procedural" or the shared-data file it came from (relative to the shared dir).
        sound_source: "procedural", a ';'-joined list of files, or None for silent categories.
        sprite: (D, D, 4) uint8 RGBA at the world's sprite size (filled by :func:`build_categories`).
        sound: a ProceduralSound, a list of (n,) float32 clips at the world rate, or None.
    """

    name: str
    sounding: bool
    look_source: str
    sound_source: str | None
    look: ProceduralLook | Path
    sound: ProceduralSound | list | None
    sprite: np.ndarray | None = None

    def summary(self) -> dict:
        out = {"name": self.name, "sounding": self.sounding, "look": self.look_source, "sound": self.sound_source}
        if isinstance(self.look, ProceduralLook):
            out["look_params"] = {"shape": self.look.shape, "color": list(self.look.color), "texture": self.look.texture}
        if isinstance(self.sound, ProceduralSound):
            out["sound_params"] = {"family": self.sound.family, **self.sound.params}
        return out


# Sounding procedural categories: each with its own shape + colour + texture and its own spectrum.
PROCEDURAL_SOUNDING: list[tuple[str, ProceduralLook, ProceduralSound]] = [
    ("pluck", ProceduralLook("circle", (220, 40, 40), "stripes"), ProceduralSound("pluck", {"f0_hz": 220.0, "rate_hz": 3.0})),
    ("chord", ProceduralLook("square", (40, 80, 230), "checker"), ProceduralSound("chord", {"f0_hz": 660.0})),
    ("chirp", ProceduralLook("triangle", (245, 205, 30), "dots"), ProceduralSound("chirp", {"f_lo_hz": 900.0, "f_hi_hz": 3200.0, "rate_hz": 4.0})),
    ("engine", ProceduralLook("hexagon", (30, 150, 60), "rings"), ProceduralSound("noise_band", {"lo_hz": 80.0, "hi_hz": 400.0, "am_hz": 6.0})),
    ("hiss", ProceduralLook("diamond", (40, 205, 225), "noise"), ProceduralSound("noise_band", {"lo_hz": 4000.0, "hi_hz": 7000.0, "am_hz": 0.0})),
    ("siren", ProceduralLook("star", (225, 40, 205), "radial"), ProceduralSound("siren", {"lo_hz": 700.0, "hi_hz": 1400.0, "rate_hz": 0.7})),
    ("ticker", ProceduralLook("cross", (250, 135, 20), "stripes"), ProceduralSound("clicks", {"rate_hz": 9.0, "hp_hz": 2000.0})),
    ("buzzer", ProceduralLook("pentagon", (125, 50, 185), "checker"), ProceduralSound("buzz", {"f0_hz": 140.0, "am_hz": 12.0})),
    ("bell", ProceduralLook("ring", (190, 130, 40), "dots"), ProceduralSound("bell", {"f0_hz": 1100.0, "rate_hz": 1.3})),
    ("whistle", ProceduralLook("ellipse", (150, 235, 60), "stripes", 1.5), ProceduralSound("whistle", {"f0_hz": 2400.0, "vibrato_hz": 5.0})),
    ("drum", ProceduralLook("octagon", (0, 130, 135), "checker"), ProceduralSound("drum", {"f0_hz": 70.0, "rate_hz": 2.5})),
    ("sweep", ProceduralLook("arrow", (250, 150, 185), "radial"), ProceduralSound("chirp", {"f_lo_hz": 3000.0, "f_hi_hz": 500.0, "rate_hz": 1.5})),
]

# Categories that never sound: their own looks.
PROCEDURAL_SILENT: list[tuple[str, ProceduralLook]] = [
    ("block", ProceduralLook("square", (135, 135, 140), "stripes", 2.0)),
    ("pebble", ProceduralLook("ellipse", (115, 80, 50), "noise", 1.4)),
    ("leaf", ProceduralLook("diamond", (105, 120, 25), "stripes", 0.55)),
    ("cloud", ProceduralLook("cloud", (235, 235, 245), "radial")),
]

# Real photos used as silent looks when the shared folder is there (not cats: "cat" sounds).
SHARED_SILENT_PHOTOS = {
    "coffee": "image/scikit-image_coffee.png",
    "rocket": "image/scikit-image_rocket.jpg",
    "motorcycle": "image/scikit-image_motorcycle_left.png",
    "astronaut": "image/scikit-image_astronaut.png",
}


def _shared_pairs(shared_dir: Path) -> list[tuple[str, str, list[str]]]:
    """(name, image file, [audio files]) for classes that have both a photo and a sound in labels.csv.

    Pairs by AudioSet class id; the name is the first audio label of the class (e.g. "car_horn").
    """
    rows = list(csv.DictReader(open(shared_dir / "labels.csv", newline="")))
    images = {r["audioset_mid"]: r for r in rows if r["modality"] == "image" and r["audioset_mid"]}
    audio: dict[str, list[dict]] = {}
    for r in rows:
        if r["modality"] == "audio" and r["audioset_mid"]:
            audio.setdefault(r["audioset_mid"], []).append(r)
    pairs = []
    for mid, img in images.items():
        if mid not in audio or not (shared_dir / img["path"]).is_file():
            continue
        files = [a["path"] for a in audio[mid] if (shared_dir / a["path"]).is_file()]
        # One consistent sound per class: prefer clips from the photo's own collection (AudioCLIP / ESC-50).
        collection = img["path"].split("/")[-1].split("_")[0]
        files = [f for f in files if f.split("/")[-1].startswith(collection)] or files
        if files:
            name = audio[mid][0]["label"].split(" ")[0]
            pairs.append((name, img["path"], files))
    return pairs


def available_categories(shared_dir: Path | None) -> tuple[list[Category], list[Category]]:
    """All sounding and silent categories (no sprites or decoded audio yet), real pairs first."""
    sounding: list[Category] = []
    silent: list[Category] = []
    if shared_dir is not None:
        for name, img, files in _shared_pairs(shared_dir):
            sounding.append(Category(name, True, img, ";".join(files), shared_dir / img, [shared_dir / f for f in files]))
    taken = {c.name for c in sounding}
    for name, look, sound in PROCEDURAL_SOUNDING:
        if name not in taken:
            sounding.append(Category(name, True, "procedural", "procedural", look, sound))
    for name, look in PROCEDURAL_SILENT:
        silent.append(Category(name, False, "procedural", None, look, None))
    if shared_dir is not None:
        for name, rel in SHARED_SILENT_PHOTOS.items():
            if (shared_dir / rel).is_file():
                silent.append(Category(name, False, rel, None, shared_dir / rel, None))
    return sounding, silent


def load_assets(categories: list[Category], sprite_px: int, sample_rate_hz: int) -> None:
    """Render every category's sprite and decode its real sounds, in place."""
    from avlearn.media import read_audio

    for c in categories:
        c.sprite = photo_sprite(c.look, sprite_px) if isinstance(c.look, Path) else procedural_sprite(c.look, sprite_px)
        if isinstance(c.sound, list) and c.sound and isinstance(c.sound[0], Path):
            clips = []
            for p in c.sound:
                wave = read_audio(p, sample_rate_hz=sample_rate_hz)
                clip = _trim(wave, sample_rate_hz)
                if clip.size >= sample_rate_hz // 10:
                    clips.append(clip)
            if not clips:
                raise ValueError(f"no usable audio for category {c.name!r}: {c.sound_source}")
            c.sound = clips


def _trim(wave: np.ndarray, sample_rate_hz: int, *, max_gap_sec: float = 0.1) -> np.ndarray:
    """Keep the active parts of a clip (20 ms frames above 3 % of the peak), shorten silent gaps to
    ``max_gap_sec``, and normalise to RMS 1, so that every excerpt carries the category's sound."""
    hop = max(1, sample_rate_hz // 50)
    n = wave.size // hop
    if n == 0:
        return np.zeros(0, np.float32)
    frames = wave[: n * hop].astype(np.float64).reshape(n, hop)
    env = np.abs(frames).max(axis=1)
    active = env > 0.03 * env.max()
    if not active.any():
        return np.zeros(0, np.float32)
    keep = active.copy()
    max_gap = max(1, int(round(max_gap_sec * 50)))
    run = 0
    for i in range(n):  # frames of a silent run: keep the first max_gap of them
        run = 0 if active[i] else run + 1
        keep[i] = active[i] or run <= max_gap
    first, last = np.nonzero(active)[0][[0, -1]]
    keep[:first] = False
    keep[last + 1 :] = False
    clip = frames[keep].reshape(-1)
    clip -= clip.mean()
    rms = np.sqrt(np.mean(clip**2)) + 1e-9
    return (clip / rms).astype(np.float32)


# ---------------------------------------------------------------- looks


def _shape_polygon(shape: str, cx: float, cy: float, rx: float, ry: float) -> list[tuple[float, float]] | None:
    def regular(n: int, phase: float, radii: list[float] | None = None) -> list[tuple[float, float]]:
        pts = []
        count = n if radii is None else n * len(radii)
        for k in range(count):
            a = phase + 2 * np.pi * k / count
            r = 1.0 if radii is None else radii[k % len(radii)]
            pts.append((cx + r * rx * np.cos(a), cy + r * ry * np.sin(a)))
        return pts

    if shape == "triangle":
        return regular(3, -np.pi / 2)
    if shape == "diamond":
        return regular(4, -np.pi / 2)
    if shape == "pentagon":
        return regular(5, -np.pi / 2)
    if shape == "hexagon":
        return regular(6, 0.0)
    if shape == "octagon":
        return regular(8, np.pi / 8)
    if shape == "star":
        return regular(5, -np.pi / 2, [1.0, 0.45])
    if shape == "cross":
        a, b = 0.33, 1.0
        pts = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
        return [(cx + x * rx, cy + y * ry) for x, y in pts]
    if shape == "arrow":
        pts = [(-1.0, -0.3), (0.2, -0.3), (0.2, -0.75), (1.0, 0.0), (0.2, 0.75), (0.2, 0.3), (-1.0, 0.3)]
        return [(cx + x * rx, cy + y * ry) for x, y in pts]
    return None


def _texture(kind: str, color: tuple[int, int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n, 3) float32 RGB in [0, 255]: the category's colour with its pattern."""
    base = np.asarray(color, np.float32)
    dark = base * 0.45
    light = base + (255.0 - base) * 0.55
    yy, xx = (np.mgrid[0:n, 0:n].astype(np.float32) + 0.5) / n
    if kind == "stripes":
        t = (np.floor((xx + 0.5 * yy) * 6) % 2)[..., None]
        return base * (1 - t) + dark * t
    if kind == "checker":
        t = ((np.floor(xx * 5) + np.floor(yy * 5)) % 2)[..., None]
        return base * (1 - t) + light * t
    if kind == "dots":
        fx, fy = (xx * 5) % 1 - 0.5, (yy * 5) % 1 - 0.5
        t = ((fx**2 + fy**2) < 0.09).astype(np.float32)[..., None]
        return base * (1 - t) + dark * t
    if kind == "rings":
        r = np.sqrt((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
        t = (np.floor(r * 10) % 2)[..., None]
        return base * (1 - t) + light * t
    if kind == "radial":
        r = np.clip(np.sqrt((xx - 0.35) ** 2 + (yy - 0.35) ** 2) / 0.8, 0, 1)[..., None]
        return light * (1 - r) + dark * r
    if kind == "noise":
        small = rng.uniform(0, 1, (8, 8)).astype(np.float32)
        t = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((n, n), Image.BICUBIC), np.float32)[..., None] / 255
        return dark * (1 - t) + light * t
    return np.broadcast_to(base, (n, n, 3)).copy()


def procedural_sprite(look: ProceduralLook, size_px: int) -> np.ndarray:
    """(size_px, size_px, 4) uint8 RGBA: a textured shape with a dark outline, antialiased."""
    n = size_px * _SUPERSAMPLE
    mask = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(mask)
    c = n / 2
    r = n * 0.47
    rx, ry = (r, r / look.aspect) if look.aspect >= 1 else (r * look.aspect, r)
    poly = _shape_polygon(look.shape, c, c, rx, ry)
    if poly is not None:
        draw.polygon(poly, fill=255)
    elif look.shape == "square":
        draw.rectangle([c - rx * 0.85, c - ry * 0.85, c + rx * 0.85, c + ry * 0.85], fill=255)
    elif look.shape == "ring":
        draw.ellipse([c - rx, c - ry, c + rx, c + ry], fill=255)
        draw.ellipse([c - rx * 0.45, c - ry * 0.45, c + rx * 0.45, c + ry * 0.45], fill=0)
    elif look.shape == "cloud":
        for dx, dy, rr in [(-0.45, 0.15, 0.5), (0.45, 0.15, 0.5), (0.0, -0.2, 0.6), (0.0, 0.3, 0.45)]:
            x, y, q = c + dx * r, c + dy * r, rr * r
            draw.ellipse([x - q, y - q, x + q, y + q], fill=255)
    else:  # circle / ellipse
        draw.ellipse([c - rx, c - ry, c + rx, c + ry], fill=255)
    rng = np.random.default_rng(sum(look.color) * 7 + len(look.shape))
    tex = _texture(look.texture, look.color, n, rng)
    m = np.asarray(mask, np.float32) / 255
    # Erode at the sprite's own resolution (cheap), then bring the inner mask back up for the outline.
    small = mask.resize((size_px, size_px), Image.BILINEAR).filter(ImageFilter.MinFilter(2 * max(1, size_px // 40) + 1))
    inner = np.asarray(small.resize((n, n), Image.BILINEAR), np.float32) / 255
    outline = np.clip(m - inner, 0, 1)[..., None]
    rgb = tex * (1 - outline) + np.float32(25.0) * outline
    rgba = np.concatenate([rgb, m[..., None] * 255], axis=-1).clip(0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(rgba, "RGBA").resize((size_px, size_px), Image.LANCZOS))


def photo_sprite(path: Path, size_px: int) -> np.ndarray:
    """(size_px, size_px, 4) uint8 RGBA: the photo's centre square in a rounded-square frame."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    n = size_px * _SUPERSAMPLE
    im = im.resize((n, n), Image.LANCZOS)
    mask = Image.new("L", (n, n), 0)
    pad = n * 0.04
    ImageDraw.Draw(mask).rounded_rectangle([pad, pad, n - pad, n - pad], radius=n * 0.18, fill=255)
    rgba = np.concatenate([np.asarray(im), np.asarray(mask)[..., None]], axis=-1)
    return np.asarray(Image.fromarray(rgba, "RGBA").resize((size_px, size_px), Image.LANCZOS))


# ---------------------------------------------------------------- sounds


def _sine_phase(freq_hz: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    return 2 * np.pi * np.cumsum(freq_hz) / sample_rate_hz


def _band_noise(rng: np.random.Generator, n: int, lo_hz: float, hi_hz: float, sample_rate_hz: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sample_rate_hz)
    spec[(f < lo_hz) | (f > hi_hz)] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.sqrt(np.mean(out**2)) + 1e-9)


def _pulses(n: int, sample_rate_hz: int, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Onset sample indices of a roughly periodic pulse train (5 % jitter)."""
    period = sample_rate_hz / rate_hz
    t = rng.uniform(0, period)
    out = []
    while t < n:
        out.append(int(t))
        t += period * rng.uniform(0.95, 1.05)
    return np.asarray(out, int)


def _add_at(out: np.ndarray, onsets: np.ndarray, grain: np.ndarray) -> None:
    for s in onsets:
        e = min(out.size, s + grain.size)
        out[s:e] += grain[: e - s]


def procedural_wave(sound: ProceduralSound, n: int, sample_rate_hz: int, rng: np.random.Generator, pitch: float = 1.0) -> np.ndarray:
    """(n,) float64 at RMS ~1: a continuous stretch of the category's sound, pitch-scaled by ``pitch``."""
    p = sound.params
    sr = sample_rate_hz
    t = np.arange(n) / sr
    nyq = 0.45 * sr
    fam = sound.family
    if fam == "pluck":
        f0 = p["f0_hz"] * pitch
        g = np.arange(int(0.5 * sr)) / sr
        grain = sum(np.sin(2 * np.pi * k * f0 * g) / k for k in (1, 2, 3, 4) if k * f0 < nyq) * np.exp(-g * 7)
        out = np.zeros(n)
        _add_at(out, _pulses(n, sr, p["rate_hz"] * rng.uniform(0.85, 1.15), rng), grain)
    elif fam == "chord":
        f0 = p["f0_hz"] * pitch
        out = sum(np.sin(2 * np.pi * f0 * r * t + rng.uniform(0, 6.3)) for r in (1.0, 1.25, 1.5, 2.0) if f0 * r < nyq)
    elif fam == "chirp":
        lo, hi = p["f_lo_hz"] * pitch, min(p["f_hi_hz"] * pitch, nyq)
        dur = 1.0 / p["rate_hz"]
        m = int(dur * sr * 0.8)
        g = np.arange(m) / sr
        freq = lo * (hi / lo) ** (g / (m / sr))
        grain = np.sin(_sine_phase(freq, sr)) * np.hanning(m)
        out = np.zeros(n)
        _add_at(out, _pulses(n, sr, p["rate_hz"], rng), grain)
    elif fam == "noise_band":
        lo, hi = p["lo_hz"] * pitch, min(p["hi_hz"] * pitch, nyq)
        out = _band_noise(rng, n, lo, hi, sr)
        if p.get("am_hz"):
            out *= 0.6 + 0.4 * np.sin(2 * np.pi * p["am_hz"] * t + rng.uniform(0, 6.3))
    elif fam == "siren":
        lo, hi = p["lo_hz"] * pitch, p["hi_hz"] * pitch
        freq = lo + (hi - lo) * 0.5 * (1 + np.sin(2 * np.pi * p["rate_hz"] * t + rng.uniform(0, 6.3)))
        out = np.sin(_sine_phase(freq, sr)) + 0.3 * np.sin(2 * _sine_phase(freq, sr))
    elif fam == "clicks":
        grain = np.exp(-np.arange(int(0.004 * sr)) / (0.0008 * sr))
        out = np.zeros(n)
        _add_at(out, _pulses(n, sr, p["rate_hz"] * pitch, rng), grain)
        out = _highpass(out, p["hp_hz"], sr)
    elif fam == "buzz":
        f0 = p["f0_hz"] * pitch
        out = np.sign(np.sin(2 * np.pi * f0 * t)) * (0.55 + 0.45 * np.sin(2 * np.pi * p["am_hz"] * t))
        out = _lowpass(out, 3000.0, sr)
    elif fam == "bell":
        f0 = p["f0_hz"] * pitch
        g = np.arange(int(0.9 * sr)) / sr
        grain = sum(a * np.sin(2 * np.pi * f0 * r * g) for r, a in ((1.0, 1.0), (2.76, 0.6), (5.40, 0.3)) if f0 * r < nyq) * np.exp(-g * 4)
        out = np.zeros(n)
        _add_at(out, _pulses(n, sr, p["rate_hz"], rng), grain)
    elif fam == "whistle":
        f0 = p["f0_hz"] * pitch
        freq = f0 * (1 + 0.02 * np.sin(2 * np.pi * p["vibrato_hz"] * t))
        out = np.sin(_sine_phase(freq, sr))
    elif fam == "drum":
        f0 = p["f0_hz"] * pitch
        g = np.arange(int(0.35 * sr)) / sr
        grain = np.sin(2 * np.pi * f0 * g * (1 + 0.5 * np.exp(-g * 30))) * np.exp(-g * 12)
        grain[: int(0.01 * sr)] += rng.standard_normal(int(0.01 * sr)) * 0.5
        out = np.zeros(n)
        _add_at(out, _pulses(n, sr, p["rate_hz"], rng), grain)
    else:
        raise ValueError(f"unknown sound family {fam!r}")
    out = np.asarray(out, np.float64)
    return out / (np.sqrt(np.mean(out**2)) + 1e-9)


def clip_wave(clips: list[np.ndarray], n: int, rng: np.random.Generator, rate: float = 1.0) -> np.ndarray:
    """(n,) float64: a random excerpt of one of ``clips`` (looped), resampled by ``rate`` (pitch and speed)."""
    clip = clips[int(rng.integers(len(clips)))].astype(np.float64)
    need = int(np.ceil(n * rate)) + 2
    start = int(rng.integers(clip.size))
    reps = int(np.ceil((start + need) / clip.size))
    src = np.tile(clip, reps)[start : start + need]
    return np.interp(np.arange(n) * rate, np.arange(src.size), src)


def _lowpass(x: np.ndarray, cut_hz: float, sample_rate_hz: int) -> np.ndarray:
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(x.size, 1 / sample_rate_hz) > cut_hz] = 0
    return np.fft.irfft(spec, x.size)


def _highpass(x: np.ndarray, cut_hz: float, sample_rate_hz: int) -> np.ndarray:
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(x.size, 1 / sample_rate_hz) < cut_hz] = 0
    return np.fft.irfft(spec, x.size)
