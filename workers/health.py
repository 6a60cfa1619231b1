"""`python -m workers.health`: exit 0 when a bulk worker of this host is alive, 1 otherwise.

The container healthcheck of `evalsvc worker`. A worker is alive when it is registered on the bulk
queue under this host name: RQ lets the registration expire when heartbeats stop (between jobs, and
after every batch during one), so a hung or dead worker turns unhealthy. Deliberately light: no torch,
no model, no database; Redis and `Settings` only.
"""

from __future__ import annotations

import socket
import sys

from rq import Queue, Worker

from evalsvc.bulk.queue import connect_redis
from evalsvc.errors import QueueUnavailable
from evalsvc.settings import Settings


def worker_alive(settings: Settings, hostname: str) -> bool:
    connection = connect_redis(settings.redis_url)
    queue = Queue(settings.bulk_queue, connection=connection)
    return any(worker.hostname == hostname for worker in Worker.all(queue=queue))


def main() -> int:
    try:
        alive = worker_alive(Settings(), socket.gethostname())
    except QueueUnavailable as error:
        print(error.message, file=sys.stderr)
        return 1
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
