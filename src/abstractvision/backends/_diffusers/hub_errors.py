"""Why a download from the Hugging Face Hub failed, and what to do about it.

Diffusers reports every failed download the same way ("the model is not fully cached locally
... an error occurred while trying to fetch metadata from the Hub. Please check out the root
cause in the stacktrace above"), with the real cause chained behind it: a DNS failure, a
refused connection, a timeout, or the hub's own answer (401 for a gated model, 404 for an
unknown id). :func:`describe_download_failure` walks that chain and says, in one message, which
download failed, the cause, and the fix.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Optional
from urllib.parse import urlsplit

__all__ = ["describe_download_failure", "download_advice", "hub_endpoint"]

_DNS_TEXTS = ("name or service not known", "temporary failure in name resolution", "nodename nor servname")
_OFFLINE_FIX = (
    "download it on a machine that has network access (`hf download {model}`), copy the folder here "
    "and pass that folder as the model"
)


def download_advice(model: str) -> str:
    """What to do when ``model`` is not on disk and downloads are off."""
    return (
        f"Pre-download it with `hf download {model}` (or `huggingface-cli download {model}`), "
        "pass a local directory as model_id, or let the backend download it: allow_download=True "
        "(--allow-download on the command line)."
    )


def hub_endpoint() -> str:
    """The hub URL downloads go to (``HF_ENDPOINT``, default https://huggingface.co)."""
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT).rstrip("/")
    except Exception:  # no huggingface_hub: nothing was downloaded anyway
        return "https://huggingface.co"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status(exc: BaseException) -> Optional[int]:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _cause(exc: BaseException, model: str, endpoint: str) -> Optional[tuple[str, str]]:
    """``(cause, fix)`` for the first exception in the chain whose kind is known."""
    host = urlsplit(endpoint).hostname or endpoint
    offline = _OFFLINE_FIX.format(model=model)
    try:
        from huggingface_hub import errors as hub
    except ImportError:  # pragma: no cover - diffusers depends on huggingface_hub
        hub = None  # type: ignore[assignment]
    for err in _chain(exc):
        name = type(err).__name__
        text = str(err).lower()
        if hub is not None and isinstance(err, hub.GatedRepoError):
            return (
                f"the hub answered {_status(err) or 401}: {model} is a gated model and this machine is not "
                "logged in with an account that has accepted its conditions",
                f"accept the model's conditions on {endpoint}/{model}, then log in (`hf auth login`) or set "
                "HF_TOKEN to an access token of that account, and retry",
            )
        if hub is not None and isinstance(err, hub.RevisionNotFoundError):
            return (
                f"the hub has no such revision of {model}",
                "check the revision option (or drop it for the main branch)",
            )
        if hub is not None and isinstance(err, hub.RepositoryNotFoundError):
            return (
                f"the hub answered {_status(err) or 404}: there is no model {model}, or it is private",
                f"check the id on {endpoint}; for a private model log in (`hf auth login`) or set HF_TOKEN",
            )
        if hub is not None and isinstance(err, hub.HfHubHTTPError) and _status(err) in (401, 403):
            return (
                f"the hub refused access ({_status(err)})",
                "log in (`hf auth login`) or set HF_TOKEN to a token that may read this model",
            )
        if isinstance(err, socket.gaierror) or any(t in text for t in _DNS_TEXTS):
            return (
                f"the host name {host} could not be resolved (DNS failure: no network, or a wrong HF_ENDPOINT)",
                f"connect this machine to the network (or set HF_ENDPOINT to a reachable mirror), or {offline}",
            )
        if isinstance(err, ConnectionRefusedError) or "connection refused" in text:
            return (
                f"the connection to {endpoint} was refused (nothing listens there: a wrong HF_ENDPOINT, "
                "or a proxy or firewall that rejects it)",
                f"check HF_ENDPOINT and the proxy settings (HTTPS_PROXY), or {offline}",
            )
        if isinstance(err, TimeoutError) or "timeout" in name.lower() or "timed out" in text:
            return (
                f"the connection to {endpoint} timed out",
                f"retry on a faster or working network (HF_HUB_DOWNLOAD_TIMEOUT raises the limit), or {offline}",
            )
        if "ssl" in name.lower() or "certificate verify failed" in text:
            return (
                f"the TLS connection to {endpoint} could not be verified ({type(err).__name__})",
                f"point REQUESTS_CA_BUNDLE / SSL_CERT_FILE at your proxy's CA bundle, or {offline}",
            )
        status = _status(err)
        if hub is not None and isinstance(err, hub.HfHubHTTPError) and status is not None:
            return (f"the hub answered {status}", f"retry later, or {offline}")
    return None


def _root(exc: BaseException) -> BaseException:
    *_, last = _chain(exc)
    return last


def describe_download_failure(model: str, exc: BaseException) -> str:
    """One message: the download of ``model`` failed, the cause found in ``exc``'s chain, the fix."""
    endpoint = hub_endpoint()
    found = _cause(exc, model, endpoint)
    head = f"Downloading {model!r} from {endpoint} failed"
    if found is not None:
        cause, fix = found
        return f"{head}: {cause}. To fix it: {fix}."
    root = _root(exc)
    detail = " ".join(str(root).split())[:300] or type(root).__name__
    return (
        f"{head}: {type(root).__name__}: {detail}. To fix it: check the model id and the network, or "
        f"{_OFFLINE_FIX.format(model=model)}."
    )
