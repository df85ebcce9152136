"""HTTP faults against the OpenAI-compatible backend, from a socket-level server on loopback.

Every fault of :data:`fault_server.FAULTS` is injected into the image API and into output
downloads, once (the retry should recover) and on every request (the call must fail with
the right typed error), through the sync surface (``VisionManager``) and the native async
one (``AsyncVisionManager``). Every call must end within ``deadline_s`` plus a small
tolerance (measured), and no connection may be left open: this process's sockets to the
server are counted after every call and after the backend is closed, and the server counts
the connections still open on its side.

Then storms: runs of random calls (images, downloads, the model catalog, video jobs) with
0-3 random faults each, and concurrent calls under faults.

``ABSTRACTVISION_FUZZ=long`` makes the storms long (the convention of the reliability
suites); the figures go to ``STATS`` (``ABSTRACTVISION_RELIABILITY_STATS=<file.json>``).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

import pytest

from abstractvision import AsyncVisionManager, VisionManager
from abstractvision.backends import OpenAICompatibleVisionBackend
from abstractvision.errors import (
    GenerationTimeoutError,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderServerError,
    ProviderTimeoutError,
)
from reliability.fault_server import FAULTS, FaultServer, client_sockets

try:  # the shared run mode and figures of the reliability suites
    from reliability._support import STATS, is_long
except ImportError:  # pragma: no cover - the suites' support module is optional here
    STATS = None
    _LONG = os.environ.get("ABSTRACTVISION_FUZZ", "").strip().lower() == "long"

    def is_long() -> bool:
        return _LONG


LONG = is_long()

#: Backend settings: short timeouts so a stall costs well under a second.
TIMEOUT_S = 0.4
DEADLINE_S = 0.8
SETTINGS: dict[str, Any] = {
    "api_key": "sk-test-fault-0123456789",
    "timeout_s": TIMEOUT_S,
    "connect_timeout_s": 0.5,
    "deadline_s": DEADLINE_S,
    "max_retries": 2,
    "backoff_base_s": 0.01,
    "backoff_max_s": 0.05,
    "max_retry_after_s": 1.0,
    "poll_interval_s": 0.01,
}
#: How late a call may end after its deadline (scheduling on a loaded 2-core machine).
TOLERANCE_S = 0.4
#: A video job abandoned at the deadline is cancelled with a best-effort DELETE that has
#: its own budget of min(5 s, timeout_s): such calls may end that much later.
CLEANUP_S = min(5.0, TIMEOUT_S)

STORM_CALLS = 1000 if LONG else 25
STORM_SEEDS = [0, 1, 2] if LONG else [0]
CONCURRENT_CALLS = 32 if LONG else 8

pytestmark = pytest.mark.timeout(900 if LONG else 60)

Expected = tuple[type[BaseException], ...]
SUCCESS: Expected = ()
TYPED: Expected = (ProviderError, GenerationTimeoutError)

#: fault -> (outcome when injected once, outcome when injected on every request), for the
#: image API (``api``) and for output downloads (``download``). ``()`` is success.
_TRANSPORT: dict[str, tuple[Expected, Expected]] = {
    "ok": (SUCCESS, SUCCESS),
    "late_headers": (SUCCESS, SUCCESS),
    "reset": (SUCCESS, (ProviderConnectionError,)),
    "close": (SUCCESS, (ProviderConnectionError,)),
    "garbage": (SUCCESS, (ProviderConnectionError,)),
    "stall_headers": ((ProviderTimeoutError,), (ProviderTimeoutError,)),
    "no_read": ((ProviderTimeoutError,), (ProviderTimeoutError,)),  # small bodies: a read timeout
    "slow_headers": ((GenerationTimeoutError,), (GenerationTimeoutError,)),
    "stall_body": ((ProviderTimeoutError,), (ProviderTimeoutError,)),
    "slow_body": ((GenerationTimeoutError,), (GenerationTimeoutError,)),
    # the RST may arrive before the client read the headers: a connection error then
    "reset_mid_body": (SUCCESS, (ProviderResponseError, ProviderConnectionError)),
    "short_body": (SUCCESS, (ProviderResponseError,)),
    "chunked_cut": (SUCCESS, (ProviderResponseError,)),
    "bad_gzip": ((ProviderResponseError,), (ProviderResponseError,)),
    "empty_200": ((ProviderResponseError,), (ProviderResponseError,)),
    "html_200": ((ProviderResponseError,), (ProviderResponseError,)),
    "json_200": ((ProviderResponseError,), (ProviderResponseError,)),
    "status_429": (SUCCESS, (ProviderRateLimitError,)),
    "status_429_retry_after": (SUCCESS, (ProviderRateLimitError,)),
    "status_429_long_retry_after": ((ProviderRateLimitError,), (ProviderRateLimitError,)),
    "status_500": (SUCCESS, (ProviderServerError,)),
    "status_502_html": (SUCCESS, (ProviderServerError,)),
    "status_503": (SUCCESS, (ProviderServerError,)),
    "status_503_retry_after": (SUCCESS, (ProviderServerError,)),
    "status_503_retry_after_ms": (SUCCESS, (ProviderServerError,)),
    "redirect_offsite": ((ProviderResponseError,), (ProviderResponseError,)),
    # httpx rejects the Location while parsing the response: a protocol error, retried
    "redirect_bad_location": (SUCCESS, (ProviderConnectionError,)),
}
EXPECTED: dict[tuple[str, str], tuple[Expected, Expected]] = {
    **{(f, "api"): e for f, e in _TRANSPORT.items()},
    **{(f, "download"): e for f, e in _TRANSPORT.items()},
    ("redirect_loop", "api"): ((ProviderResponseError,), (ProviderResponseError,)),  # no API redirects
    ("redirect_loop", "download"): (SUCCESS, (ProviderResponseError,)),  # > 5 redirects
    ("bad_b64", "api"): ((ProviderResponseError,), (ProviderResponseError,)),
    ("b64_not_image", "api"): ((ProviderResponseError,), (ProviderResponseError,)),
    ("bad_url", "api"): ((ProviderResponseError,), (ProviderResponseError,)),
    ("not_image", "download"): ((ProviderResponseError,), (ProviderResponseError,)),
}
assert {f for f, _ in EXPECTED} == set(FAULTS), "every fault needs an expectation"
CASES = sorted(EXPECTED)
ROUTES = {"api": "/images/", "download": "/files/"}


# -- figures --------------------------------------------------------------------------


class Figures:
    """What the suite did, for docs/reliability-http-faults.md and ``STATS``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.injected: collections.Counter[str] = collections.Counter()
        self.worst_ratio = 0.0  # elapsed / deadline
        self.worst_over_s = -1e9  # elapsed - deadline
        self.worst_call = ""
        self.worst_over_budget_s = -1e9  # elapsed - (deadline + the video cleanup allowance)
        self.sockets_before = 0
        self.late_releases = 0  # sockets over the bound right after a call, released within 1 s
        self.sockets_max_between_calls = 0
        self.sockets_after_close = 0
        self.server_open_after_close = 0

    def call(self, label: str, outcome: str, elapsed: float, deadline: float, allowance: float = 0.0) -> None:
        with self.lock:
            self.calls += 1
            self.outcomes[outcome] += 1
            self.worst_ratio = max(self.worst_ratio, elapsed / deadline)
            self.worst_over_budget_s = max(self.worst_over_budget_s, elapsed - deadline - allowance)
            if elapsed - deadline > self.worst_over_s:
                self.worst_over_s, self.worst_call = elapsed - deadline, f"{label}: {elapsed:.3f} s"

    def server(self, server: FaultServer) -> None:
        with self.lock:
            self.injected.update(server.injected)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": "long" if LONG else "ci",
            "calls": self.calls,
            "faults_injected": sum(self.injected.values()),
            "faults_by_kind": dict(sorted(self.injected.items())),
            "outcomes": dict(sorted(self.outcomes.items())),
            "deadline_s": DEADLINE_S,
            "max_elapsed_over_deadline_ratio": round(self.worst_ratio, 3),
            "max_overshoot_s": round(self.worst_over_s, 3),
            "max_overshoot_beyond_cleanup_allowance_s": round(self.worst_over_budget_s, 3),
            "slowest_call": self.worst_call,
            "client_sockets_before": self.sockets_before,
            "client_sockets_max_between_calls": self.sockets_max_between_calls,
            "client_sockets_released_late": self.late_releases,
            "client_sockets_after_close": self.sockets_after_close,
            "server_connections_after_close": self.server_open_after_close,
        }


