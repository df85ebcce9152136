"""The task recipes of the Diffusers backend: images (t2i, i2i, inpainting), upscaling, video.

Each recipe takes the backend (for its loaded models, settings and lock), picks the task
pipeline, builds the checked arguments, runs one pipeline call and turns the output into
:class:`~abstractvision.GeneratedAsset` objects with their provenance metadata. Size rules
are explicit: a width/height/frame count the pipeline would round is rejected with the
nearest valid values, and an input image resized to fit is reported in the metadata.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Optional, Union

from ...errors import BackendError, InvalidRequestError
from ...types import (
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    ImageUpscaleRequest,
    ProgressEvent,
    VideoGenerationRequest,
)

__all__ = ["default_fps", "run_images", "run_upscale", "run_video"]

logger = logging.getLogger("abstractvision.backends.huggingface_diffusers")

_FAMILY_FPS = (
    ("Wan", 16),
    ("LTX", 24),
    ("CogVideoX", 8),
    ("HunyuanVideo", 24),
    ("Mochi", 30),
    ("StableVideoDiffusion", 7),
    ("Allegro", 15),
)
_DEFAULT_FPS = 16


def _ready_pipeline(backend: Any, entry: Any, variant: str, request: Any) -> tuple[Any, Any]:
    """The pipeline for ``variant`` with the request's LoRA adapters applied, ready to call."""
    from .models import apply_loras, derive_pipeline, prepare_for_call

    pipe = derive_pipeline(entry, variant)
    loras = apply_loras(
        entry, pipe, request.lora_adapters, backend._settings(), max_adapters=backend.config.max_lora_adapters
    )
    prepare_for_call(entry, pipe)
    return pipe, loras


