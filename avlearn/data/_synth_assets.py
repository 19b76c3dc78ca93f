"""Categories of the synthetic world as families of instances (procedural, or grown from real files in ../shared/data).

A category is a family: a look family (body plan, hue range, textures; or a real photo)
and, when it sounds, a sound family (generator kind and ranges; or real clips). Its
instances draw their own look and sound parameters from the family (see
``_synth_looks`` and ``_synth_sounds``). With one instance per category, that instance is
the family's central member (every drawn number at the middle of its range; a real
family's photo and first clip as they are): one template per category.

A real photo + sound pair (paired by AudioSet class) is instance 0 of its own family;
the family's other instances are derived from it (photo crop, mirror, tint and frame;
clip playback rate over 1.2 octaves, spectral tilt and envelope), so a real pair is never
the only instance of its category. Real photos without a sound are silent families grown
the same way.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import avlearn
from avlearn.data._synth_looks import TEXTURES, LookFamily, draw_look, draw_photo_look
from avlearn.data._synth_sounds import SoundFamily, draw_clip_sound, draw_sound, trim_clip

_INSTANCE_STREAM = 5


def default_shared_dir() -> Path:
    """../shared/data beside the repository (the checkout's real-media folder)."""
    return Path(avlearn.__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Instance:
    """One member of a category: ``id`` ("<category>/<index>"), JSON-ready look and sound parameters (sound None when silent)."""

    id: str
    look: dict
    sound: dict | None


@dataclass
class Category:
    """One category (family) of the world.

    Attributes:
        name: the label.
        sounding: True when objects of this category can be the sound source.
        look_source: "procedural" or the shared-data photo it grows from (relative to the shared dir).
        sound_source: "procedural", a ';'-joined list of clip files, or None for silent categories.
        look: the look family, or the photo's path.
        sound: the sound family, the clip paths, or None.
        instances: filled by :func:`make_instances`.
        clips: the decoded real clips, (n,) float32 at the world rate (filled by :func:`load_clips`).
    """

    name: str
    sounding: bool
    look_source: str
    sound_source: str | None
    look: LookFamily | Path
    sound: SoundFamily | list[Path] | None
    instances: list[Instance] = field(default_factory=list)
    clips: list[np.ndarray] | None = None

    def summary(self) -> dict:
        out: dict = {"name": self.name, "sounding": self.sounding, "look": self.look_source, "sound": self.sound_source}
        if isinstance(self.look, LookFamily):
            out["look_family"] = {"plan": self.look.plan, "hue": self.look.hue, "hue_spread": self.look.hue_spread, "textures": list(self.look.textures)}
        if isinstance(self.sound, SoundFamily):
            out["sound_family"] = {"kind": self.sound.kind, "pitch_hz": list(self.sound.pitch_hz), "rate_hz": list(self.sound.rate_hz)}
        out["instances"] = [{"id": i.id, "look": i.look, "sound": i.sound} for i in self.instances]
        return out


def _fam(
    plan: str, hue: float, textures: tuple[str, str], kind: str, pitch_hz: tuple[float, float], rate_hz: tuple[float, float]
) -> tuple[LookFamily, SoundFamily]:
    return LookFamily(plan, hue, textures), SoundFamily(kind, pitch_hz, rate_hz)


# Sounding procedural families: a body plan, a hue range and a sound character each; pitch ranges span >= 1.3 octaves.
PROCEDURAL_SOUNDING: list[tuple[str, tuple[LookFamily, SoundFamily]]] = [
    ("pluck", _fam("star", 0.00, ("stripes", "dots"), "pluck", (110.0, 330.0), (1.5, 5.0))),
    ("chord", _fam("polygon", 0.62, ("checker", "rings"), "chord", (260.0, 660.0), (2.0, 7.0))),
    ("chirp", _fam("chevron", 0.15, ("dots", "stripes"), "chirp", (600.0, 1500.0), (2.0, 6.0))),
    ("engine", _fam("gear", 0.33, ("rings", "noise"), "noise_low", (100.0, 300.0), (4.0, 14.0))),
    ("hiss", _fam("cluster", 0.50, ("noise", "dots"), "noise_high", (2500.0, 6000.0), (0.2, 1.5))),
    ("siren", _fam("spokes", 0.87, ("radial", "stripes"), "siren", (450.0, 1100.0), (0.3, 1.5))),
    ("ticker", _fam("bug", 0.08, ("stripes", "checker"), "clicks", (1200.0, 3500.0), (5.0, 16.0))),
    ("buzzer", _fam("tower", 0.75, ("checker", "stripes"), "buzz", (80.0, 240.0), (6.0, 20.0))),
    ("bell", _fam("ring", 0.12, ("dots", "radial"), "bell", (300.0, 900.0), (1.0, 3.0))),
    ("whistle", _fam("fish", 0.25, ("stripes", "radial"), "whistle", (1400.0, 3600.0), (3.0, 8.0))),
    ("drum", _fam("flower", 0.45, ("checker", "rings"), "drum", (50.0, 150.0), (1.5, 4.0))),
    ("sweep", _fam("chain", 0.95, ("radial", "dots"), "sweep", (500.0, 1200.0), (0.8, 2.5))),
]

# Families that never sound: their own body plans, any hue (hue_spread 0.5), any texture.
PROCEDURAL_SILENT: list[tuple[str, LookFamily]] = [
    ("block", LookFamily("slab", 0.0, TEXTURES, 0.5)),
    ("pebble", LookFamily("pebble", 0.0, TEXTURES, 0.5)),
    ("leaf", LookFamily("leaf", 0.0, TEXTURES, 0.5)),
    ("moon", LookFamily("crescent", 0.0, TEXTURES, 0.5)),
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
    """All sounding and silent categories (no instances or decoded audio yet), real pairs first."""
    sounding: list[Category] = []
    silent: list[Category] = []
    if shared_dir is not None:
        for name, img, files in _shared_pairs(shared_dir):
            sounding.append(Category(name, True, img, ";".join(files), shared_dir / img, [shared_dir / f for f in files]))
    taken = {c.name for c in sounding}
    for name, (look, sound) in PROCEDURAL_SOUNDING:
        if name not in taken:
            sounding.append(Category(name, True, "procedural", "procedural", look, sound))
    for name, look in PROCEDURAL_SILENT:
        silent.append(Category(name, False, "procedural", None, look, None))
    if shared_dir is not None:
        for name, rel in SHARED_SILENT_PHOTOS.items():
            if (shared_dir / rel).is_file():
                silent.append(Category(name, False, rel, None, shared_dir / rel, None))
    return sounding, silent


def make_instances(category: Category, count: int, seed: int) -> None:
    """Draw ``count`` instances of ``category`` in place (a function of seed, the category's name and the index).

    Pitches (pitch_hz, or a clip's rate) are stratified: the instances split the family's range into
    ``count`` equal parts (in log frequency) and each draws within its own part, in a seeded order.
    """
    key = zlib.crc32(category.name.encode())
    order = np.random.default_rng([seed, _INSTANCE_STREAM, key]).permutation(count)
    out = []
    for k in range(count):
        rng = np.random.default_rng([seed, _INSTANCE_STREAM, key, k + 1])
        central = count == 1
        u = (lambda: 0.5) if central else rng.random
        pitch_u = 0.5 if central else (order[k] + rng.random()) / count
        if isinstance(category.look, LookFamily):
            look = draw_look(category.look, u, key if central else int(rng.integers(2**31)))
        else:
            look = draw_photo_look(category.look_source, u, original=central or k == 0)
        sound = None
        if isinstance(category.sound, SoundFamily):
            sound = draw_sound(category.sound, u, pitch_u)
        elif category.sound is not None:
            sound = draw_clip_sound(len(category.sound), u, pitch_u, original=central or k == 0)
        out.append(Instance(f"{category.name}/{k:02d}", look, sound))
    category.instances = out


def load_clips(categories: list[Category], sample_rate_hz: int) -> None:
    """Decode, trim and normalise every real category's clips at ``sample_rate_hz``, in place.

    Raises:
        ValueError: when a category has no usable audio.
    """
    from avlearn.media import read_audio

    for c in categories:
        if not isinstance(c.sound, list):
            continue
        clips = []
        for p in c.sound:
            clip = trim_clip(read_audio(p, sample_rate_hz=sample_rate_hz), sample_rate_hz)
            if clip.size >= sample_rate_hz // 10:
                clips.append(clip)
        if not clips:
            raise ValueError(f"no usable audio for category {c.name!r}: {c.sound_source}")
        c.clips = clips
