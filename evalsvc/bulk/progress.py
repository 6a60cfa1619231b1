"""The progress bar of a run: done / failed / total, rate and ETA (tqdm, on stderr).

Fed either by the shard function's per-batch hook (in process) or by polling SQL (`--wait` on a
queued run, where the work happens in other processes). Either way it shows the SQL record, so what
it says is what `bulk status` says.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

from evalsvc.store.run_records import RunProgress


class ProgressBar:
    def __init__(self, progress: RunProgress, stream: TextIO | None = None) -> None:
        self._bar = tqdm(
            total=progress.items,
            initial=progress.done + progress.failed,
            unit="pair",
            desc=f"run {progress.run_id}",
            file=stream or sys.stderr,
            dynamic_ncols=True,
        )
        self.update(progress)

    def update(self, progress: RunProgress) -> None:
        self._bar.total = progress.items
        self._bar.set_postfix(done=progress.done, failed=progress.failed, refresh=False)
        self._bar.update(progress.done + progress.failed - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def wait_for_run(
    read: Callable[[], RunProgress],
    *,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
    stream: TextIO | None = None,
) -> RunProgress:
    """Poll `read` until the run is finished (or cancelled) or `timeout_s` passed; the last reading."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    progress = read()
    bar = ProgressBar(progress, stream)
    try:
        while not progress.finished and (deadline is None or time.monotonic() < deadline):
            time.sleep(poll_s)
            progress = read()
            bar.update(progress)
    finally:
        bar.close()
    return progress