FIGURES = Figures()


@pytest.fixture(scope="module", autouse=True)
def _report_figures() -> Iterator[None]:
    started = time.perf_counter()
    yield
    if STATS is not None:
        STATS.figure("http_faults", **FIGURES.as_dict(), duration_s=round(time.perf_counter() - started, 2))
        for outcome, count in FIGURES.outcomes.items():
            for _ in range(count):
                STATS.outcome("http_faults", outcome)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only: a proxy from the environment would also switch off DeadlineTransport."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# -- running calls --------------------------------------------------------------------


@dataclass
class Result:
    error: Optional[BaseException]
    elapsed: float

    @property
    def outcome(self) -> str:
        return "success" if self.error is None else type(self.error).__name__


class Client:
    """One backend on the fault server, driven through the sync or the async surface."""

    def __init__(self, mode: str, server: FaultServer, **overrides: Any) -> None:
        self.mode = mode
        self.server = server
        self.backend = OpenAICompatibleVisionBackend(base_url=server.base_url, **{**SETTINGS, **overrides})
        self.deadline = float(self.backend.config.deadline_s or 0)
        self.loop = asyncio.new_event_loop() if mode == "async" else None
        self.sync_vm = VisionManager(backend=self.backend)
        self.async_vm = AsyncVisionManager(backend=self.backend)
        before = client_sockets(server.port) or 0
        with FIGURES.lock:
            FIGURES.sockets_before = max(FIGURES.sockets_before, before)

    async def _acall(self, op: str) -> Any:
        if op == "models":
            return await self.backend.alist_provider_models()
        if op == "video":
            return await self.async_vm.generate_video("waves")
        extra = {"response_format": "url"} if op == "image_url" else {}
        return await self.async_vm.generate_image("a lighthouse", extra=extra)

    def _call(self, op: str) -> Any:
        if op == "models":
            return self.backend.list_provider_models()
        if op == "video":
            return self.sync_vm.generate_video("waves")
        extra = {"response_format": "url"} if op == "image_url" else {}
        return self.sync_vm.generate_image("a lighthouse", extra=extra)

    def run(self, op: str, label: str = "") -> Result:
        started = time.monotonic()
        try:
            if self.loop is not None:
                self.loop.run_until_complete(self._acall(op))
            else:
                self._call(op)
            error: Optional[BaseException] = None
        except Exception as exc:
            error = exc
        result = Result(error, time.monotonic() - started)
        allowance = CLEANUP_S if op == "video" else 0.0
        FIGURES.call(label or op, result.outcome, result.elapsed, self.deadline, allowance)
        return result

    def sockets(self) -> Optional[int]:
        if self.loop is not None and not self.loop.is_closed():
            # asyncio closes a transport's socket on the loop's next iteration
            self.loop.run_until_complete(asyncio.sleep(0.01))
        return client_sockets(self.server.port)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.backend.aclose())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
        else:
            self.backend.close()


