"""Failure handling over real HTTP: retries, timeouts, bad bodies, download limits, secrets."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from openai_fake_server import FakeOpenAIServer, Reply, png_bytes

from abstractvision.errors import (
    GenerationTimeoutError,
    ProviderAuthenticationError,
    ProviderBadRequestError,
    ProviderConnectionError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderServerError,
    ProviderTimeoutError,
)
from conftest import API_KEY

GEN = ("POST", "/images/generations")


def _error(status, message="nope", **headers):
    return Reply(
        status,
        json={"error": {"message": message, "type": "x"}},
        headers={"x-request-id": "req_err", **headers},
    )


def test_429_is_retried_after_the_retry_after_delay(vm, server):
    server.script(*GEN, _error(429, "slow down", **{"Retry-After": "0.3"}))
    started = time.monotonic()
    assert vm.generate_image("x").mime_type == "image/png"
    assert time.monotonic() - started >= 0.3  # backoff alone would be <= 0.05 s
    assert len(server.calls(*GEN)) == 2


def test_503_is_retried_with_backoff_until_success(vm, server):
    server.script(*GEN, _error(503), _error(503))
    assert vm.generate_image("x").mime_type == "image/png"
    assert len(server.calls(*GEN)) == 3


def test_5xx_after_the_last_retry_raises_a_typed_error(runner, make_backend, server):
    server.script(*GEN, _error(503, "overloaded"), _error(502, "bad gateway"))
    vm = runner.manager(make_backend(max_retries=1))
    with pytest.raises(ProviderServerError) as info:
        vm.generate_image("x")
    err = info.value
    assert err.status_code == 502 and err.request_id == "req_err"
    assert err.body == {"error": {"message": "bad gateway", "type": "x"}}
    assert "HTTP 502: bad gateway" in str(err)
    assert len(server.calls(*GEN)) == 2


def test_400_is_not_retried(vm, server):
    server.script(*GEN, _error(400, "bad size"))
    with pytest.raises(ProviderBadRequestError, match="bad size") as info:
        vm.generate_image("x")
    assert info.value.status_code == 400 and info.value.request_id == "req_err"
    assert len(server.calls(*GEN)) == 1


def test_429_with_a_too_long_retry_after_is_raised_at_once(vm, server):
    server.script(*GEN, _error(429, "quota", **{"Retry-After": "3600"}))
    with pytest.raises(ProviderRateLimitError) as info:
        vm.generate_image("x")
    assert info.value.retry_after == 3600 and len(server.calls(*GEN)) == 1


def test_the_api_key_never_leaks_into_errors_or_logs(vm, server, caplog):
    caplog.set_level(logging.DEBUG)
    server.script(*GEN, _error(503, f"boom {API_KEY}"), _error(401, f"Incorrect API key provided: {API_KEY}"))
    with pytest.raises(ProviderAuthenticationError) as info:
        vm.generate_image("x")
    err = info.value
    everything = " ".join([str(err), repr(err), repr(err.body), caplog.text, repr(err.__cause__)])
    assert API_KEY not in everything
    assert "***" in str(err) and "api_key" in str(err)
    assert "retry 1 of 2" in caplog.text


def test_read_timeout_fires_and_is_not_retried(runner, make_backend, server):
    server.script(*GEN, Reply(delay_s=1.0, json={}))
    vm = runner.manager(make_backend(timeout_s=0.2))
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match=r"read timeout after 0\.2 s"):
        vm.generate_image("x")
    assert time.monotonic() - started < 0.9
    assert len(server.calls(*GEN)) == 1


def test_overall_deadline_caps_a_slow_request(runner, make_backend, server):
    server.script(*GEN, Reply(delay_s=1.0, json={}))
    vm = runner.manager(make_backend(deadline_s=0.25))
    started = time.monotonic()
    with pytest.raises(GenerationTimeoutError):
        vm.generate_image("x")
    assert time.monotonic() - started < 0.9


def test_deadline_per_call_through_extra(vm, server):
    server.script(*GEN, Reply(delay_s=1.0, json={}))
    with pytest.raises(GenerationTimeoutError, match=r"0\.2 s deadline"):
        vm.generate_image("x", extra={"deadline_s": 0.2})


def test_malformed_json_is_a_response_error_without_retry(vm, server):
    server.script(*GEN, Reply(body=b'{"data": [', headers={"Content-Type": "application/json"}))
    with pytest.raises(ProviderResponseError, match="not valid JSON"):
        vm.generate_image("x")
    assert len(server.calls(*GEN)) == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"nothing": 1},
        {"data": []},
        {"data": [{"b64_json": "***not base64***"}]},
        {"data": [{"b64_json": "aGVsbG8="}]},
    ],
    ids=["no-data", "empty", "bad-base64", "not-an-image"],
)
def test_unusable_bodies_are_response_errors(vm, server, payload):
    server.script(*GEN, Reply(json=payload))
    with pytest.raises(ProviderResponseError):
        vm.generate_image("x")


def test_truncated_body_is_retried_then_reported(runner, make_backend, server):
    body = b'{"data": [{"b64_json": "' + b"A" * 1000 + b'"}]}'
    server.script(*GEN, Reply(body=body, truncate_to=50), Reply(body=body, truncate_to=50))
    vm = runner.manager(make_backend(max_retries=1))
    with pytest.raises(ProviderResponseError, match="truncated"):
        vm.generate_image("x")
    assert len(server.calls(*GEN)) == 2


def test_dropped_connection_is_a_connection_error_and_retried(vm, server):
    server.script(*GEN, Reply(drop=True))
    assert vm.generate_image("x").mime_type == "image/png"
    assert len(server.calls(*GEN)) == 2


def test_connection_refused(runner, make_backend):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    vm = runner.manager(make_backend(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1))
    with pytest.raises(ProviderConnectionError, match=f"127.0.0.1:{port}"):
        vm.generate_image("x")


def _serve_file(server, body, **reply):
    server.script(*GEN, Reply(json={"data": [{"url": f"{server.origin}/files/big.png"}]}))
    server.script("GET", "/files/big.png", Reply(body=body, headers={"Content-Type": "image/png"}, **reply))


@pytest.mark.parametrize("no_length", [False, True], ids=["content-length", "streamed"])
def test_oversized_download_is_refused(runner, make_backend, server, no_length):
    _serve_file(server, png_bytes() + b"\0" * 300_000, no_length=no_length)
    vm = runner.manager(make_backend(max_download_bytes=100_000))
    with pytest.raises(ProviderResponseError, match="too large"):
        vm.generate_image("x")


def test_oversized_json_body_is_refused(runner, make_backend, server):
    vm = runner.manager(make_backend(max_download_bytes=200))
    with pytest.raises(ProviderResponseError, match="too large"):
        vm.generate_image("x")


def test_redirect_to_another_host_is_refused(vm, server):
    server.script(*GEN, Reply(json={"data": [{"url": f"{server.origin}/files/r.png"}]}))
    server.script("GET", "/files/r.png", Reply(302, headers={"Location": "http://evil.example/steal.png"}))
    with pytest.raises(ProviderResponseError, match=r"refusing to download http://evil.example/steal.png"):
        vm.generate_image("x")


def test_url_on_another_host_is_refused_unless_allowed(runner, make_backend, server):
    other = FakeOpenAIServer().start()
    try:
        other.files["o.png"] = png_bytes()
        url = f"{other.origin}/files/o.png"
        server.script(*GEN, Reply(json={"data": [{"url": url}]}), Reply(json={"data": [{"url": url}]}))
        with pytest.raises(ProviderResponseError, match="not the provider's host"):
            runner.manager(make_backend()).generate_image("x")
        assert other.requests == []
        vm = runner.manager(make_backend(allowed_download_hosts=(f"127.0.0.1:{other.port}",)))
        assert vm.generate_image("x").mime_type == "image/png"
        [download] = other.requests
        assert "authorization" not in download.headers  # the key only goes to the provider
    finally:
        other.stop()


def test_redirect_within_the_provider_is_followed(vm, server):
    server.files["final.png"] = png_bytes()
    server.script(*GEN, Reply(json={"data": [{"url": f"{server.origin}/files/start.png"}]}))
    server.script("GET", "/files/start.png", Reply(307, headers={"Location": "/files/final.png"}))
    assert vm.generate_image("x").mime_type == "image/png"


def test_an_api_redirect_is_an_error(vm, server):
    server.script(*GEN, Reply(301, headers={"Location": "https://elsewhere.example/v1/images/generations"}))
    with pytest.raises(ProviderResponseError, match="unexpected redirect"):
        vm.generate_image("x")
