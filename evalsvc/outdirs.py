"""Output directories that a failed command does not leave behind.

`evalsvc build --out DIR` and `evalsvc report plot -o DIR` create DIR (and missing parents) for what
they write; when they then fail (a run not found, nothing to build), an empty DIR would suggest that
something was produced. `output_directory` removes again the directories it created, if still empty.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def output_directory(path: Path) -> Iterator[Path]:
    """`path`, created with its missing parents; on an exception in the block, the directories this
    call created are removed again, deepest first, as long as they are empty."""
    created = [directory for directory in (path, *path.parents) if not directory.exists()]
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for directory in created:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
