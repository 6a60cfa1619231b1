"""Real `evalsvc serve` processes for the API tests.

A server takes ~10 s to start (LitServe, a spawned model worker, the tiny model's load and warm-up)
on a 2-core machine, so the main configuration is started at most once per session, by whichever
test module asks first (`shared_server`), and stopped at the end of the session. Servers are
stopped with SIGINT, LitServe's graceful shutdown.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from evalsvc.engine.tiny import TinyModelPaths
from evalsvc.settings import Settings
from evalsvc.store import Store, issue_api_key
from evalsvc.store.scratch import scratch_postgres
from evalsvc.store.tenants import ensure_tenant
from tests.conftest import POSTGRES_ADMIN_URL
from tests.helpers import running_in_ci

EVALSVC = Path(sys.executable).with_name("evalsvc")
START_TIMEOUT_S = 180

AUTH_SERVER_FLAGS = (
    "--max-batch-size", "8", "--batch-timeout", "0.05", "--max-new-tokens", "8", "--api-servers", "2",
    "--max-payload-bytes", str(4 * 1024 * 1024), "--max-in-flight", "64", "--request-timeout", "60",
)  # fmt: skip
"""The main test server: auth on, batching on, two API-server processes, a 4 MiB payload limit."""
LIMITS_SERVER_FLAGS = (
    "--no-auth", "--max-batch-size", "1", "--max-in-flight", "2", "--request-timeout", "3",
    "--max-new-tokens", "4000",
)  # fmt: skip
"""Auth off, batching off, room for 2 requests at once, 3 s per request: a 4000-token generation
(~10 s on an idle 2-core machine, far longer under load) always times out."""


@dataclass(frozen=True)
class RunningServer:
    url: str
    data_dir: Path
    data_root: Path
    process: subprocess.Popen[bytes]
    log: Path
    database_url: str | None = None

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, database_url=self.database_url)

    def api_key(self, tenant: str) -> str:
        """A new key of `tenant` (created if new), written straight to the server's database."""
        store = Store.from_settings(self.settings)
        ref = ensure_tenant(store, tenant)
        with store.session() as session:
            _row, key = issue_api_key(session, ref.id, f"test key of {tenant}")
        store.dispose()
        return key

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


_servers: dict[str, RunningServer] = {}


def shared_server(
    config: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_paths: TinyModelPaths,
    name: str,
    flags: Sequence[str],
    *,
    postgres: bool = False,
) -> RunningServer:
    """The server called `name` of this session, started with `flags` on first use.

    With `postgres` it runs on a PostgreSQL database of its own (dropped at the end of the session);
    a skip when PostgreSQL is unreachable, and a failure then in CI.
    """
    if name not in _servers:
        databases = ExitStack()
        database_url = databases.enter_context(postgres_database()) if postgres else None
        if postgres and database_url is None:
            databases.close()
            if running_in_ci():
                pytest.fail("PostgreSQL is unreachable (CI=true: the tests on PostgreSQL must run)")
            pytest.skip("PostgreSQL is unreachable")
        config.add_cleanup(databases.close)
        _servers[name] = start_server(
            tmp_path_factory.mktemp(f"server-{name}"), tiny_paths, flags, database_url
        )
        config.add_cleanup(lambda: stop_server(_servers.pop(name)))
    return _servers[name]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    root: Path,
    tiny_paths: TinyModelPaths,
    flags: Sequence[str],
    database_url: str | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> RunningServer:
    """Start `evalsvc serve --model tiny` with `flags` under `root` and wait until /ready says so.

    The database is the default SQLite file in the data directory unless `database_url` is given;
    the port is a free one unless `port` is given.
    """
    data_dir = root / "data"
    shutil.copytree(tiny_paths.root, Settings(data_dir=data_dir).tiny_model_dir)
    data_root = root / "audio"
    data_root.mkdir()
    port = port or free_port()
    log = root / "server.log"
    command = [
        str(EVALSVC), "serve", "--model", "tiny", "--data-dir", str(data_dir), "--port", str(port),
        "--data-root", str(data_root), "--log-level", "warning", *flags,
    ]  # fmt: skip
    if database_url is not None:
        command += ["--database-url", database_url]
    env = {name: value for name, value in os.environ.items() if not name.startswith("EVALSVC_")} | dict(
        env or {}
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )
    server = RunningServer(f"http://127.0.0.1:{port}", data_dir, data_root, process, log, database_url)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"evalsvc serve exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(server)
    raise RuntimeError(f"evalsvc serve was not ready within {START_TIMEOUT_S} s:\n{server.log_tail()}")


def stop_server(server: RunningServer) -> None:
    """SIGINT to the main process; its process group (ours: start_new_session) is killed if it lingers."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A new PostgreSQL database migrated to the latest schema, dropped afterwards; None when
    PostgreSQL is unreachable (TEST_POSTGRES_URL, default postgres@127.0.0.1:5432/test)."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_postgres(POSTGRES_ADMIN_URL, prefix="evalsvc_api"))
        except OperationalError:
            url = None
        yield url


def set_connections_allowed(database_url: str, allowed: bool) -> None:
    """Take a PostgreSQL database away from every client (and its pooled connections), or give it back."""
    name = make_url(database_url).database
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:
                connection.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                    {"name": name},
                )
    finally:
        admin.dispose()


def wav_bytes(seconds: float, frequency: float, sample_rate: int = 16_000, amplitude: float = 0.2) -> bytes:
    """A distinct, valid clip per (seconds, frequency): distinct pairs are never cache hits."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    buffer = io.BytesIO()
    samples = (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    soundfile.write(buffer, samples, sample_rate, format="WAV")
    return buffer.getvalue()
