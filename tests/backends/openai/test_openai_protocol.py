"""The I/O-free layer on its own: retry decisions, Retry-After, errors, redaction, encoding."""

from __future__ import annotations

import email.utils

import pytest
from openai_fake_server import Recorded

from abstractvision.backends._openai import catalog, protocol, responses
from abstractvision.errors import (
    ProviderAuthenticationError,
    ProviderBadRequestError,
    ProviderConflictError,
    ProviderNotFoundError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderServerError,
    ProviderTimeoutError,
)


def test_parse_retry_after_forms():
    assert protocol.parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert protocol.parse_retry_after({"retry-after": "2"}) == 2.0
    assert protocol.parse_retry_after({"retry-after": "0.5"}) == 0.5
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert protocol.parse_retry_after({"retry-after": date}, now=1_000_000) == pytest.approx(30)
    assert protocol.parse_retry_after({"retry-after": "soon"}) is None
    assert protocol.parse_retry_after({}) is None


def test_backoff_is_exponential_with_jitter_and_capped():
    policy = protocol.RetryPolicy(max_retries=10, backoff_base_s=1.0, backoff_max_s=8.0)
    for attempt, cap in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(delays) > 1  # jittered
    assert policy.delay(0, retry_after=3.0) == 3.0
    assert policy.delay(0, retry_after=61.0) is None  # longer than max_retry_after_s
    assert protocol.RetryPolicy(max_retries=2).delay(2) is None


@pytest.mark.parametrize(
    "status, retry",
    [
        (408, True),
        (409, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
        (501, False),
    ],
)
def test_retryable_statuses(status, retry):
    assert protocol.is_retryable_status(status) is retry


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, ProviderBadRequestError),
        (401, ProviderAuthenticationError),
        (403, ProviderAuthenticationError),
        (404, ProviderNotFoundError),
        (408, ProviderTimeoutError),
        (409, ProviderConflictError),
        (422, ProviderBadRequestError),
        (429, ProviderRateLimitError),
        (500, ProviderServerError),
        (302, ProviderResponseError),
    ],
)
def test_error_from_reply_maps_statuses(status, cls):
    reply = protocol.Reply(
        status, {"x-request-id": "r1", "retry-after": "1"}, b'{"error": {"message": "m"}}', "u"
    )
    err = protocol.error_from_reply(reply, what="POST /x", secrets=())
    assert type(err) is cls and err.status_code == status and err.request_id == "r1"
    if cls is ProviderRateLimitError:
        assert err.retry_after == 1.0


def test_redact_walks_nested_values():
    value = {"a": ["sk-123456 here", ("sk-123456",)], "sk-123456": 3, "n": 1}
    assert protocol.redact(value, ["sk-123456"]) == {"a": ["*** here", ("***",)], "***": 3, "n": 1}


def test_multipart_round_trip_through_a_real_parser():
    ctype, body = protocol.encode_multipart(
        [("prompt", 'say "hi"\nnow'), ("n", "2")],
        [("image[]", 'a"b.png', b"\x89PNG\r\n\x1a\nxx", "image/png")],
    )
    fields, files = Recorded("POST", "/", "", {"content-type": ctype}, body).form()
    assert fields == {"prompt": ['say "hi"\nnow'], "n": ["2"]}
    assert [(f.name, f.content_type, f.data) for f in files] == [
        ("image[]", "image/png", b"\x89PNG\r\n\x1a\nxx")
    ]


def test_download_allow_list():
    wire = protocol.Wire(
        "http://127.0.0.1:8000/v1", {}, {}, (), allowed_hosts=("cdn.example", "files:9000", "*.blob.example")
    )
    allowed = protocol.download_allowed
    assert allowed(wire, "http://127.0.0.1:8000/files/a.png")
    assert not allowed(wire, "http://127.0.0.1:8001/files/a.png")  # another port is another origin
    assert allowed(wire, "https://cdn.example/a.png")
    assert allowed(wire, "http://files:9000/a.png") and not allowed(wire, "http://files:9001/a.png")
    assert allowed(wire, "https://x.blob.example/a.png") and not allowed(
        wire, "https://blob.example.evil/a.png"
    )
    assert not allowed(wire, "ftp://cdn.example/a.png") and not allowed(wire, "file:///etc/passwd")
    assert not allowed(wire, "http://127.0.0.1:notaport/a.png")


def test_decode_b64_accepts_data_urls_and_whitespace():
    assert (
        responses.decode_b64("data:image/png;base64,aGVs\nbG8=", what="x", reply=None, max_bytes=100)
        == b"hello"
    )
    with pytest.raises(ProviderResponseError, match="larger than"):
        responses.decode_b64("aGVsbG8=" * 100, what="x", reply=None, max_bytes=10)


def test_declared_task_aliases():
    assert catalog.declared_tasks({"capabilities": ["txt2img", "Image-To-Video"]}) == (
        "image_to_video",
        "text_to_image",
    )
    assert catalog.declared_tasks({"task": "text-to-image"}) == ("text_to_image",)
    assert catalog.declared_tasks({"capabilities": {"inpainting": True, "t2v": False}}) == (
        "image_to_image",
    )
    assert catalog.declared_tasks({"capabilities": ["chat"]}) == ()
    assert catalog.declared_tasks({"id": "x"}) is None


def test_deadline_and_cancel_checks():
    import threading

    from abstractvision.errors import GenerationCancelledError, GenerationTimeoutError

    assert protocol.Deadline(None, what="x").remaining() == float("inf")
    with pytest.raises(GenerationTimeoutError):
        protocol.Deadline(1e-9, what="x").check()
    token = threading.Event()
    protocol.check_cancel(token, "x")
    token.set()
    with pytest.raises(GenerationCancelledError):
        protocol.check_cancel(token, "x")
