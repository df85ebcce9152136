"""Schema-driven fuzzing of the HTTP server from its own ``/openapi.json`` (schemathesis).

Every operation the document lists is called with generated requests against a real
loopback uvicorn server serving the fake backend (through the real backend contract), once
without an API key and once with one configured. Checks: no 5xx, response bodies match the
documented schema, status codes are documented ones, and (keyed server) the key is
enforced: a request without it gets 401. CI runs a reduced example count per operation;
``ABSTRACTVISION_FUZZ=long`` runs many more.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from fakes import FakeBackend
from reliability._support import STATS, is_long

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")
schemathesis = pytest.importorskip("schemathesis")
checks_mod = pytest.importorskip("schemathesis.checks")
openapi_checks = pytest.importorskip("schemathesis.specs.openapi.checks")

pytestmark = [pytest.mark.server, pytest.mark.timeout(600 if is_long() else 120)]

KEY = "schema-fuzz-key-0123456789"
_EXAMPLES = 300 if is_long() else 8
CHECKS = [
    checks_mod.not_a_server_error,
    openapi_checks.response_schema_conformance,
    openapi_checks.status_code_conformance,
]


@pytest.fixture(scope="module", params=["open", "keyed"])
def fuzz_server(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    from abstractvision.server import create_app, serve_in_thread

    api_key = KEY if request.param == "keyed" else None
    # small output limits so generated sizes stay cheap for the fake backend
    app = create_app(
        FakeBackend(),
        api_key=api_key,
        max_output_pixels=128 * 128,
        max_n=2,
        queue_size=64,
        job_ttl_s=60,
    )
    with serve_in_thread(app) as server:
        yield server, request.param


def _operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_conforms_to_its_schema(fuzz_server: tuple[Any, str]) -> None:
    server, variant = fuzz_server
    headers = {"Authorization": f"Bearer {KEY}"} if variant == "keyed" else None
    checks = [*CHECKS, openapi_checks.ignored_auth] if variant == "keyed" else CHECKS
    operations = _operations(server.url)
    assert (
        len(operations) >= 19
    )  # all documented operations (tests/server/test_openapi.py ties them to ROUTES)
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"

        @given(case=operation.as_strategy())
        @settings(
            max_examples=_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=not is_long(),
            database=None,
        )
        def check(case: Any) -> None:
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            case.validate_response(response, checks=checks, headers=headers)
            STATS.outcome(f"server_schema[{variant}]", label)  # noqa: B023 (called in this iteration)
            STATS.outcome(f"server_schema_status[{variant}]", str(response.status_code))

        check()
