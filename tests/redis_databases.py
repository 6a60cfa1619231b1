"""One Redis database per test module, claimed so that two suites on one machine never share one.

The bulk tests flush their Redis database before and after every test, and some flush it mid-test on
purpose (a lost queue). Two test sessions on one machine (two checkouts, CI beside a developer) would
wipe each other's queues if they used a fixed database number, so each test module claims a free
database with a `SET NX` lock key in database 0 and releases it when the module is done. A lock of a
killed session expires after `CLAIM_TTL_S`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis

REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
CLAIMABLE = range(1, 16)  # database 0 holds the locks; Redis has 16 databases by default
CLAIM_TTL_S = 4 * 3600
LOCK_PREFIX = "evalsvc-tests:redis-db-claim:"


class NoFreeRedisDatabase(RuntimeError):
    """Every claimable database is held by another module or session."""


def _base(url: str) -> str:
    """The server part of a Redis URL, without a database number."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


@contextmanager
def claimed_redis_database(base_url: str = REDIS_BASE_URL) -> Iterator[str]:
    """The URL of a Redis database no other claimant holds; raises if the server is unreachable."""
    server = _base(base_url)
    locks = Redis.from_url(f"{server}/0", socket_connect_timeout=3)
    token = uuid.uuid4().hex
    try:
        for number in CLAIMABLE:
            if locks.set(f"{LOCK_PREFIX}{number}", token, nx=True, ex=CLAIM_TTL_S):
                break
        else:
            raise NoFreeRedisDatabase(
                f"all Redis databases {CLAIMABLE.start}-{CLAIMABLE.stop - 1} are claimed"
            )
        try:
            yield f"{server}/{number}"
        finally:
            key = f"{LOCK_PREFIX}{number}"
            if locks.get(key) == token.encode():
                locks.delete(key)
    finally:
        locks.close()
