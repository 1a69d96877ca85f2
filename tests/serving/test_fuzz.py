"""Schema fuzzing: every operation of the service's OpenAPI document, bounded examples, never a 5xx.

Uses schemathesis' Hypothesis strategies per operation (its pytest fixture loader does not run
under pytest 9), positive and negative generation, MAX_EXAMPLES each.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.serving.conftest import Served

MAX_EXAMPLES = 50


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_server_errors(served: Served, mode: GenerationMode) -> None:
    """Generated requests to every documented operation get a 2xx/4xx answer, never a 5xx."""
    schema = schemathesis.openapi.from_url(f"{served.url}/docs.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/rank", "/rank_batch"} <= paths, paths
    if mode == GenerationMode.NEGATIVE:  # an operation without inputs has no invalid request
        operations = [op for op in operations if list(op.body)]
    seen: dict[str, int] = {}

    for op in operations:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: schemathesis.Case) -> None:
            """One generated request."""
            response = case.call(base_url=served.url, timeout=60)
            seen[case.path] = seen.get(case.path, 0) + 1
            assert response.status_code < 500, (
                f"{case.method} {case.path} body={str(case.body)[:300]} -> {response.status_code}: "
                f"{response.text[:300]}"
            )

        check()
    assert seen.get("/rank", 0) > 1, seen
