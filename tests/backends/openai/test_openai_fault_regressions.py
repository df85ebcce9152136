"""Regression tests for the bugs the HTTP fault suite (tests/reliability/test_http_faults.py) found.

Each test names the bug; the fix is in the commit that added the test. The misbehaving
server is :class:`reliability.fault_server.FaultServer` (raw sockets on 127.0.0.1).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from abstractvision.backends import OpenAICompatibleVisionBackend
from abstractvision.errors import GenerationTimeoutError, ProviderError, ProviderResponseError
from reliability.fault_server import FaultServer, client_sockets

FAST = {
    "api_key": "sk-test-0123456789abcdef",
    "backoff_base_s": 0.01,
    "backoff_max_s": 0.05,
    "poll_interval_s": 0.01,
    "connect_timeout_s": 0.5,
    "max_retries": 2,
}


def _close(runner, backend: OpenAICompatibleVisionBackend) -> None:
    if runner.is_async:
        runner.run(backend.aclose())
    else:
        backend.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    with FaultServer(trickle_s=0.02) as srv:
        yield srv


@pytest.mark.parametrize("fault", ["slow_headers", "slow_body"])
def test_a_server_trickling_bytes_cannot_hold_a_call_past_its_deadline(runner, fault_server, fault):
    """Bug: httpx times each socket read separately, so endless headers sent one byte at a
    time never timed out (60 s for a 1 s deadline), and a read started just before the
    deadline could wait a whole timeout_s past it."""
    fault_server.always(fault)
    backend = OpenAICompatibleVisionBackend(
        base_url=fault_server.base_url, timeout_s=0.8, deadline_s=0.6, **FAST
    )
    vm = runner.manager(backend)
    started = time.monotonic()
    try:
        with pytest.raises(GenerationTimeoutError):
            vm.generate_image("x")
    finally:
        _close(runner, backend)
    assert time.monotonic() - started < 0.6 + 0.25


def test_slow_body_with_gaps_longer_than_the_time_left(runner):
    """Bug (same fix): a read started 0.5 s before the deadline waited up to timeout_s."""
    with FaultServer(trickle_s=0.45) as srv:
        srv.always("slow_body")
        backend = OpenAICompatibleVisionBackend(base_url=srv.base_url, timeout_s=2.0, deadline_s=0.7, **FAST)
        started = time.monotonic()
        try:
            with pytest.raises(GenerationTimeoutError):
                runner.manager(backend).generate_image("x")
        finally:
            _close(runner, backend)
        assert time.monotonic() - started < 0.7 + 0.25


def test_an_invalid_output_url_is_a_response_error(runner, fault_server):
    """Bug: an output URL httpx cannot request (here a control character) leaked
    httpx.InvalidURL, which the manager wrapped as BackendError."""
    fault_server.inject("bad_url", route="/images/")
    backend = OpenAICompatibleVisionBackend(base_url=fault_server.base_url, response_format="url", **FAST)
    try:
        with pytest.raises(ProviderResponseError, match="invalid URL"):
            runner.manager(backend).generate_image("x")
    finally:
        _close(runner, backend)


def test_bytes_declared_image_png_must_be_an_image(runner, fault_server):
    """Bug: a download answered 'Content-Type: image/png' with bytes that are no image was
    accepted as a PNG (the declared type was trusted when sniffing found nothing)."""
    fault_server.inject("not_image", route="/files/")
    backend = OpenAICompatibleVisionBackend(base_url=fault_server.base_url, response_format="url", **FAST)
    try:
        with pytest.raises(ProviderResponseError, match="expected image bytes"):
            runner.manager(backend).generate_image("x")
    finally:
        _close(runner, backend)


def test_a_declared_format_that_cannot_be_sniffed_is_still_trusted():
    from abstractvision.backends._openai import responses

    asset = responses.media_asset(
        b"P6\n8 8\n255\n" + bytes(192),
        media_type="image",
        declared_mime="image/x-portable-pixmap",
        metadata={},
        what="GET x",
        reply=None,
    )
    assert asset.mime_type == "image/x-portable-pixmap"


def test_a_batch_sent_one_seed_at_a_time_shares_one_deadline(runner):
    """Bug: a batch whose seeds are not consecutive is sent as one request per seed, and each
    request got a fresh deadline_s: three slow answers took 3 x the call's budget."""
    with FaultServer(late_s=0.25) as srv:
        srv.always("late_headers")
        backend = OpenAICompatibleVisionBackend(base_url=srv.base_url, deadline_s=0.6, **FAST)
        started = time.monotonic()
        try:
            with pytest.raises(GenerationTimeoutError):
                runner.manager(backend).generate_image_batch("x", seeds=[5, 1, 9])
        finally:
            _close(runner, backend)
        assert time.monotonic() - started < 0.6 + 0.25


