"""Sounds of the synthetic worlds: a family's generator and ranges -> an instance's parameters -> a waveform.

A sound family fixes its generator ``kind`` (the family's character: plucked harmonics,
noise bands, chirps, clicks, ...) and the ranges of pitch and event rate its members draw
from; each instance also draws its timbre (``tilt``: harmonic weights k**-tilt, or the
noise colour), envelope (``attack_sec``, ``decay_sec``) and a kind-specific ``shape`` in
[0, 1] (chord type, sweep span, vibrato depth, duty cycle, band width, ...). Real clips
give clip sounds, whose derived instances differ in playback rate (pitch and speed),
spectral tilt and envelope.

Sound parameters are JSON-ready dicts; waves are (n,) float64 at RMS ~1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avlearn.data._synth_looks import Uniform, between

KINDS = ("pluck", "chord", "chirp", "sweep", "noise_low", "noise_high", "siren", "clicks", "buzz", "bell", "whistle", "drum")


@dataclass(frozen=True)
class SoundFamily:
    """How a family sounds: its generator ``kind`` and the ranges (Hz) its members draw pitch and event rate from."""

    kind: str
    pitch_hz: tuple[float, float]
    rate_hz: tuple[float, float]


def _log_between(u: float, lo: float, hi: float) -> float:
    return float(np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * u))


def draw_sound(family: SoundFamily, u: Uniform, pitch_u: float) -> dict:
    """JSON-ready parameters of one member of ``family``; ``pitch_u`` in [0, 1) places its pitch in the range."""
    return {
        "kind": family.kind,
        "pitch_hz": round(_log_between(pitch_u, *family.pitch_hz), 2),
        "rate_hz": round(_log_between(u(), *family.rate_hz), 3),
        "tilt": round(between(u, 0.4, 2.0), 3),
        "attack_sec": round(_log_between(u(), 0.003, 0.06), 4),
        "decay_sec": round(_log_between(u(), 0.08, 0.6), 4),
        "shape": round(u(), 4),
    }


def draw_clip_sound(clip_count: int, u: Uniform, rate_u: float, *, original: bool) -> dict:
    """Parameters of a sound derived from one of ``clip_count`` real clips (``original``: the first clip as recorded).

    ``rate`` (playback rate: pitch and speed) spans 2**-0.6 .. 2**0.6 (1.2 octaves) as ``rate_u`` spans [0, 1).
    """
    if original:
        return {"kind": "clip", "clip": 0, "rate": 1.0, "tilt": 0.0, "attack_sec": 0.015, "decay_sec": 0.015}
    return {
        "kind": "clip",
        "clip": min(clip_count - 1, int(u() * clip_count)),
        "rate": round(2.0 ** (1.2 * rate_u - 0.6), 4),
        "tilt": round(between(u, -1.0, 1.0), 3),
        "attack_sec": round(_log_between(u(), 0.003, 0.1), 4),
        "decay_sec": round(_log_between(u(), 0.015, 0.3), 4),
    }


def sound_pitch(sound: dict) -> float:
    """The parameter that sets a sound's pitch: ``pitch_hz``, or a clip's playback ``rate``."""
    return float(sound["rate"] if sound["kind"] == "clip" else sound["pitch_hz"])


# ---------------------------------------------------------------- waveforms


def _envelope(m: int, sample_rate_hz: int, attack_sec: float, decay_sec: float) -> np.ndarray:
    """(m,) linear attack then exponential decay (time constant ``decay_sec``)."""
    t = np.arange(m) / sample_rate_hz
    return np.minimum(1.0, t / max(attack_sec, 1e-4)) * np.exp(-t / decay_sec)


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


def _harmonics(phase: np.ndarray, f0_hz: float, tilt: float, count: int, nyq_hz: float) -> np.ndarray:
    """Sum of harmonics k = 1..count below ``nyq_hz`` of a fundamental with phase ``phase`` (radians), weights k**-tilt."""
    return sum(np.sin(k * phase) * k**-tilt for k in range(1, count + 1) if k * f0_hz < nyq_hz)


def _shaped_noise(rng: np.random.Generator, n: int, lo_hz: float, hi_hz: float, tilt: float, sample_rate_hz: int) -> np.ndarray:
    """(n,) noise band-limited to [lo_hz, hi_hz] with power ~ f**-tilt inside the band (the noise colour)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sample_rate_hz)
    band = (f >= lo_hz) & (f <= hi_hz)
    spec[~band] = 0
    spec[band] *= (f[band] / lo_hz) ** (-tilt / 2)
    return np.fft.irfft(spec, n)


