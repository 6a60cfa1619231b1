"""Which processes run, from /proc (Linux): the fault tests check that nothing outlives its parent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    pgrp: int


def running() -> list[ProcessInfo]:
    """Every live process (zombies, exited but not yet reaped, are not counted)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except OSError:
            continue  # exited meanwhile
        if state != "Z":
            found.append(ProcessInfo(int(stat.parent.name), int(ppid), int(pgrp)))
    return found


def children_of(pid: int) -> list[int]:
    return [process.pid for process in running() if process.ppid == pid]


def group_members(pgrp: int) -> list[int]:
    return [process.pid for process in running() if process.pgrp == pgrp]


def any_alive(pids: list[int]) -> bool:
    live = {process.pid for process in running()}
    return any(pid in live for pid in pids)