def test_async_connections_do_not_outlive_their_event_loop(fault_server):
    """Bug: each asyncio.run() got a new AsyncClient and the previous one, whose loop had
    closed, kept its keep-alive connection open until garbage collection; close() after the
    loop ended could not close it either (3 runs: 3 sockets left open)."""
    import asyncio

    from abstractvision.types import ImageGenerationRequest

    backend = OpenAICompatibleVisionBackend(base_url=fault_server.base_url, **FAST)
    for _ in range(3):
        asyncio.run(backend.agenerate_image(ImageGenerationRequest(prompt="x")))
        assert client_sockets(fault_server.port) in (0, None)
    backend.close()
    assert fault_server.wait_closed(timeout=5.0) == 0


def test_a_truncated_body_error_names_the_failure(runner, fault_server):
    """Bug: a reset mid-body read 'the response body was truncated ()' on the async path
    (the httpx error carries no text)."""
    backend = OpenAICompatibleVisionBackend(base_url=fault_server.base_url, **{**FAST, "max_retries": 0})
    fault_server.always("reset_mid_body")
    try:
        with pytest.raises(ProviderError) as info:
            runner.manager(backend).generate_image("x")
    finally:
        _close(runner, backend)
    assert "()" not in str(info.value)


def test_a_bad_video_download_names_the_content_request(runner, fault_server):
    """Bug: bytes from GET /videos/{id}/content that were no video were reported as a
    'POST /videos' error."""
    backend = OpenAICompatibleVisionBackend(base_url=fault_server.base_url, **FAST)
    fault_server.always("html_200", route="/videos/video_1/content")
    try:
        with pytest.raises(ProviderResponseError, match=r"^GET /videos/\{id\}/content: expected video bytes"):
            runner.manager(backend).generate_video("x")
    finally:
        _close(runner, backend)


def test_the_async_deadline_cut_does_not_leave_connections_open():
    """Bug (in the first fix of the trickle bug): asyncio.wait_for cancelled the exchange
    natively; landing in httpcore's connection cleanup, the cancel left the connection open
    in the pool (16 open sockets after 20 timed-out calls)."""
    import asyncio

    from abstractvision.types import ImageGenerationRequest

    with FaultServer(trickle_s=0.001) as srv:
        srv.always("slow_body")
        backend = OpenAICompatibleVisionBackend(base_url=srv.base_url, deadline_s=0.2, **FAST)
        loop = asyncio.new_event_loop()
        try:
            for _ in range(10):
                with pytest.raises(GenerationTimeoutError):
                    loop.run_until_complete(backend.agenerate_image(ImageGenerationRequest(prompt="x")))
                loop.run_until_complete(asyncio.sleep(0.02))  # let closed transports go
                assert client_sockets(srv.port) in (0, None)
        finally:
            loop.run_until_complete(backend.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def test_an_upload_the_server_stops_reading_is_a_write_timeout(runner, fault_server):
    """Bug: a server that stopped reading an upload (the socket buffers full) was reported
    as 'read timeout after ... s'."""
    from abstractvision.errors import ProviderTimeoutError
    from reliability.fault_server import png_bytes

    fault_server.inject("no_read", route="/images/edits")
    backend = OpenAICompatibleVisionBackend(base_url=fault_server.base_url, timeout_s=0.3, **FAST)
    image = png_bytes() + bytes(16 * 1024 * 1024)  # more than loopback socket buffers hold
    try:
        with pytest.raises(
            ProviderTimeoutError, match=r"write timeout after 0\.3 s: the server stopped reading"
        ):
            runner.manager(backend).edit_image("x", image)
    finally:
        _close(runner, backend)
    assert fault_server.wait_closed(timeout=5.0) == 0