def run_images(
    backend: Any,
    task: str,
    request: Union[ImageGenerationRequest, ImageEditRequest],
    seeds: Sequence[Optional[int]],
) -> list[GeneratedAsset]:
    from .call import PipelineCall, decode_image, new_seed, png_bytes, run_pipeline
    from .previews import make_previewer

    planned = tuple(new_seed() if s is None else int(s) for s in seeds)
    backend._check_cancel(request, task)
    with backend._lock:
        entry, load_s = backend._model(backend._model_id(request.extra), task, request.on_progress)
        backend._check_cancel(request, task)
        backend._require_task(entry, task)
        family = entry.family
        variant = "text2img"
        if isinstance(request, ImageEditRequest):
            if request.reference_images:
                raise InvalidRequestError(
                    "reference_images are not supported by the Diffusers backend.",
                    param="reference_images",
                )
            if request.mask is None and family.mask_required:
                raise InvalidRequestError(
                    f"{family.pipeline_class} ({entry.model_id}) is a fill/inpainting model: pass a mask "
                    "(white = the area to repaint).",
                    param="mask",
                )
            variant = "inpaint" if request.mask is not None else "img2img"
        pipe, loras = _ready_pipeline(backend, entry, variant, request)
        call = PipelineCall.build(pipe, task, planned, request.extra)
        ignored: dict[str, str] = {}
        call.set("prompt", request.prompt)
        _set_or_ignore(call, "negative_prompt", request.negative_prompt, ignored)
        call.set("num_inference_steps", request.steps, public="steps")
        _set_or_ignore(call, "guidance_scale", request.guidance_scale, ignored)
        width, height, adjusted = request.width, request.height, None
        multiple = size_multiple(pipe)
        _check_multiple(pipe, width, height, multiple)
        if isinstance(request, ImageEditRequest):
            image = decode_image(request.image)
            mask = decode_image(request.mask, "L") if request.mask is not None else None
            if width is None and height is None:
                width, height = _fit_to_multiple(image.size, multiple)
            elif width is None or height is None:  # keep the input's aspect ratio
                width, height = _fit_to_multiple(_scale_to(image.size, width, height), multiple)
            adjusted = [image.width, image.height] if (width, height) != image.size else None
            if not call.accepts("width") and (width, height) != image.size:
                # pipelines without width/height (SD img2img) would resize silently: do it here, on record
                image = image.resize((width, height), _lanczos())
                mask = mask.resize((width, height), _lanczos()) if mask is not None else None
            call.set("image", image)
            call.set("mask_image", mask, public="mask")
            _set_or_ignore(call, "strength", request.strength, ignored)
            _check_denoising_steps(call)
        if call.accepts("width") or not isinstance(request, ImageEditRequest):
            call.set("width", width, public="width")
            call.set("height", height, public="height")
        if (
            family.size == "max_area"
            and width is not None
            and height is not None
            and "max_area" not in call.kwargs
        ):
            # Kontext scales its output to max_area (1024^2 by default): ask for exactly width x height
            call.set("max_area", width * height)
        outcome = run_pipeline(
            call,
            output_type="pil",
            on_progress=request.on_progress,
            cancel=request.cancel,
            previewer=make_previewer(backend, pipe, task, request, call),
        )
        images = list(outcome.output.images)
    if len(images) != len(planned):
        raise BackendError(f"{type(pipe).__name__} returned {len(images)} images for {len(planned)} seeds.")
    started = time.perf_counter()
    encoded = [png_bytes(img) for img in images]
    encode_s = time.perf_counter() - started
    params: dict[str, Any] = {
        "steps": call.effective("num_inference_steps"),
        "guidance_scale": call.effective("guidance_scale"),
        "width": images[0].width,
        "height": images[0].height,
    }
    if isinstance(request, ImageEditRequest):
        if call.accepts("strength"):
            params["strength"] = call.effective("strength")
        params["inpainting"] = request.mask is not None
    if adjusted:
        params["input_resized_from"] = adjusted
        logger.info(
            "Input image %sx%s resized to %sx%s for %s.", *adjusted, width, height, type(pipe).__name__
        )
    if len(planned) > 1:
        params["num_images_per_prompt"] = len(planned)
    params.update({k: v for k, v in request.extra.items() if k != "model_id"})
    if loras:
        params["lora_adapters"] = loras
    honest = _size_report(pipe, request.width, request.height, width, height, images[0].size)
    if ignored:
        honest["ignored_parameters"] = ignored
    timings = {"load_s": load_s, "inference_s": outcome.inference_s, "encode_s": encode_s}
    return [
        GeneratedAsset(
            media_type="image",
            data=data,
            mime_type="image/png",
            metadata=backend._metadata(
                entry,
                pipe,
                task,
                seed,
                timings,
                parameters=dict(params),
                steps_run=outcome.steps_run,
                **honest,
            ),
        )
        for seed, data in zip(planned, encoded, strict=True)
    ]


def _set_or_ignore(call: Any, name: str, value: Any, ignored: dict[str, str]) -> None:
    """Pass a first-class parameter, or record why it was not applied when the pipeline has none.

    Model-agnostic code sends the same call to every family: a prompt to Stable Video Diffusion
    (no text conditioning), a strength to Kontext or InstructPix2Pix (they edit from the input
    as a reference). Those are accepted and reported in ``ignored_parameters``, never claimed
    as applied; ``extra`` keys a pipeline does not take are still refused.
    """
    if value is None:
        return
    if call.accepts(name):
        call.set(name, value, public=name)
        return
    cls = type(call.pipe).__name__
    ignored[name] = {
        "prompt": f"{cls} has no text conditioning; the prompt was not used",
        "negative_prompt": f"{cls} takes no negative prompt; it was not used",
        "strength": f"{cls} takes no strength (the input image conditions the edit as a whole); not applied",
        "guidance_scale": f"{cls} takes no guidance_scale; not applied",
    }.get(name, f"{cls} takes no {name}; not applied")


def _check_denoising_steps(call: Any) -> None:
    """Refuse an edit whose ``steps x strength`` leaves no denoising step (the pipeline would crash)."""
    if not (call.accepts("strength") and call.accepts("num_inference_steps")):
        return
    steps, strength = call.effective("num_inference_steps"), call.effective("strength")
    if not isinstance(steps, int) or not isinstance(strength, (int, float)) or strength <= 0:
        return
    if int(steps * strength) < 1:
        needed = int(1 / strength) + (0 if (1 / strength).is_integer() else 1)
        raise InvalidRequestError(
            f"steps={steps} with strength={strength:g} leaves no denoising step for {type(call.pipe).__name__} "
            f"(it runs int(steps x strength) = {int(steps * strength)} steps). Use steps >= {needed} or a "
            f"strength >= {1 / steps:.2g}.",
            param="steps",
        )


