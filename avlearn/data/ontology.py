"""The AudioSet ontology: class names, the parent/child graph, and the 527-class index.

``Ontology.load("ontology.json")`` reads the official JSON (a list of
``{"id", "name", "child_ids", "restrictions", ...}``) and, when a
``class_labels_indices.csv`` (``index,mid,display_name``) lies beside it or is
given, the label index used by AudioSet models. Evaluation uses
:meth:`Ontology.relevance` as the graded relevance of nDCG.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Ontology:
    """AudioSet classes keyed by machine id (``/m/09x0r``).

    Attributes:
        names: mid -> display name.
        children: mid -> child mids (ontology order).
        parents: mid -> parent mids (a class may have several).
        restrictions: mid -> e.g. ("abstract",), ("blacklist",).
        index_to_mid: label index -> mid, from class_labels_indices.csv (empty if none).
    """

    names: dict[str, str]
    children: dict[str, tuple[str, ...]]
    parents: dict[str, tuple[str, ...]]
    restrictions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    index_to_mid: list[str] = field(default_factory=list)
    index_names: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | os.PathLike, class_labels: str | os.PathLike | None = None) -> Ontology:
        """Read ontology.json (and class_labels_indices.csv: given, or found beside it).

        Raises:
            FileNotFoundError, ValueError: a missing file or a malformed entry.
        """
        path = Path(path)
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a JSON list of classes")
        names: dict[str, str] = {}
        children: dict[str, tuple[str, ...]] = {}
        restrictions: dict[str, tuple[str, ...]] = {}
        for e in entries:
            try:
                mid = e["id"]
                names[mid] = e["name"]
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{path}: class entry without id/name: {e!r:.200}") from exc
            children[mid] = tuple(e.get("child_ids") or ())
            restrictions[mid] = tuple(e.get("restrictions") or ())
        parents: dict[str, list[str]] = {mid: [] for mid in names}
        for mid, kids in children.items():
            for kid in kids:
                if kid not in names:
                    raise ValueError(f"{path}: {mid} lists unknown child {kid}")
                parents[kid].append(mid)
        onto = cls(names, children, {k: tuple(v) for k, v in parents.items()}, restrictions)
        csv_path = Path(class_labels) if class_labels is not None else path.with_name("class_labels_indices.csv")
        if class_labels is not None or csv_path.is_file():
            onto._load_indices(csv_path)
        return onto

    def _load_indices(self, csv_path: Path) -> None:
        rows = []
        with open(csv_path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                rows.append((int(row["index"]), row["mid"], row["display_name"]))
        rows.sort()
        if [r[0] for r in rows] != list(range(len(rows))):
            raise ValueError(f"{csv_path}: indices are not 0..{len(rows) - 1}")
        self.index_to_mid = [r[1] for r in rows]
        self.index_names = [r[2] for r in rows]

    # --- look-ups ------------------------------------------------------------

    def __contains__(self, mid: str) -> bool:
        return mid in self.names

    def __len__(self) -> int:
        return len(self.names)

    def name(self, mid: str) -> str:
        return self.names[mid]

    def mid(self, name: str) -> str:
        """The mid of a display name (exact, then case-insensitive). Raises KeyError."""
        for m, n in self.names.items():
            if n == name:
                return m
        low = name.lower()
        for m, n in self.names.items():
            if n.lower() == low:
                return m
        raise KeyError(name)

    @property
    def mid_to_index(self) -> dict[str, int]:
        return {m: i for i, m in enumerate(self.index_to_mid)}

    def index(self, mid: str) -> int:
        """Label index of a mid in class_labels_indices.csv. Raises KeyError."""
        return self.mid_to_index[mid]

    @property
    def roots(self) -> list[str]:
        return [m for m, p in self.parents.items() if not p]

    def ancestors(self, mid: str, include_self: bool = False) -> set[str]:
        """Every class above ``mid`` (all parent paths)."""
        out: set[str] = {mid} if include_self else set()
        stack = list(self.parents[mid])
        while stack:
            m = stack.pop()
            if m not in out:
                out.add(m)
                stack.extend(self.parents[m])
        return out

    def descendants(self, mid: str, include_self: bool = False) -> set[str]:
        out: set[str] = {mid} if include_self else set()
        stack = list(self.children[mid])
        while stack:
            m = stack.pop()
            if m not in out:
                out.add(m)
                stack.extend(self.children[m])
        return out

    def depth(self, mid: str) -> int:
        """Length of the shortest path from a root (roots have depth 0)."""
        d, level = 0, {mid}
        while not any(not self.parents[m] for m in level):
            level = {p for m in level for p in self.parents[m]}
            d += 1
        return d

    def relevance(self, query: Iterable[str], item: Iterable[str]) -> int:
        """Graded relevance of an item's labels to a query's labels, for nDCG.

        2: they share a class; 1: a class of one is an ancestor of, or shares a
        non-root ancestor with, a class of the other; 0: otherwise. Unknown mids
        count only for exact matches.
        """
        q, it = set(query), set(item)
        if q & it:
            return 2
        roots = set(self.roots)
        up_q = set().union(*(self.ancestors(m, True) for m in q if m in self.names)) - roots
        up_i = set().union(*(self.ancestors(m, True) for m in it if m in self.names)) - roots
        return 1 if up_q & up_i else 0

    def relevance_matrix(self, label_sets: Sequence[Iterable[str]], *, chunk: int = 4096) -> np.ndarray:
        """(N, N) int8 :meth:`relevance` of every pair of ``label_sets`` (row = query), vectorised.

        Label sets become multi-hot rows L (N, V) over the labels present; the ancestor closure
        (each known label and its ancestors, roots left out) is a (V, M) 0/1 matrix C. Then
        shared = L L^T > 0 and related = (L C)(L C)^T > 0, computed ``chunk`` queries at a time.
        """
        sets = [set(s) for s in label_sets]
        vocab = sorted(set().union(*sets)) if sets else []
        col = {m: j for j, m in enumerate(vocab)}
        hot = np.zeros((len(sets), len(vocab)), np.float32)
        for i, s in enumerate(sets):
            hot[i, [col[m] for m in s]] = 1.0
        roots = set(self.roots)
        ups = {m: self.ancestors(m, True) - roots for m in vocab if m in self.names}
        up_vocab = sorted(set().union(*ups.values())) if ups else []
        up_col = {m: j for j, m in enumerate(up_vocab)}
        closure = np.zeros((len(vocab), len(up_vocab)), np.float32)
        for m, up in ups.items():
            closure[col[m], [up_col[a] for a in up]] = 1.0
        up_hot = hot @ closure  # (N, M) > 0 where a class of the set is that ancestor or below it
        up_hot = (up_hot > 0).astype(np.float32)
        out = np.zeros((len(sets), len(sets)), np.int8)
        for a in range(0, len(sets), chunk):
            shared = hot[a : a + chunk] @ hot.T > 0
            related = up_hot[a : a + chunk] @ up_hot.T > 0
            out[a : a + chunk] = np.where(shared, 2, np.where(related, 1, 0))
        return out
