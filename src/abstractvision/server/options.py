"""Server options: limits, queueing and security settings in one validated dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .. import _params
from ..errors import InvalidRequestError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_IMAGE_PIXELS", "ServerOptions"]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class ServerOptions:
    """Everything :func:`~abstractvision.server.create_app` can be tuned with.

    Attributes:
        api_key: when set, every API route needs ``Authorization: Bearer <api_key>``.
        cors_origins: allowed browser origins; CORS stays off when empty.
        workers: engine calls run at the same time, per served model.
        queue_size: jobs that may wait per served model; one more answers 429.
        job_ttl_s: seconds a finished job (and its video view) stays retrievable.
        max_body_bytes: largest request body (413 above).
        max_image_pixels: largest uploaded image, width x height (413 above).
        max_output_pixels: largest requested output, width x height (400 above).
        max_n: most outputs per request.
        coalesce: merge queued requests with the same model and parameters into one
            batched engine call (only for backends that batch natively). Off by default:
            a batched call can differ from a single one in the last bit of some pixels, so
            a result would depend on what else was queued.
        coalesce_max_batch: most outputs in one coalesced call.
        allowed_extra_keys: backend ``extra`` keys clients may set (none by default: ``extra``
            can name files, so it is closed unless the operator opens keys one by one).
        public_url: base URL used in ``url`` responses (default: the request's own base URL).
        max_jobs: finished jobs kept in memory before the oldest are dropped early.
        secrets: extra strings to redact from error messages (the backend's API key...).
        max_loaded: most served models holding weights at once (``None``: no limit); to load
            another, the least recently used idle one is unloaded first.
        preload: load the served models when the app starts (up to ``max_loaded``) instead of
            on their first request.
        embed_metadata: what result files carry, for every request: ``"none"`` (no text),
            ``"parameters"`` (the A1111-style text) or ``"full"`` (plus the JSON provenance);
            ``None`` (default) keeps the served manager's policy (the library default,
            ``"none"``). Clients cannot change it. See docs/reproducibility.md.
    """

    api_key: Optional[str] = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    workers: int = 1
    queue_size: int = 16
    job_ttl_s: float = 3600.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_output_pixels: int = 4096 * 4096
    max_n: int = 10
    coalesce: bool = False
    coalesce_max_batch: int = 8
    allowed_extra_keys: tuple[str, ...] = ()
    public_url: Optional[str] = None
    max_jobs: int = 10_000
    secrets: tuple[str, ...] = field(default=(), repr=False)
    max_loaded: Optional[int] = None
    preload: bool = False
    embed_metadata: Optional[str] = None

    def __post_init__(self) -> None:
        positive = {
            "workers": self.workers,
            "queue_size": self.queue_size,
            "max_body_bytes": self.max_body_bytes,
            "max_image_pixels": self.max_image_pixels,
            "max_output_pixels": self.max_output_pixels,
            "max_n": self.max_n,
            "coalesce_max_batch": self.coalesce_max_batch,
            "max_jobs": self.max_jobs,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequestError(f"{name} must be a positive integer, got {value!r}.", param=name)
        if not isinstance(self.job_ttl_s, (int, float)) or self.job_ttl_s <= 0:
            raise InvalidRequestError(
                f"job_ttl_s must be positive, got {self.job_ttl_s!r}.", param="job_ttl_s"
            )
        if self.max_loaded is not None and (
            not isinstance(self.max_loaded, int) or isinstance(self.max_loaded, bool) or self.max_loaded < 1
        ):
            raise InvalidRequestError(
                f"max_loaded must be a positive integer, got {self.max_loaded!r}.", param="max_loaded"
            )
        if self.embed_metadata is not None and self.embed_metadata not in ("none", "parameters", "full"):
            raise InvalidRequestError(
                f"embed_metadata must be 'none', 'parameters' or 'full', got {self.embed_metadata!r}.",
                param="embed_metadata",
            )
        most = _params.PARAMS["count"]["max"]
        if self.max_n > most:
            raise InvalidRequestError(f"max_n cannot exceed {most} (the largest batch).", param="max_n")
        if self.api_key is not None and (not isinstance(self.api_key, str) or len(self.api_key) < 8):
            raise InvalidRequestError("api_key must be a string of at least 8 characters.", param="api_key")
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise InvalidRequestError(
                    f"CORS origin {origin!r} must look like https://example.com (or be '*').",
                    param="cors_origins",
                )