def _size_report(
    pipe: Any,
    requested_width: Optional[int],
    requested_height: Optional[int],
    width: Optional[int],
    height: Optional[int],
    returned: tuple[int, int],
) -> dict[str, Any]:
    """``size_adjusted`` metadata when the output size differs from the size asked for."""
    want_w = requested_width if requested_width is not None else width
    want_h = requested_height if requested_height is not None else height
    if want_w is None or want_h is None:
        return {}
    if (want_w, want_h) == tuple(returned):
        return {}
    logger.warning(
        "%s returned %sx%s instead of the requested %sx%s.", type(pipe).__name__, *returned, want_w, want_h
    )
    return {
        "size_adjusted": {
            "requested": {"width": want_w, "height": want_h},
            "returned": {"width": returned[0], "height": returned[1]},
        }
    }


def run_upscale(backend: Any, request: ImageUpscaleRequest, model_id: str) -> GeneratedAsset:
    from .call import PipelineCall, decode_image, new_seed, png_bytes, run_pipeline
    from .models import prepare_for_call
    from .previews import make_previewer

    task = "image_upscale"
    seed = new_seed() if request.seed is None else int(request.seed)
    backend._check_cancel(request, task)
    with backend._lock:
        entry, load_s = backend._model(model_id, task, request.on_progress)
        backend._check_cancel(request, task)
        backend._require_task(entry, task)
        pipe = entry.pipe
        prepare_for_call(entry, pipe)
        native = 2 if "Latent" in type(pipe).__name__ else int(getattr(pipe, "vae_scale_factor", 4))
        if request.scale is not None and request.scale > native:
            raise InvalidRequestError(
                f"scale={request.scale:g} is larger than what {type(pipe).__name__} produces (x{native}).",
                param="scale",
            )
        image = decode_image(request.image)
        call = PipelineCall.build(
            pipe, task, (seed,), {k: v for k, v in request.extra.items() if k != "upscaler_model_id"}
        )
        call.set("prompt", request.prompt or "")
        call.set("negative_prompt", request.negative_prompt, public="negative_prompt")
        call.set("image", image)
        call.set("num_inference_steps", request.steps, public="steps")
        call.set("guidance_scale", request.guidance_scale, public="guidance_scale")
        outcome = run_pipeline(
            call,
            output_type="pil",
            on_progress=request.on_progress,
            cancel=request.cancel,
            previewer=make_previewer(backend, pipe, task, request, call),
        )
        out = outcome.output.images[0]
    started = time.perf_counter()
    params: dict[str, Any] = {
        "steps": call.effective("num_inference_steps"),
        "guidance_scale": call.effective("guidance_scale"),
    }
    params["native_scale"] = native
    if request.scale is not None and request.scale != native:
        size = (round(image.width * request.scale), round(image.height * request.scale))
        params["resampled_from"] = [out.width, out.height]
        out = out.resize(size, _lanczos())
    params.update(scale=request.scale or native, width=out.width, height=out.height)
    data = png_bytes(out)
    timings = {
        "load_s": load_s,
        "inference_s": outcome.inference_s,
        "encode_s": time.perf_counter() - started,
    }
    meta = backend._metadata(entry, pipe, task, seed, timings, parameters=params, steps_run=outcome.steps_run)
    return GeneratedAsset(media_type="image", data=data, mime_type="image/png", metadata=meta)


