"""Audio paths named in user files (bulk manifests, training data files), vetted before anything reads them.

A relative path resolves against the file's own directory, or else against each data root in turn
(an uploaded file has no directory). Every resolved path, symlinks and `..` included, must lie inside
a data root, have an audio extension and exist: a user's file cannot make the service read
`/etc/shadow`, and a typo is reported with its line rather than when the clip is decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3"})


class AudioPathResolver:
    """Audio path checks, with the data roots resolved once and each file stat-ed once."""

    def __init__(self, roots: Sequence[Path], base_dir: Path | None) -> None:
        self.roots = [root.resolve() for root in roots]
        self.base_dir = base_dir
        self._seen: dict[Path, str | None] = {}

    def resolve(self, raw: str) -> Path | str:
        """The vetted absolute path, or what is wrong with it."""
        if not self.roots:
            return "no data root is configured (set EVALSVC_DATA_ROOTS)"
        candidates = [Path(raw)] if Path(raw).is_absolute() else self._bases(raw)
        for candidate in candidates:
            try:
                resolved = candidate.resolve()
            except (OSError, RuntimeError, ValueError):  # symlink loops, NUL bytes
                continue
            if any(resolved.is_relative_to(root) for root in self.roots):
                return self._check_file(resolved)
        return "outside the data roots"

    def _bases(self, raw: str) -> list[Path]:
        bases = [self.base_dir] if self.base_dir is not None else self.roots
        return [base / raw for base in bases]

    def _check_file(self, path: Path) -> Path | str:
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            return (
                f"unsupported extension {path.suffix or '(none)'!r}; use {', '.join(sorted(AUDIO_SUFFIXES))}"
            )
        if path not in self._seen:
            self._seen[path] = None if path.is_file() else "file not found"
        problem = self._seen[path]
        return path if problem is None else problem
