"""JSON that comes from outside the program (a user's boxes, cameras or intrinsics, a
dataset's manifest): a malformed or absurdly nested document is one ValueError line, never a
RecursionError. Python's parser recurses once per level, and so does code that walks the
result, so nesting is bounded far below the interpreter's limit (a real document of ours
nests five levels).

Imports nothing from pose3d, so any layer may use it.
"""

from __future__ import annotations

import json

MAX_DEPTH = 64  # levels of arrays / objects


def load_json(text: str | bytes, where: str, max_depth: int = MAX_DEPTH) -> object:
    """The parsed document; ValueError naming `where` when `text` is not JSON or nests
    arrays and objects more than `max_depth` levels deep."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise ValueError(f"{where}: JSON nested more than {max_depth} levels deep") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from None
    if _deeper_than(doc, max_depth):
        raise ValueError(f"{where}: JSON nested more than {max_depth} levels deep")
    return doc


def _deeper_than(doc: object, limit: int) -> bool:
    """Whether arrays / objects nest more than `limit` levels (iterative: no recursion)."""
    stack = [(doc, 1)] if isinstance(doc, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False