def check_outcome(result: Result, expected: Expected, what: str) -> None:
    if not expected:
        assert result.error is None, f"{what}: expected success, got {result.error!r}"
        return
    assert result.error is not None, f"{what}: expected {[e.__name__ for e in expected]}, got success"
    assert isinstance(result.error, expected), (
        f"{what}: expected {[e.__name__ for e in expected]}, got {type(result.error).__name__}: {result.error}"
    )


def check_time(result: Result, budget: float, what: str) -> None:
    assert result.elapsed <= budget + TOLERANCE_S, f"{what}: {result.elapsed:.3f} s for a {budget:g} s budget"


def check_closed(client: Client) -> None:
    """After close(): no socket of ours to the server, and the server saw every connection end."""
    client.close()
    left = client.sockets()
    open_on_server = client.server.wait_closed(timeout=3.0)
    with FIGURES.lock:
        FIGURES.sockets_after_close = max(FIGURES.sockets_after_close, left or 0)
        FIGURES.server_open_after_close = max(FIGURES.server_open_after_close, open_on_server)
    assert left in (0, None), f"{left} client socket(s) still open after close()"
    assert open_on_server == 0, f"{open_on_server} connection(s) still open on the server"


def note_sockets(client: Client, bound: int, label: str = "") -> None:
    """At most ``bound`` sockets open between calls (the pool's idle keep-alive connection).

    A socket over the bound gets up to a second (the event loop running, a garbage
    collection) before it counts as a leak; such late releases are counted in the figures.
    """
    count = client.sockets()
    if count is None:
        return
    late = count > bound
    for _ in range(20):
        if count <= bound:
            break
        gc.collect()
        time.sleep(0.05)
        count = client.sockets() or 0
    with FIGURES.lock:
        FIGURES.sockets_max_between_calls = max(FIGURES.sockets_max_between_calls, count)
        FIGURES.late_releases += int(late and count <= bound)
    assert count <= bound, (
        f"{label}: {count} sockets open between sequential calls (at most {bound} expected)"
    )


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(trickle_s=0.02, stall_s=30.0) as srv:
        yield srv
        FIGURES.server(srv)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- every fault, once and persistent -------------------------------------------------


