"""The constitution: the shipped default's structure, a user file replacing it, and one-line errors for bad files."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from posttrain.safety.constitution import (
    DEFAULT_CONSTITUTION,
    Category,
    ConstitutionError,
    Principle,
    load_constitution,
)
from posttrain.train.config import ConfigError


def minimal() -> dict:
    """A small valid constitution as plain data, for tests to break one key at a time."""
    return {
        "name": "mine",
        "version": 3,
        "principles": [
            {"id": "p1", "critique": "Find the harm.", "revision": "Remove the harm."},
            {"id": "p2", "critique": "Find the refusal.", "revision": "Answer it."},
        ],
        "categories": [
            {
                "id": f"c{i}",
                "description": "Something bad.",
                "reason": "it is bad",
                "alternative": "something good",
                "must_not_help": ["Do the bad thing."],
                "harmless_neighbours": ["Do the good thing."],
            }
            for i in range(3)
        ],
        "refusal_style": ["Be brief."],
    }


def write(tmp_path, data) -> str:
    path = tmp_path / "my.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_default_loads_with_the_expected_structure():
    c = load_constitution()
    assert c == load_constitution(DEFAULT_CONSTITUTION)
    assert c.name == "posttrain-default" and c.version == 3 and c.source == str(DEFAULT_CONSTITUTION)
    assert 5 <= len(c.principles) <= 8 and 8 <= len(c.categories) <= 10 and c.refusal_style
    assert len({p.id for p in c.principles}) == len(c.principles)
    assert len({k.id for k in c.categories}) == len(c.categories)
    for p in ("no_serious_harm", "answer_the_harmless", "reason_fits"):
        assert c.principle(p).critique and c.principle(p).revision
    for k in c.categories:
        assert 2 <= len(k.must_not_help) <= 4 and 2 <= len(k.harmless_neighbours) <= 4, k.id
        assert k.reason and k.alternative and k.description
    assert "How do I kill a zombie process on Linux?" in c.category("weapons").harmless_neighbours


def test_frozen_and_unknown_ids_name_the_known_ones():
    c = load_constitution()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.name = "x"  # type: ignore[misc]
    with pytest.raises(KeyError, match="unknown principle 'nope'; known: no_serious_harm, answer_the_harmless"):
        c.principle("nope")
    with pytest.raises(KeyError, match="unknown category 'nope'; known: dangerous_chem_bio"):
        c.category("nope")


def test_a_user_file_with_the_same_schema_replaces_the_default(tmp_path):
    c = load_constitution(write(tmp_path, minimal()))
    assert (c.name, c.version, c.refusal_style, c.source) == ("mine", 3, ("Be brief.",), str(tmp_path / "my.yaml"))
    assert c.principles[1] == Principle("p2", "Find the refusal.", "Answer it.")
    assert c.category("c2") == Category(
        "c2", "Something bad.", "it is bad", "something good", ("Do the bad thing.",), ("Do the good thing.",)
    )
    with pytest.raises(KeyError):
        c.category("weapons")


def broken(edit):
    """minimal() with `edit` applied to it."""
    data = minimal()
    edit(data)
    return data


BAD_FILES = {
    "bad yaml": ("name: x\nversion: 1\nprinciples: [\n", r"not valid YAML \(line 4\): "),
    "not a mapping": ("- just\n- a list\n", "must be a mapping with keys name, version, .*; got list"),
    "empty file": ("", "must be a mapping with keys .*; got NoneType"),
    "missing key": (broken(lambda d: d.pop("refusal_style")), "refusal_style: missing key"),
    "unknown top key": (broken(lambda d: d.update(extra=1)), "unknown key 'extra'; allowed: categories, name"),
    "version not int": (broken(lambda d: d.update(version="1")), "version: must be an integer, got '1'"),
    "version a bool": (broken(lambda d: d.update(version=True)), "version: must be an integer"),
    "empty principles": (broken(lambda d: d.update(principles=[])), "principles: must be a non-empty list"),
    "principle typo": (
        broken(lambda d: d["principles"][0].update(critque="x")),
        r"principles\[0\]: unknown key 'critque'; allowed: critique, id, revision$",
    ),
    "principle missing key": (
        broken(lambda d: d["principles"][1].pop("revision")),
        r"principles\[1\]\.revision: missing key",
    ),
    "principle not a mapping": (
        broken(lambda d: d["principles"].append("be nice")),
        r"principles\[2\]: must be a mapping with keys id, critique, revision; got str",
    ),
    "empty string": (
        broken(lambda d: d["categories"][0].update(reason="  ")),
        r"categories\[0\]\.reason: must be a non-empty string",
    ),
    "empty neighbours": (
        broken(lambda d: d["categories"][2].update(harmless_neighbours=[])),
        r"categories\[2\]\.harmless_neighbours: must be a non-empty list of strings",
    ),
    "neighbours a string": (
        broken(lambda d: d["categories"][2].update(harmless_neighbours="Do the good thing.")),
        r"categories\[2\]\.harmless_neighbours: must be a non-empty list of strings",
    ),
    "non-string example": (
        broken(lambda d: d["categories"][1].update(must_not_help=["ok", 7])),
        r"categories\[1\]\.must_not_help: must be a non-empty list of strings",
    ),
    "duplicate principle id": (
        broken(lambda d: d["principles"][1].update(id="p1")),
        r"principles\[1\]\.id: duplicate id 'p1'",
    ),
    "duplicate category id": (
        broken(lambda d: d["categories"][2].update(id="c0")),
        r"categories\[2\]\.id: duplicate id 'c0'",
    ),
    "refusal style not strings": (
        broken(lambda d: d.update(refusal_style=[{"rule": "x"}])),
        "refusal_style: must be a non-empty list of strings",
    ),
}


@pytest.mark.parametrize("data, message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_files_give_one_line_errors_naming_file_and_key(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ConstitutionError, match=message) as caught:
        load_constitution(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert isinstance(caught.value, ConfigError)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ConstitutionError, match=r"nope\.yaml: cannot read"):
        load_constitution(tmp_path / "nope.yaml")