def run_video(
    backend: Any, task: str, request: Union[VideoGenerationRequest, ImageToVideoRequest]
) -> GeneratedAsset:
    from .._video_encode import encode_mp4
    from .call import PipelineCall, decode_image, new_seed, run_pipeline
    from .previews import make_previewer

    seed = new_seed() if request.seed is None else int(request.seed)
    backend._check_cancel(request, task)
    with backend._lock:
        entry, load_s = backend._model(backend._model_id(request.extra), task, request.on_progress)
        backend._check_cancel(request, task)
        backend._require_task(entry, task)
        pipe, loras = _ready_pipeline(backend, entry, task, request)
        call = PipelineCall.build(pipe, task, (seed,), request.extra)
        width, height = request.width, request.height
        if isinstance(request, ImageToVideoRequest):
            image = decode_image(request.image)
            call.set("image", image)
            if width is None and height is None and call.accepts("width"):
                # animate at the input's size (fitted to the model's grid), not the pipeline's default
                width, height = _fit_to_multiple(image.size, _video_multiple(pipe) or 16)
        ignored: dict[str, str] = {}
        # e.g. Stable Video Diffusion: image-only conditioning; the prompt is accepted, reported, not applied
        _set_or_ignore(call, "prompt", request.prompt, ignored)
        _set_or_ignore(call, "negative_prompt", request.negative_prompt, ignored)
        call.set("num_inference_steps", request.steps, public="steps")
        _set_or_ignore(call, "guidance_scale", request.guidance_scale, ignored)
        _check_video_shape(pipe, width, height, request.num_frames)
        call.set("width", width, public="width")
        call.set("height", height, public="height")
        call.set("num_frames", request.num_frames, public="num_frames")
        if request.fps is not None and call.accepts("fps") and "fps" not in call.kwargs:
            call.set("fps", request.fps)  # SVD is micro-conditioned on the frame rate
        outcome = run_pipeline(
            call,
            output_type="np",
            on_progress=request.on_progress,
            cancel=request.cancel,
            output_count_arg="num_videos_per_prompt",
            previewer=make_previewer(backend, pipe, task, request, call),
        )
        frames = outcome.output.frames[0]
    fps = request.fps or backend.config.video_fps or default_fps(type(pipe).__name__)
    frame_size: tuple[int, int] = (0, 0)
    if len(frames) and hasattr(frames[0], "shape"):
        frame_size = (int(frames[0].shape[1]), int(frames[0].shape[0]))
    elif len(frames):
        frame_size = (int(frames[0].size[0]), int(frames[0].size[1]))
    if request.on_progress is not None:
        request.on_progress(ProgressEvent(task=task, phase="encoding", message="encoding MP4 (H.264)"))
    started = time.perf_counter()
    video = encode_mp4(frames, fps=fps, crf=backend.config.video_crf)
    encode_s = time.perf_counter() - started
    params: dict[str, Any] = {
        "steps": call.effective("num_inference_steps"),
        "guidance_scale": call.effective("guidance_scale"),
        "num_frames": video.num_frames,
        "fps": fps,
        "width": video.width,
        "height": video.height,
    }
    params.update({k: v for k, v in request.extra.items() if k != "model_id"})
    if loras:
        params["lora_adapters"] = loras
    timings = {"load_s": load_s, "inference_s": outcome.inference_s, "encode_s": encode_s}
    honest = _size_report(pipe, request.width, request.height, width, height, frame_size)
    if request.num_frames is not None and video.num_frames != request.num_frames:
        honest["frames_adjusted"] = {"requested": request.num_frames, "returned": video.num_frames}
        logger.warning(
            "%s returned %s frames instead of the requested %s.",
            type(pipe).__name__,
            video.num_frames,
            request.num_frames,
        )
    if ignored:
        honest["ignored_parameters"] = ignored
    meta = backend._metadata(
        entry,
        pipe,
        task,
        seed,
        timings,
        parameters=params,
        steps_run=outcome.steps_run,
        video={"codec": video.codec, "pix_fmt": video.pix_fmt, "duration_s": round(video.duration_s, 6)},
        **honest,
    )
    return GeneratedAsset(media_type="video", data=video.data, mime_type="video/mp4", metadata=meta)


# -- size rules -------------------------------------------------------------------------------


