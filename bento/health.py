"""The online store's health as the service sees it: which errors mean the store failed, and why.

Shared by the scoring core (it records the reason of a failed read) and the HTTP guard (it puts
the reason into the 503 the client sees); one StoreHealth per process.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from bentoml.exceptions import ServiceUnavailable


class StoreUnavailable(ServiceUnavailable):
    """The online store cannot be read (locked, gone, unreachable): a 503 carrying the reason."""


@dataclass
class StoreHealth:
    """The online store's current problem (None: last read or probe succeeded); one per process."""

    reason: str | None = None


# shared by the service and RequestGuard: BentoML answers every 5xx exception with one generic
# body, so the guard puts the store's reason into the 503 the client sees
STORE_HEALTH = StoreHealth()


def store_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning the online store itself failed (not the request): SQLite, Redis."""
    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        errors += [RedisConnectionError, RedisTimeoutError]
    except ImportError:  # redis is optional: the SQLite store does not need it
        pass
    return tuple(errors)
