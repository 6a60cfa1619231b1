"""`python -m evalsvc.bulk.worker_health`: exit 0 when a bulk worker of this host is alive and can work, 1 otherwise.

The container healthcheck of `evalsvc worker`. Healthy means both:

- a worker is registered on the bulk queue under this host name: RQ lets the registration expire when
  heartbeats stop (between jobs, and after every batch during one), so a hung or dead worker turns
  unhealthy;
- the database answers: a worker that cannot record anything only burns the jobs it takes.

Deliberately light: no torch, no model; Redis, one `SELECT 1` and `Settings` only. The reason of an
unhealthy answer is printed on stderr.
"""

from __future__ import annotations

import socket
import sys

from rq import Queue, Worker

from evalsvc.bulk.queue import connect_redis
from evalsvc.errors import EvalsvcError
from evalsvc.settings import Settings
from evalsvc.store import Store


def worker_alive(settings: Settings, hostname: str) -> bool:
    connection = connect_redis(settings.redis_url)
    queue = Queue(settings.bulk_queue, connection=connection)
    return any(worker.hostname == hostname for worker in Worker.all(queue=queue))


def unhealthy_reason(settings: Settings, hostname: str) -> str | None:
    """Why the worker of `hostname` is not healthy, or None when it is."""
    try:
        if not worker_alive(settings, hostname):
            return f"no bulk worker of host {hostname} is registered on queue {settings.bulk_queue}"
        store = Store.from_settings(settings)
        try:
            store.check()
        finally:
            store.dispose()
    except EvalsvcError as error:  # queue_unavailable, database_unavailable, database_schema_outdated
        return f"{error.code}: {error.message}"
    return None


def main() -> int:
    reason = unhealthy_reason(Settings(), socket.gethostname())
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