def size_multiple(pipe: Any) -> int:
    """What an image pipeline's width/height must be a multiple of, from the model's own config.

    * pipelines that pack 2x2 latent patches themselves (Flux, Chroma, Qwen-Image: they have
      ``_pack_latents``) need the VAE factor x 2, whatever the transformer's ``patch_size`` says;
    * Kandinsky's MoVQ decoder needs its scale factor squared (the pipeline rounds up to it);
    * other transformers need the VAE factor x their ``patch_size`` (1 for Sana, 2 for SD3,
      PixArt, Lumina 2, CogView4);
    * UNets need the VAE factor.
    """
    movq = getattr(pipe, "movq", None) or getattr(getattr(pipe, "decoder_pipe", None), "movq", None)
    if movq is not None:
        factor = 2 ** (len(movq.config.block_out_channels) - 1)
        return int(factor * factor)
    factor = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    transformer = getattr(pipe, "transformer", None)
    if transformer is None:
        return factor
    if callable(getattr(pipe, "_pack_latents", None)):
        return factor * 2
    patch = getattr(getattr(transformer, "config", None), "patch_size", 1) or 1
    return factor * int(patch[-1] if isinstance(patch, (list, tuple)) else patch)


def _fit_to_multiple(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """``size`` rounded down to ``multiple`` (at least one multiple)."""
    width, height = (max(multiple, (v // multiple) * multiple) for v in size)
    return width, height


def _scale_to(size: tuple[int, int], width: Optional[int], height: Optional[int]) -> tuple[int, int]:
    if width is not None:
        return width, max(1, round(size[1] * width / size[0]))
    assert height is not None
    return max(1, round(size[0] * height / size[1])), height


def _lanczos() -> Any:
    from PIL import Image

    return Image.Resampling.LANCZOS


def _check_multiple(pipe: Any, width: Optional[int], height: Optional[int], multiple: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if value is not None and value % multiple:
            lower = max(multiple, value // multiple * multiple)
            raise InvalidRequestError(
                f"{name}={value} must be a multiple of {multiple} for {type(pipe).__name__} "
                f"(for example {lower} or {lower + multiple}).",
                param=name,
            )


def _check_video_shape(
    pipe: Any, width: Optional[int], height: Optional[int], num_frames: Optional[int]
) -> None:
    temporal = (
        getattr(pipe, "vae_scale_factor_temporal", None)
        or getattr(pipe, "vae_temporal_compression_ratio", None)
        or getattr(pipe, "vae_temporal_scale_factor", None)  # Mochi: 6k+1 frames
    )
    if num_frames is not None and isinstance(temporal, int) and temporal > 1 and (num_frames - 1) % temporal:
        lower = (num_frames - 1) // temporal * temporal + 1
        raise InvalidRequestError(
            f"num_frames={num_frames} does not fit {type(pipe).__name__}: it needs num_frames = {temporal}k+1 "
            f"(for example {lower} or {lower + temporal}).",
            param="num_frames",
        )
    multiple = _video_multiple(pipe)
    for name, value in (("width", width), ("height", height)):
        if multiple and value is not None and value % multiple:
            raise InvalidRequestError(
                f"{name}={value} must be a multiple of {multiple} for {type(pipe).__name__}.", param=name
            )


def _video_multiple(pipe: Any) -> Optional[int]:
    """What frame width/height must be a multiple of (VAE spatial factor x patch size), when known."""
    spatial = (
        getattr(pipe, "vae_scale_factor_spatial", None)
        or getattr(pipe, "vae_spatial_compression_ratio", None)
        or getattr(pipe, "vae_spatial_scale_factor", None)
    )
    if not isinstance(spatial, int):
        return None
    patch = getattr(getattr(getattr(pipe, "transformer", None), "config", None), "patch_size", 1) or 1
    return spatial * (patch[-1] if isinstance(patch, (list, tuple)) else int(patch))


def default_fps(class_name: str) -> int:
    """The frame rate a video family's models are made for (MP4s get it when a request gives none)."""
    for prefix, fps in _FAMILY_FPS:
        if class_name.startswith(prefix):
            return fps
    return _DEFAULT_FPS