def _retried(fault: str, surface: str) -> bool:
    once, always = EXPECTED[(fault, surface)]
    return once == SUCCESS and always != SUCCESS


RETRIED = [c for c in CASES if _retried(*c)]


@pytest.mark.parametrize(("fault", "surface"), RETRIED, ids=[f"{f}-{s}" for f, s in RETRIED])
def test_a_single_fault_is_retried_to_success(
    mode: str, server: FaultServer, fault: str, surface: str
) -> None:
    client = Client(mode, server)
    server.inject(fault, route=ROUTES[surface])
    try:
        result = client.run("image_url" if surface == "download" else "image_b64", f"{fault} once")
        check_outcome(result, SUCCESS, f"{fault} once on {surface}")
        check_time(result, client.deadline, fault)
        assert server.injected[fault] == 1
        note_sockets(client, 1)
    finally:
        check_closed(client)


@pytest.mark.parametrize(("fault", "surface"), CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_a_persistent_fault_ends_in_its_typed_error_within_the_deadline(
    mode: str, server: FaultServer, fault: str, surface: str
) -> None:
    client = Client(mode, server)
    server.always(fault, route=ROUTES[surface])
    try:
        result = client.run("image_url" if surface == "download" else "image_b64", f"{fault} always")
        check_outcome(result, EXPECTED[(fault, surface)][1], f"{fault} always on {surface}")
        check_time(result, client.deadline, fault)
        note_sockets(client, 1)
    finally:
        check_closed(client)


# -- retries against storms of 429/5xx --------------------------------------------------


@pytest.mark.parametrize("storm", [1, 2, 3], ids=lambda n: f"{n}-in-a-row")
def test_a_429_5xx_storm_is_retried_up_to_max_retries(mode: str, server: FaultServer, storm: int) -> None:
    faults = ["status_429_retry_after", "status_503", "status_502_html"][:storm]
    server.inject(*faults, route="/images/")
    client = Client(mode, server)
    try:
        result = client.run("image_b64", f"storm of {storm}")
        expected = SUCCESS if storm <= 2 else (ProviderServerError, ProviderRateLimitError)
        check_outcome(result, expected, f"{storm} errors in a row")
        check_time(result, client.deadline, "storm")
        assert len(server.served) == min(storm + 1, 3)
        assert result.elapsed >= 0.05  # the first Retry-After was honoured
    finally:
        check_closed(client)


def test_a_retry_after_beyond_the_deadline_fails_at_once_instead_of_sleeping(
    mode: str, server: FaultServer
) -> None:
    """A Retry-After the deadline cannot accommodate is not slept through."""
    client = Client(mode, server, max_retry_after_s=30.0, deadline_s=0.6)
    server.always("status_429_long_retry_after", route="/images/")  # Retry-After: 3600
    try:
        result = client.run("image_b64", "retry-after beyond deadline")
        check_outcome(result, (ProviderRateLimitError,), "Retry-After 3600")
        assert result.elapsed < 0.3
        assert isinstance(result.error, ProviderRateLimitError) and result.error.retry_after == 3600
    finally:
        check_closed(client)


def test_connection_refused_is_a_connection_error_within_the_deadline(mode: str) -> None:
    with FaultServer() as srv:
        port = srv.port
    client = Client(mode, srv)  # stopped: nothing listens on its port any more
    assert srv.port == port
    try:
        result = client.run("image_b64", "connection refused")
        check_outcome(result, (ProviderConnectionError,), "connection refused")
        check_time(result, client.deadline, "connection refused")
        assert f"127.0.0.1:{port}" in str(result.error)
    finally:
        client.close()
        assert client.sockets() in (0, None)


# -- storms of random faults --------------------------------------------------------------

#: operation -> the routes its requests take (for fault injection).
OPERATIONS = {
    "image_b64": ["/images/"],
    "image_url": ["/images/", "/files/"],
    "models": ["/models"],
    "video": ["/videos", "/videos/"],
}
#: faults that only make sense on some routes.
_ONLY_ON = {
    "bad_b64": {"/images/"},
    "b64_not_image": {"/images/"},
    "bad_url": {"/images/"},
    "not_image": {"/files/"},
    "redirect_loop": {"/files/"},
}


def _random_faults(rng: random.Random, op: str) -> list[tuple[str, str]]:
    out = []
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        route = rng.choice(OPERATIONS[op])
        fault = rng.choice([f for f in FAULTS if route in _ONLY_ON.get(f, {route})])
        out.append((fault, route))
    return out


@pytest.mark.parametrize("seed", STORM_SEEDS)
def test_a_storm_of_random_faults(mode: str, server: FaultServer, seed: int) -> None:
    """Random calls with 0-3 random faults each: success or a typed error, within the
    deadline, at most one connection kept between calls, none after close()."""
    rng = random.Random(f"{mode}-{seed}")
    client = Client(mode, server)
    try:
        for i in range(STORM_CALLS):
            op = rng.choice(list(OPERATIONS))
            faults = _random_faults(rng, op)
            server.clear()
            for fault, route in faults:
                server.inject(fault, route=route)
            label = f"storm call {i}: {op} with {faults}"
            result = client.run(op, label)
            if not faults or all(f in ("ok", "late_headers") for f, _ in faults):
                check_outcome(result, SUCCESS, label)
            elif result.error is not None:
                check_outcome(result, TYPED, label)
            # a video job abandoned at the deadline is cancelled with a best-effort DELETE
            check_time(result, client.deadline + (CLEANUP_S if op == "video" else 0.0), label)
            note_sockets(client, 1, label)
    finally:
        server.clear()
        check_closed(client)


def test_concurrent_calls_under_faults_leave_no_connection_open(mode: str, server: FaultServer) -> None:
    """N calls in flight together (threads, or AsyncVisionManager tasks), each hit by a fault."""
    rng = random.Random(f"concurrent-{mode}")
    faults = [rng.choice(list(_TRANSPORT)) for _ in range(CONCURRENT_CALLS)]
    server.inject(*faults, route="/images/")
    client = Client(mode, server)
    try:
        if client.loop is not None:

            async def one() -> Result:
                started = time.monotonic()
                try:
                    await client.async_vm.generate_image("x")
                    return Result(None, time.monotonic() - started)
                except Exception as exc:
                    return Result(exc, time.monotonic() - started)

            async def scenario() -> list[Result]:
                return await asyncio.gather(*(one() for _ in range(CONCURRENT_CALLS)))

            results = client.loop.run_until_complete(scenario())
            for r in results:
                FIGURES.call("concurrent", r.outcome, r.elapsed, client.deadline)
        else:
            with ThreadPoolExecutor(CONCURRENT_CALLS) as pool:
                results = list(
                    pool.map(lambda _: client.run("image_b64", "concurrent"), range(CONCURRENT_CALLS))
                )
        for r in results:
            if r.error is not None:
                check_outcome(r, TYPED, "concurrent call")
            check_time(r, client.deadline, "concurrent call")
        count = client.sockets()
        assert count is None or count <= CONCURRENT_CALLS
    finally:
        check_closed(client)
