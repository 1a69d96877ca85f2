"""A served Bento on a Redis online store through an outage and an empty restart: /readyz follows
Redis, failed requests fail within a second, an emptied Redis is reported and `dacdr features
materialize` restores every user; Redis down at start stops the server with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Probe, RedisProcess, assert_exits_with_one_line, until, warm_user_and_items
from tests.serving.conftest import Served, serve_bento, serving_env

pytestmark = pytest.mark.redis
FAIL_FAST_S = 1.0


@pytest.fixture(scope="module")
def redis_feast(
    tiny_logs: Path, redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A Feast store over the tiny logs whose online store is the module's redis-server."""
    from features import materialize
    from features import store as fs

    work = tmp_path_factory.mktemp("faults_redis") / "feast"
    fs.build(tiny_logs, work, online=fs.OnlineConfig(kind=fs.ONLINE_REDIS, redis_url=redis_server.url))
    fs.apply(work)
    materialize.materialize(work)
    return work


@pytest.fixture(scope="module")
def redis_probe(served: Served, redis_feast: Path) -> Iterator[Probe]:
    """One worker serving the tiny Bento from Redis."""
    from bento.config import workers_env

    env = workers_env(serving_env(served.home, redis_feast), 1)
    with serve_bento(served.bento_tag, env, redis_feast.parent / "serve.log") as server:
        user, items = warm_user_and_items(redis_feast)
        yield Probe(server.url, user, items)


def test_redis_outage_and_empty_restart(
    redis_probe: Probe, redis_server: RedisProcess, redis_feast: Path
) -> None:
    """Killed: not ready, each request a 503 within a second. Restarted empty: not ready, the
    gauge at 0 (no silent cold starts). `dacdr features materialize`: every user back."""
    probe = redis_probe
    assert probe.ready() == 200 and probe.rank().json()["cold_start"] is False
    redis_server.kill()
    until(lambda: probe.ready() == 503)
    for _ in range(5):
        t0 = time.perf_counter()
        status = probe.rank(timeout=30).status_code
        took = time.perf_counter() - t0
        assert status == 503 and took <= FAIL_FAST_S, (status, took)
    redis_server.start()  # no persistence: empty
    until(lambda: probe.metric("dacdr_online_sampled_users_present") == 0)
    assert probe.ready() == 503
    assert probe.rank().json()["cold_start"] is True
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "dacdr.cli", "features", "materialize", "--workdir", str(redis_feast)],
        env={**os.environ},
        check=True,
        capture_output=True,
    )
    until(lambda: probe.ready() == 200 and probe.rank().json()["cold_start"] is False)
    print(f"redis: materialize + ready again in {time.monotonic() - t0:.1f}s")


def test_redis_down_at_start_stops_the_server(
    served: Served, redis_feast: Path, redis_server: RedisProcess, tmp_path: Path
) -> None:
    """No Redis when the worker starts: one line, the server exits (no restart loop)."""
    from bento.config import workers_env

    redis_server.kill()
    try:
        env = workers_env(serving_env(served.home, redis_feast), 1)
        line = assert_exits_with_one_line(served.bento_tag, env, tmp_path / "serve.log")
        assert "ConnectionError" in line or "Timeout" in line, line
    finally:
        redis_server.start()
