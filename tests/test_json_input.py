"""JSON from outside the program: one ValueError line for what is not JSON or nests past
the bound (issue 32 item 17), the document itself otherwise."""

from __future__ import annotations

import sys

import pytest

from pose3d.json_input import MAX_DEPTH, load_json


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_documents_within_the_bound_are_returned_as_parsed():
    assert load_json(b'{"a": [1, {"b": null}]}', "f") == {"a": [1, {"b": None}]}
    assert load_json("3", "f") == 3
    assert load_json(_nested(MAX_DEPTH), "f") is not None


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, sys.getrecursionlimit() * 100])
def test_nesting_past_the_bound_is_one_line(levels):
    with pytest.raises(ValueError, match=f"^boxes.json: JSON nested more than {MAX_DEPTH} "
                                         f"levels deep$"):
        load_json(_nested(levels), "boxes.json")


def test_the_bound_counts_objects_and_arrays_alike():
    doc = '{"a": ' * 40 + "[" * 30 + "]" * 30 + "}" * 40
    with pytest.raises(ValueError, match="nested more than 64"):
        load_json(doc, "f")
    assert load_json(doc, "f", max_depth=70)


@pytest.mark.parametrize("text", ["{", b"\xff\xfe", ""])
def test_what_is_not_json_is_one_line(text):
    with pytest.raises(ValueError, match="^f: not JSON") as info:
        load_json(text, "f")
    assert "\n" not in str(info.value)
