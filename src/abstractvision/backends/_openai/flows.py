"""The OpenAI-compatible backend's operations, as I/O-free flows.

Each operation (images, edits, a video job, the model catalog) is a generator over the
actions of :mod:`.protocol`; the sync and async transports run the same flows.
The video flow implements the OpenAI job protocol: ``POST /videos``, poll
``GET /videos/{id}`` (honouring a ``Retry-After`` hint, reporting ``progress``, checking
cancellation and the deadline), then ``GET /videos/{id}/content``; a job abandoned
before it finished (cancelled, deadline, task cancellation) is cancelled on the server
with ``DELETE /videos/{id}``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, Union
from urllib.parse import quote

from ...errors import (
    CapabilityNotSupportedError,
    GenerationCancelledError,
    GenerationTimeoutError,
    InvalidRequestError,
    ProviderError,
)
from ...model_capabilities import VisionModelCapabilitiesRegistry
from ...types import (
    TASKS,
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ProgressEvent,
    ProviderModelInfo,
)
from . import catalog, payloads, responses, sdapi
from .profiles import Profile
from .protocol import (
    Deadline,
    Flow,
    Reply,
    Sleep,
    Wire,
    check_cancel,
    fetch_url,
    log,
    parse_json,
    parse_retry_after,
    send,
)
from .stream import ImageStream

ImageRequest = Union[ImageGenerationRequest, ImageEditRequest]


@dataclass(frozen=True)
class Paths:
    generations: str = "/images/generations"
    edits: str = "/images/edits"
    models: str = "/models"
    videos: str = "/videos"
    video_sync: str = "/videos/generations"


@dataclass(frozen=True)
class Context:
    """Everything a flow needs, resolved once from the backend config.

    ``profile`` is ``None`` while ``profile="auto"`` has not been detected yet; the backend
    runs :func:`.profiles.detect` first and replaces the context.
    """

    wire: Wire
    paths: Paths
    image_model: Optional[str]
    video_model: Optional[str]
    profile: Optional[Profile]
    openai_target: bool
    response_format: Optional[str]
    deadline_s: Optional[float]
    poll_interval_s: float
    video_mode: str
    cancel_remote_jobs: bool
    registry: Callable[[], Optional[VisionModelCapabilitiesRegistry]]
    max_batch: int = 10

    def target(self, model: Optional[str], task: str) -> payloads.Target:
        assert self.profile is not None, "the server profile is detected before any operation"
        rules = payloads.model_rules(self.registry(), model, task)
        return payloads.Target(rules=rules, profile=self.profile, response_format=self.response_format)

    def deadline(self, request: Any, what: str) -> Deadline:
        seconds = request.extra.get("deadline_s", self.deadline_s)
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0
        ):
            raise InvalidRequestError(
                "extra 'deadline_s' must be a positive number of seconds.", param="deadline_s"
            )
        return Deadline(seconds, what=what)


def _emit(request: Any, task: str, phase: str, **fields: Any) -> None:
    callback = request.on_progress
    if callback is not None:
        callback(ProgressEvent(task=task, phase=phase, **fields))


def _materialize(
    ctx: Context, item: responses.MediaItem, *, reply: Reply, deadline: Deadline, what: str, cancel: Any
) -> Flow[tuple[bytes, Optional[str], dict[str, float]]]:
    """The bytes of one output: decoded base64, a data URL, or a checked download."""
    if item.b64 is not None:
        return responses.decode_b64(item.b64, what=what, reply=reply, max_bytes=ctx.wire.max_bytes), None, {}
    url = item.url or ""
    if url.startswith("data:"):
        declared = url[5:].partition(";")[0] or None
        return responses.decode_b64(url, what=what, reply=reply, max_bytes=ctx.wire.max_bytes), declared, {}
    started = time.monotonic()
    got = yield from fetch_url(
        ctx.wire, url, deadline=deadline, what=f"download of the {what} output", cancel=cancel
    )
    return got.content, got.headers.get("content-type"), {"download_s": round(time.monotonic() - started, 6)}


def _post(
    ctx: Context,
    path: str,
    prepared: payloads.Prepared,
    *,
    deadline: Deadline,
    what: str,
    cancel: Any,
    on_chunk: Optional[Callable[[bytes], None]] = None,
) -> Flow[Reply]:
    return (
        yield from send(
            ctx.wire,
            "POST",
            path,
            deadline=deadline,
            what=what,
            content=prepared.content,
            content_type=prepared.content_type,
            cancel=cancel,
            on_chunk=on_chunk,
        )
    )


def _metadata(
    ctx: Context,
    *,
    index: int,
    model: Optional[str],
    reply: Reply,
    timings: dict[str, float],
    prepared: payloads.Prepared,
    source: str,
    report: tuple[dict[str, Any], Optional[str]] = ({}, None),
    item: Optional[responses.MediaItem] = None,
    doc: Any = None,
) -> dict[str, Any]:
    """Provenance of output ``index``: the seed the engine used where it says so, else the
    one sent; ``ignored_parameters`` = what the profile could not send plus what the engine
    reports it ran otherwise."""
    assert ctx.profile is not None
    sent_seed = prepared.seeds[index] if index < len(prepared.seeds) else None
    reported, where = report
    sent = dict(prepared.sent)
    if sent_seed is None:
        sent.pop("seed", None)
    elif "seed" in sent:
        sent["seed"] = sent_seed  # image i of a batch ran seed + i
    ignored = {
        **prepared.ignored,
        **sdapi.not_applied(sent, reported, where, hint=ctx.profile.name == "generic"),
    }
    meta: dict[str, Any] = {}
    if isinstance(reported.get("seed"), int):
        meta["seed"], meta["seed_source"] = reported["seed"], "engine"
    elif sent_seed is not None:
        meta["seed"], meta["seed_source"] = sent_seed, "requested"
    else:
        meta["seed"], meta["seed_source"] = None, "unknown"
    meta["profile"] = ctx.profile.name
    if model:
        meta["model"] = model
    meta["timings"] = timings
    meta["request_id"] = reply.request_id
    meta["output_source"] = source
    if prepared.effective:
        meta["parameters"] = dict(prepared.effective)
    if ignored:
        meta["ignored_parameters"] = ignored
    if item is not None and item.revised_prompt:
        meta["revised_prompt"] = item.revised_prompt
    if isinstance(doc, dict):
        for key in ("usage", "output_format", "quality", "size", "background"):
            if doc.get(key) is not None:
                meta.setdefault("provider", {})[key] = doc[key]
    return meta


def images(ctx: Context, request: ImageRequest, task: str) -> Flow[list[GeneratedAsset]]:
    """``text_to_image`` / ``image_to_image``: ``request.n`` images in as few requests as the
    server allows.

    A batch is sent as ``n`` with ``seed`` = the first seed, the convention of diffusion
    servers being ``seed, seed+1, ...``. Seeds that do not follow it (explicit arbitrary
    ``seeds``) cannot be expressed in one request: each image is then requested alone.
    Batches larger than the limit (``max_batch``, the profile's, the model's) are split.
    When a server answers fewer images than asked, those are kept, the rest is asked for
    again, and every output carries a warning naming the ``max_batch`` to set.
    """
    deadline = ctx.deadline(request, f"{task} request")  # one budget for the whole call
    model = request.extra.get("model") or ctx.image_model
    target = ctx.target(model, task)
    if target.profile.sends_seed and request.n > 1 and not payloads.consecutive_seeds(request.seeds):
        out: list[GeneratedAsset] = []
        for seed in request.seeds or ():
            single = dataclasses.replace(request, n=1, seed=seed, seeds=(seed,))
            out.extend((yield from _images_once(ctx, single, task, deadline, target)))
        return out
    limit = target.batch_limit(ctx.max_batch)
    assets: list[GeneratedAsset] = []
    warnings: list[str] = []
    while len(assets) < request.n:
        part = _part(request, len(assets), min(limit, request.n - len(assets)))
        got = yield from _images_once(ctx, part, task, deadline, target)
        if len(got) < part.n:
            warning = (
                f"the server answered {len(got)} of the {part.n} images asked for in one request; the rest "
                f"were asked for again. Set max_batch={len(got)} in the backend config (-O max_batch={len(got)}, "
                f"ABSTRACTVISION_OPT_MAX_BATCH={len(got)}) to send batches it answers in full."
            )
            log.warning("%s: %s", task, warning)
            warnings.append(warning)
        assets.extend(got)
    for asset in assets:
        if warnings:
            asset.metadata["warnings"] = list(warnings)
    return assets


def _part(request: ImageRequest, start: int, count: int) -> ImageRequest:
    """Images ``start .. start+count-1`` of ``request`` (their seeds continue the numbering)."""
    if start == 0 and count == request.n:
        return request
    seeds = tuple(request.seeds[start : start + count]) if request.seeds else None
    seed = request.seed + start if request.seed is not None and not request.seeds else request.seed
    return dataclasses.replace(request, n=count, seed=seed, seeds=seeds)


def _images_once(
    ctx: Context, request: ImageRequest, task: str, deadline: Deadline, target: payloads.Target
) -> Flow[list[GeneratedAsset]]:
    """One request for ``request.n`` images; returns what the server answered (maybe fewer)."""
    edit = isinstance(request, ImageEditRequest)
    sdapi_routes = target.profile.routes == "sdapi"
    if sdapi_routes:
        path = sdapi.IMG2IMG_PATH if edit else sdapi.TXT2IMG_PATH
    else:
        path = ctx.paths.edits if edit else ctx.paths.generations
    what = f"POST {path}"
    if isinstance(request, ImageEditRequest):
        prepared = sdapi.img2img(request, target) if sdapi_routes else payloads.image_edit(request, target)
    else:
        prepared = (
            sdapi.txt2img(request, target) if sdapi_routes else payloads.image_generation(request, target)
        )
    _emit(request, task, "in_progress", message="waiting for the provider", raw={"n": prepared.n})
    started = time.monotonic()
    stream = ImageStream(request.on_preview, task) if prepared.stream else None
    reply = yield from _post(
        ctx,
        path,
        prepared,
        deadline=deadline,
        what=what,
        cancel=request.cancel,
        on_chunk=stream.feed if stream is not None else None,
    )
    inference_s = round(time.monotonic() - started, 6)
    if stream is not None and reply.headers.get("content-type", "").startswith("text/event-stream"):
        doc: Any = stream.document(what)
    else:
        doc = parse_json(reply, what=what, secrets=ctx.wire.secrets)
    info = None
    if sdapi_routes:
        items, info = sdapi.media_items(doc, reply, n=prepared.n, what=what)
    else:
        items = responses.media_items(doc, reply, n=prepared.n, what=what)
    fmt = doc.get("output_format") if isinstance(doc, dict) else None
    assets = []
    for i, item in enumerate(items):
        if item.url is not None and item.b64 is None:
            _emit(request, task, "downloading", message=f"downloading output {i + 1} of {len(items)}")
        data, declared, extra_timings = yield from _materialize(
            ctx, item, reply=reply, deadline=deadline, what=what, cancel=request.cancel
        )
        meta = _metadata(
            ctx,
            index=i,
            model=target.model,
            reply=reply,
            timings={"inference_s": inference_s, **extra_timings},
            prepared=prepared,
            source="b64_json" if item.b64 is not None else "url",
            report=sdapi.engine_report(data, item_seed=item.seed, info=info, index=i),
            item=item,
            doc=doc,
        )
        declared = declared or (f"image/{fmt}" if isinstance(fmt, str) else None)
        assets.append(
            responses.media_asset(
                data, media_type="image", declared_mime=declared, metadata=meta, what=what, reply=reply
            )
        )
    return assets


def video(ctx: Context, request: Any, task: str, image: Optional[bytes]) -> Flow[GeneratedAsset]:
    """``text_to_video`` / ``image_to_video`` through the job protocol or the sync endpoint."""
    model = request.extra.get("model") or ctx.video_model
    target = ctx.target(model, task)
    if not target.profile.video:
        raise CapabilityNotSupportedError(
            f"{target.profile.label} has no video route (profile {target.profile.name!r}); "
            "use a server with the OpenAI video protocol (profile 'generic' or 'openai').",
            task=task,
        )
    as_json = ctx.video_mode == "sync"
    prepared = payloads.video(request, target, image=image, as_json=as_json)
    deadline = ctx.deadline(request, f"{task} job")
    path = ctx.paths.video_sync if as_json else ctx.paths.videos
    what = f"POST {path}"
    started = time.monotonic()
    _emit(
        request, task, "submitting", message="creating the job" if not as_json else "waiting for the provider"
    )
    reply = yield from _post(ctx, path, prepared, deadline=deadline, what=what, cancel=request.cancel)
    if as_json:
        return (yield from _sync_video(ctx, request, reply, prepared, model, deadline, what, started))
    job = responses.parse_job(parse_json(reply, what=what, secrets=ctx.wire.secrets), reply, what=what)
    job, reply = yield from _wait_for_job(ctx, job, reply, request, task, deadline)
    inference_s = round(time.monotonic() - started, 6)
    _emit(request, task, "downloading", progress=1.0, raw={"id": job.id})
    content_path = f"{_job_path(ctx, job.id)}/content"
    t_download = time.monotonic()
    what = f"GET {ctx.paths.videos}/{{id}}/content"
    got = yield from send(ctx.wire, "GET", content_path, deadline=deadline, what=what, cancel=request.cancel)
    timings = {"inference_s": inference_s, "download_s": round(time.monotonic() - t_download, 6)}
    meta = _metadata(
        ctx,
        index=0,
        model=model,
        reply=got,
        timings=timings,
        prepared=prepared,
        source="job",
    )
    meta["provider"] = {
        "video_id": job.id,
        **{k: job.raw[k] for k in ("seconds", "size", "model") if k in job.raw},
    }
    return responses.media_asset(
        got.content,
        media_type="video",
        declared_mime=got.headers.get("content-type"),
        metadata=meta,
        what=what,
        reply=got,
    )


def _sync_video(
    ctx: Context,
    request: Any,
    reply: Reply,
    prepared: payloads.Prepared,
    model: Optional[str],
    deadline: Deadline,
    what: str,
    started: float,
) -> Flow[GeneratedAsset]:
    """The synchronous variant answers either the video bytes or ``{"data": [...]}``."""
    content_type = reply.headers.get("content-type", "")
    timings = {"inference_s": round(time.monotonic() - started, 6)}
    item = None
    doc = None
    if content_type.startswith("application/json") or reply.content[:1] in (b"{", b"["):
        doc = parse_json(reply, what=what, secrets=ctx.wire.secrets)
        item = responses.media_items(doc, reply, n=1, what=what)[0]
        data, declared, extra_timings = yield from _materialize(
            ctx, item, reply=reply, deadline=deadline, what=what, cancel=request.cancel
        )
        timings.update(extra_timings)
    else:
        data, declared = reply.content, content_type
    meta = _metadata(
        ctx,
        index=0,
        report=({"seed": item.seed}, "the response's 'seed'")
        if item is not None and item.seed is not None
        else ({}, None),
        model=model,
        reply=reply,
        timings=timings,
        prepared=prepared,
        source="sync",
        item=item,
        doc=doc,
    )
    return responses.media_asset(
        data, media_type="video", declared_mime=declared, metadata=meta, what=what, reply=reply
    )


def _job_path(ctx: Context, job_id: str) -> str:
    return f"{ctx.paths.videos.rstrip('/')}/{quote(job_id, safe='')}"


def _wait_for_job(
    ctx: Context, job: responses.Job, reply: Reply, request: Any, task: str, deadline: Deadline
) -> Flow[tuple[responses.Job, Reply]]:
    what = f"GET {ctx.paths.videos}/{{id}}"
    job_path = _job_path(ctx, job.id)
    try:
        while True:
            raw = {"id": job.id, "status": job.raw.get("status"), "progress": job.raw.get("progress")}
            if job.status in ("queued", "in_progress"):
                _emit(request, task, job.status, progress=job.progress, raw=raw)
            if job.status == "completed":
                return job, reply
            if job.status == "failed":
                raise ProviderError(
                    f"video job {job.id} failed: {job.error_text()}",
                    status_code=reply.status,
                    body=job.raw,
                    request_id=reply.request_id,
                )
            if job.status == "cancelled":
                raise GenerationCancelledError(f"video job {job.id} was cancelled on the provider's side.")
            check_cancel(request.cancel, f"{task} job {job.id}")
            hint = parse_retry_after(reply.headers)
            remaining = deadline.remaining()
            if remaining <= 0:
                raise deadline.error()
            # the server's hint wins, but "0" must not turn polling into a busy loop
            wait = ctx.poll_interval_s if hint is None else max(hint, min(ctx.poll_interval_s, 0.1))
            yield Sleep(min(wait, remaining), request.cancel)
            check_cancel(request.cancel, f"{task} job {job.id}")
            reply = yield from send(
                ctx.wire, "GET", job_path, deadline=deadline, what=what, cancel=request.cancel
            )
            job = responses.parse_job(
                parse_json(reply, what=what, secrets=ctx.wire.secrets), reply, what=what
            )
    except GeneratorExit:
        raise
    except BaseException:
        if not job.terminal and ctx.cancel_remote_jobs:
            yield from _cancel_job(ctx, job_path)
        raise


def _cancel_job(ctx: Context, job_path: str) -> Flow[None]:
    """Best effort ``DELETE /videos/{id}``: one attempt, a short deadline, errors logged."""
    what = f"DELETE {ctx.paths.videos}/{{id}}"
    try:
        yield from send(
            ctx.wire,
            "DELETE",
            job_path,
            deadline=Deadline(min(5.0, ctx.wire.timeout_s), what=what),
            what=what,
            max_retries=0,
        )
    except (ProviderError, GenerationTimeoutError) as exc:
        log.info("%s: could not cancel the remote job: %s", what, exc)


def models(ctx: Context, task: Optional[str]) -> Flow[list[ProviderModelInfo]]:
    """The catalog: ``GET /models`` (A1111: ``GET /sdapi/v1/sd-models``) as :class:`ProviderModelInfo`."""
    if task is not None and task not in TASKS:
        raise InvalidRequestError(f"Unknown task {task!r}. Known tasks: {', '.join(TASKS)}.", param="task")
    assert ctx.profile is not None
    path = sdapi.SD_MODELS_PATH if ctx.profile.catalog == "sdapi" else ctx.paths.models
    what = f"GET {path}"
    reply = yield from send(
        ctx.wire, "GET", path, deadline=Deadline(ctx.deadline_s, what="model listing"), what=what
    )
    doc = parse_json(reply, what=what, secrets=ctx.wire.secrets)
    if ctx.profile.catalog == "sdapi":
        return catalog.parse_sd_models(
            doc, reply, task=task, tasks=ctx.profile.catalog_tasks or (), what=what
        )
    return catalog.parse_models(
        doc,
        reply,
        task=task,
        registry=ctx.registry(),
        openai_target=ctx.openai_target,
        what=what,
        default_tasks=ctx.profile.catalog_tasks,
    )