def _filter_tilt(x: np.ndarray, tilt: float, sample_rate_hz: int, *, lo_hz: float = 0.0, hi_hz: float | None = None) -> np.ndarray:
    """``x`` with its spectrum multiplied by (f / 1 kHz)**(-tilt / 2), zero outside [lo_hz, hi_hz]."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1 / sample_rate_hz)
    spec *= (np.maximum(f, 50.0) / 1000.0) ** (-tilt / 2)
    spec[(f < lo_hz) | (f > (hi_hz if hi_hz is not None else f[-1]))] = 0
    return np.fft.irfft(spec, x.size)


def _sweeps(n: int, sr: int, p: dict, f0: float, rng: np.random.Generator, *, rising: bool) -> np.ndarray:
    """Repeated exponential sweeps over (2 + 4 * shape)x in frequency, one per event at ``rate_hz``."""
    hi = min(f0 * (2.0 + 4.0 * p["shape"]), 0.45 * sr)
    m = int(0.7 * sr / p["rate_hz"])
    g = np.arange(m) / m
    freq = f0 * (hi / f0) ** (g if rising else 1 - g)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    grain = (np.sin(phase) + 0.5 ** p["tilt"] * np.sin(2 * phase)) * np.minimum(1.0, g * m / sr / p["attack_sec"]) * np.hanning(m) ** 0.5
    out = np.zeros(n)
    _add_at(out, _pulses(n, sr, p["rate_hz"], rng), grain)
    return out


def procedural_wave(p: dict, n: int, sample_rate_hz: int, rng: np.random.Generator, pitch: float = 1.0) -> np.ndarray:
    """(n,) float64 at RMS ~1: a continuous stretch of a procedural sound, its pitch scaled by ``pitch``."""
    sr = sample_rate_hz
    t = np.arange(n) / sr
    nyq = 0.45 * sr
    f0 = p["pitch_hz"] * pitch
    kind, rate, tilt, shape = p["kind"], p["rate_hz"], p["tilt"], p["shape"]
    if kind == "pluck":  # decaying harmonic grains
        m = int(min(5 * p["decay_sec"], 2.0) * sr)
        grain = _harmonics(2 * np.pi * f0 * np.arange(m) / sr, f0, tilt, 8, nyq) * _envelope(m, sr, p["attack_sec"], p["decay_sec"])
        out = np.zeros(n)
        _add_at(out, _pulses(n, sr, rate, rng), grain)
    elif kind == "chord":  # a sustained triad with tremolo; shape picks the chord
        ratios = [(1.0, 1.26, 1.5), (1.0, 1.19, 1.5), (1.0, 1.335, 1.5), (1.0, 1.5, 2.0)][min(3, int(shape * 4))]
        out = sum(_harmonics(2 * np.pi * f0 * r * t + rng.uniform(0, 6.3), f0 * r, tilt, 3, nyq) for r in ratios)
        out *= 1.0 - 0.35 * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t))
    elif kind in ("chirp", "sweep"):
        out = _sweeps(n, sr, p, f0, rng, rising=kind == "chirp")
    elif kind in ("noise_low", "noise_high"):  # a noise band (width 0.7-2 octaves, coloured by tilt), amplitude-modulated
        lo, hi = f0 * 2 ** -(0.35 + 0.65 * shape), min(f0 * 2 ** (0.35 + 0.65 * shape), nyq)
        out = _shaped_noise(rng, n, lo, hi, tilt, sr)
        depth = 0.6 if kind == "noise_low" else 0.3
        out *= 1.0 - depth * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3)))
    elif kind == "siren":  # a harmonic tone gliding up and down over (1.3 + 0.9 * shape)x
        hi = f0 * (1.3 + 0.9 * shape)
        freq = f0 + (hi - f0) * 0.5 * (1 + np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3)))
        out = _harmonics(2 * np.pi * np.cumsum(freq) / sr, hi, tilt, 3, nyq)
    elif kind == "clicks":  # short resonant clicks at the pitch, high-passed
        m = int(0.03 * sr)
        g = np.arange(m) / sr
        grain = np.sin(2 * np.pi * f0 * g) * np.exp(-g / (0.0008 + 0.004 * shape))
        out = np.zeros(n)
        _add_at(out, _pulses(n, sr, rate, rng), grain)
        out = _filter_tilt(out, tilt - 1.0, sr, lo_hz=0.5 * f0)
    elif kind == "buzz":  # a pulse wave (duty 0.1-0.5), low-passed, amplitude-modulated
        duty = 0.1 + 0.4 * shape
        out = np.where((f0 * t) % 1.0 < duty, 1.0, -duty / (1 - duty)) * (0.55 + 0.45 * np.sin(2 * np.pi * rate * t))
        out = _filter_tilt(out, tilt, sr, hi_hz=min(f0 * 30, nyq))
    elif kind == "bell":  # inharmonic partials (ratios stretched by shape; weights k**(-tilt / 2)) with a long decay
        m = int(min(4 * p["decay_sec"] + 0.3, 2.5) * sr)
        g = np.arange(m) / sr
        ratios = np.array([1.0, 2.76, 5.40, 8.93]) ** (0.95 + 0.1 * shape)
        grain = sum(k ** (-tilt / 2) * np.sin(2 * np.pi * f0 * r * g) for k, r in enumerate(ratios, 1) if f0 * r < nyq)
        grain = grain * _envelope(m, sr, p["attack_sec"], 2.5 * p["decay_sec"])
        out = np.zeros(n)
        _add_at(out, _pulses(n, sr, rate, rng), grain)
    elif kind == "whistle":  # a near-pure tone with vibrato (depth 0.5-3 %) and a little breath
        freq = f0 * (1 + (0.005 + 0.025 * shape) * np.sin(2 * np.pi * rate * t))
        out = np.sin(2 * np.pi * np.cumsum(freq) / sr) + 0.15 * 0.5**tilt * np.sin(4 * np.pi * np.cumsum(freq) / sr)
        breath = _shaped_noise(rng, n, 0.8 * f0, min(1.25 * f0, nyq), 0.0, sr)
        out += 0.1 * breath / (np.sqrt(np.mean(breath**2)) + 1e-9)
    elif kind == "drum":  # a pitched thump with a downward glide and a noise attack
        m = int(min(2 * p["decay_sec"], 0.8) * sr)
        g = np.arange(m) / sr
        grain = np.sin(2 * np.pi * f0 * g * (1 + (0.3 + 0.7 * shape) * np.exp(-g * 30))) * _envelope(m, sr, 0.001, 0.4 * p["decay_sec"])
        burst = int(0.01 * sr)
        grain[:burst] += rng.standard_normal(burst) * 0.5 * 0.5**tilt
        out = np.zeros(n)
        _add_at(out, _pulses(n, sr, rate, rng), grain)
    else:
        raise ValueError(f"unknown sound kind {kind!r}")
    out = np.asarray(out, np.float64)
    return out / (np.sqrt(np.mean(out**2)) + 1e-9)


def clip_wave(clips: list[np.ndarray], p: dict, n: int, sample_rate_hz: int, rng: np.random.Generator, pitch: float = 1.0) -> np.ndarray:
    """(n,) float64 at RMS ~1: a random excerpt of clip ``p["clip"]`` (looped; modulo the usable clips), resampled
    by ``p["rate"] * pitch`` (pitch and speed) and spectrally tilted by ``p["tilt"]``."""
    clip = clips[p["clip"] % len(clips)].astype(np.float64)
    rate = p["rate"] * pitch
    need = int(np.ceil(n * rate)) + 2
    start = int(rng.integers(clip.size))
    reps = int(np.ceil((start + need) / clip.size))
    src = np.tile(clip, reps)[start : start + need]
    out = np.interp(np.arange(n) * rate, np.arange(src.size), src)
    if p["tilt"]:
        out = _filter_tilt(out, p["tilt"], sample_rate_hz)
    return out / (np.sqrt(np.mean(out**2)) + 1e-9)


def trim_clip(wave: np.ndarray, sample_rate_hz: int, *, max_gap_sec: float = 0.1) -> np.ndarray:
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
