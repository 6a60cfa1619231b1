""" "Did you mean ...?" hints for misspelt names in user files (manifest columns, texts keys).

The closest known name by `difflib`'s ratio (the standard library's fuzzy matcher), only when it is
close enough to be a likely typo: `query_audo` suggests `query_audio`, `speaker` suggests nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

_CUTOFF = 0.75


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest known name, or "" when none is close."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=_CUTOFF)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def unknown_names(names: Iterable[str], known: Iterable[str]) -> str:
    """`'a' (did you mean 'b'?), 'c'`: the unknown names, each with its hint."""
    choices = list(known)
    return ", ".join(f"{name!r}{did_you_mean(name, choices)}" for name in names)
