"""Names read from data (a resume cache, a labels file) are checked before they reach a
file name: a role is one of schema.ROLES, any other name a plain file name."""

from __future__ import annotations

import reprlib

from pose3d.data.schema import ROLES

MAX_NAME_LENGTH = 128


def check_name(kind: str, value: object) -> str:
    """`value`, when it may become part of a file name as a `kind` ("role", "subject",
    "action", "camera", ...); else ValueError saying why. A role must be one of
    schema.ROLES; any other name a string of 1 to MAX_NAME_LENGTH characters without '/',
    '\\', control characters or a leading '.' (so neither '.' nor '..')."""
    shown = reprlib.repr(value)
    if kind == "role":
        if not isinstance(value, str) or value not in ROLES:
            raise ValueError(f"role {shown} is not one of {', '.join(ROLES)}")
        return value
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_LENGTH:
        raise ValueError(f"{kind} name {shown} is not a string of 1 to {MAX_NAME_LENGTH} "
                         "characters")
    if value.startswith(".") or any(c in "/\\" or ord(c) < 32 or c == "\x7f" for c in value):
        raise ValueError(f"{kind} name {shown} is not a plain file name (no '/', '\\', "
                         "control character or leading '.')")
    return value
