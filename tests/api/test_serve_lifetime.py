"""`evalsvc serve` killed with SIGKILL: none of its processes is left, and it starts again on its port.

LitServe forks API servers and a manager process and spawns model workers; before they exited with
their parent, a `kill -9` of the main process left them listening on the port, answering requests,
and a restart failed with "Address already in use".
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from evalsvc.engine.tiny import TinyModelPaths
from tests.api.harness import start_server, stop_server
from tests.processes import any_alive, group_members

FLAGS = ("--no-auth", "--max-new-tokens", "4")


def test_a_killed_server_leaves_no_process_behind_and_restarts_on_the_same_port(
    tmp_path: Path, tiny_paths: TinyModelPaths
) -> None:
    first = start_server(tmp_path / "first", tiny_paths, FLAGS)
    group = first.process.pid  # started in a session (and process group) of its own
    processes = group_members(group)
    try:
        assert len(processes) >= 4, "main, manager, API server and model worker processes"
        os.kill(first.process.pid, signal.SIGKILL)  # the main process alone
        first.process.wait(timeout=10)
        deadline = time.monotonic() + 20
        while any_alive(processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any_alive(processes), f"left running: {group_members(group)}"
    finally:
        if group_members(group):
            os.killpg(group, signal.SIGKILL)

    port = int(first.url.rsplit(":", 1)[1])
    again = start_server(tmp_path / "again", tiny_paths, FLAGS, port=port)
    try:
        assert again.url == first.url
        assert httpx.get(f"{again.url}/health", timeout=10).status_code == 200
    finally:
        stop_server(again)
