"""Output folders that belong to one run: resume it when the settings match, else refuse (or start afresh on request).

A command that writes a folder of artefacts (``avlearn synth``, ``avlearn demo``) claims it with
:func:`claim_output`: the folder keeps a small JSON marker with the command's settings. Run again
with the same settings, the command continues (or reuses) that run; with other settings it refuses
with a :class:`OutputExists` naming the differences and the ways on (the same settings, another
folder, or ``--overwrite``). A folder that holds other files and no marker is refused the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from avlearn.atomic import atomic_write_json
from avlearn.errors import UserError

Claim = Literal["new", "resume", "overwrite"]


class OutputExists(UserError):
    """The output folder holds another run's artefacts (other settings, or files this command did not write)."""


def settings_diff(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{key: (saved, now)} for every key whose value differs (missing keys count as None)."""
    return {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}


def describe_diff(diff: dict[str, tuple[Any, Any]], limit: int = 4) -> str:
    """'minutes 15.0 → 5.0, seed 0 → 1' (at most ``limit`` keys, then '...')."""
    parts = [f"{k} {a!r} → {b!r}" for k, (a, b) in list(diff.items())[:limit]]
    return ", ".join(parts) + (", ..." if len(diff) > limit else "")


def read_marker(out: str | os.PathLike, marker: str) -> dict[str, Any] | None:
    """The settings saved in ``out/marker``, or None when there is none (or it is unreadable)."""
    p = Path(out) / marker
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data.get("settings") if isinstance(data, dict) and isinstance(data.get("settings"), dict) else None


def claim_output(
    out: str | os.PathLike,
    settings: dict[str, Any],
    *,
    what: str,
    marker: str,
    overwrite: bool = False,
    same_settings_hint: str = "rerun with the same settings to continue it",
) -> Claim:
    """Claim ``out`` for a run of ``settings`` (JSON values); returns how.

    "new": the folder was absent or empty; "resume": it holds a run with the same settings;
    "overwrite": it held something else and ``overwrite`` was given (the caller decides what to
    replace; nothing is deleted here). The marker is written in every case.

    Raises:
        OutputExists: the folder holds a run with other settings, or files and no marker, and not ``overwrite``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExists(f"--out {out} is a file, not a folder; choose another --out")
    settings = json.loads(json.dumps(settings))  # the JSON form, as it will be compared next time
    saved = read_marker(out, marker)
    others = [p for p in out.iterdir() if p.name != marker] if out.is_dir() else []
    if saved is not None and not settings_diff(saved, settings):
        how: Claim = "resume"
    elif not others:  # absent, empty, or only a marker (a run that stopped before writing anything)
        how = "new"
    elif overwrite:
        how = "overwrite"
    elif saved is None:
        raise OutputExists(f"--out {out} is not empty and holds no {what} (no {marker}); choose another --out, or pass --overwrite to write into it anyway")
    else:
        raise OutputExists(
            f"--out {out} holds a {what} made with other settings ({describe_diff(settings_diff(saved, settings))}); "
            f"{same_settings_hint}, choose another --out, or pass --overwrite to start afresh there"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / marker, {"what": what, "settings": settings}, sort_keys=True)
    return how
