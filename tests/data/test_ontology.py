"""The AudioSet ontology on the real ontology.json + class_labels_indices.csv, and a tiny made-up one."""

from __future__ import annotations

import json

import pytest

from avlearn.data.ontology import Ontology


def test_real_ontology(shared_data):
    onto = Ontology.load(shared_data / "audioset" / "ontology.json")
    assert len(onto) == 632
    assert len(onto.index_to_mid) == 527 and onto.index_to_mid[0] == "/m/09x0r"
    speech = onto.mid("Speech")
    assert speech == "/m/09x0r" and onto.name(speech) == "Speech" and onto.index(speech) == 0
    assert onto.ancestors(speech) == {onto.mid("Human voice"), onto.mid("Human sounds")}
    assert onto.mid("Male speech, man speaking") in onto.children[speech]
    assert speech in onto.parents[onto.mid("Male speech, man speaking")]
    assert onto.depth(onto.mid("Human sounds")) == 0 and onto.depth(speech) == 2
    assert set(onto.roots) >= {onto.mid("Music"), onto.mid("Animal")}
    assert "abstract" in onto.restrictions[onto.mid("Human voice")]
    # every class index names a class of the ontology, with the same display name
    assert all(onto.name(m) == n for m, n in zip(onto.index_to_mid, onto.index_names))
    # graded relevance: same class 2, related (shared non-root ancestor) 1, else 0
    male = onto.mid("Male speech, man speaking")
    assert onto.relevance([speech], [speech, onto.mid("Music")]) == 2
    assert onto.relevance([speech], [male]) == 1
    assert onto.relevance([speech], [onto.mid("Dog")]) == 0
    assert speech in onto.descendants(onto.mid("Human sounds"))


def test_small_ontology_multiple_parents_and_errors(tmp_path):
    entries = [
        {"id": "/r", "name": "Root", "child_ids": ["/a", "/b"]},
        {"id": "/a", "name": "A", "child_ids": ["/c"]},
        {"id": "/b", "name": "B", "child_ids": ["/c"]},
        {"id": "/c", "name": "C", "child_ids": []},
    ]
    (tmp_path / "ontology.json").write_text(json.dumps(entries))
    onto = Ontology.load(tmp_path / "ontology.json")
    assert onto.parents["/c"] == ("/a", "/b") and onto.ancestors("/c") == {"/a", "/b", "/r"}
    assert onto.index_to_mid == []  # no class_labels_indices.csv beside it
    assert onto.relevance(["/a"], ["/b"]) == 0  # only the root in common
    assert onto.relevance(["/a"], ["/c"]) == 1
    with pytest.raises(KeyError):
        onto.mid("nope")
    entries[0]["child_ids"].append("/ghost")
    (tmp_path / "ontology.json").write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="unknown child"):
        Ontology.load(tmp_path / "ontology.json")
