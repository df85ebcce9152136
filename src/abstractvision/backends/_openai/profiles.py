"""Server profiles of the OpenAI-compatible backend: what a remote accepts and how to send it.

A third-party server is a dialect, not a special case: each :class:`Profile` is data about
the remote (its routes, the names it gives our first-class parameters, where those travel,
which ``extra`` keys it reads, its batch limit, its mask convention, where it reports the
seed it used). The payload builders and the flows read these fields; no code path asks
"is this sd-server?".

``auto`` is not a profile but a request to detect one (:func:`detect`): ``GET /models``
and ``GET /sdapi/v1/options`` under ``base_url``, each with a short timeout and no retry,
only when the configuration asks for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from ...errors import (
    GenerationTimeoutError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
)
from .protocol import Deadline, Flow, Wire, send

#: the profile names a config may give (``auto`` asks for detection)
PROFILE_NAMES = ("generic", "openai", "sdcpp", "a1111")
PROFILE_CHOICES = (*PROFILE_NAMES, "auto")

#: first-class image parameters, in the order they are reported
IMAGE_PARAMS = ("negative_prompt", "steps", "guidance_scale", "seed", "strength", "width", "height")

#: OpenAI Images API fields taken from ``request.extra``
OPENAI_IMAGE_FIELDS = (
    "quality",
    "background",
    "output_format",
    "output_compression",
    "user",
    "response_format",
    "moderation",
    "style",
    "input_fidelity",
)

#: top-level keys of sd-server's ``<sd_cpp_extra_args>`` JSON that ``extra`` may set
#: (examples/server + common.cpp ``SDGenerationParams::from_json_str`` in the vendored
#: stable-diffusion.cpp); ``prompt``, ``batch_count``, ``width``/``height`` and the images
#: are set by the backend itself
SDCPP_EXTRA_ARGS = frozenset(
    {
        "clip_skip",
        "cache_mode",
        "cache_option",
        "scm_mask",
        "control_strength",
        "moe_boundary",
        "vace_strength",
        "auto_resize_ref_image",
        "increase_ref_index",
        "embed_image_metadata",
        "upscale_repeats",
        "hires",
        "sample_params",
        "high_noise_sample_params",
        "vae_tiling_params",
        "lora",
    }
)
SDCPP_MODELS_ID = "sd-cpp-local"  # the one entry sd-server's GET /v1/models lists


@dataclass(frozen=True)
class Profile:
    """What one kind of remote accepts and how to send it.

    Attributes:
        name: ``generic`` | ``openai`` | ``sdcpp`` | ``a1111``.
        label: how messages name the remote.
        routes: ``"openai"`` (``/images/generations``, ``/images/edits``, ``/videos``) or
            ``"sdapi"`` (``/sdapi/v1/txt2img``, ``/sdapi/v1/img2img``).
        params: first-class parameter -> the remote's name for it; a dotted name is a
            nested JSON object (``"sample_params.sample_steps"``). Parameters not listed
            cannot be sent.
        carrier: where ``params`` travel: ``"body"`` (fields of the request body) or
            ``"prompt_block"`` (sd-server's ``<sd_cpp_extra_args>{json}</sd_cpp_extra_args>``
            appended to the prompt).
        openai_fields: OpenAI image fields (from ``extra``) the remote reads.
        extra_keys: other ``extra`` keys sent: ``None`` every key, else only these (the
            rest are reported in ``ignored_parameters``).
        refuse_unsendable: explicitly given first-class parameters that cannot be sent
            raise :class:`InvalidRequestError` (the OpenAI API) instead of being reported.
        dims_as_size: ``width`` and ``height`` given together travel only as ``size="WxH"``
            (``generic`` sends both forms).
        model_field: where the configured model id goes (``None``: nowhere, the server runs
            the model it was started with; it is then reported as not sent).
        max_n: most images one request returns (``None``: unknown).
        mask: ``"dual"`` (white RGB *and* transparent alpha where to repaint: reads the same
            as an OpenAI mask and as a greyscale mask) or ``"grey"`` (opaque, white = repaint).
        video: the remote has the OpenAI video routes.
        catalog: ``"openai"`` (``GET /models``) or ``"sdapi"`` (``GET /sdapi/v1/sd-models``).
        catalog_tasks: tasks of catalog entries that declare none (``None``: unknown).
        multi_image: edits may send several images (``image[]``).
        stream_previews: the remote streams partial images (``stream: true`` +
            ``partial_images``): live previews for requests with ``on_preview``.
    """

    name: str
    label: str
    routes: str = "openai"
    params: Mapping[str, str] = field(default_factory=dict)
    carrier: str = "body"
    openai_fields: tuple[str, ...] = OPENAI_IMAGE_FIELDS
    extra_keys: Optional[frozenset[str]] = None
    refuse_unsendable: bool = False
    dims_as_size: bool = False
    model_field: Optional[str] = "model"
    max_n: Optional[int] = None
    mask: str = "dual"
    video: bool = True
    catalog: str = "openai"
    catalog_tasks: Optional[tuple[str, ...]] = None
    multi_image: bool = True
    stream_previews: bool = False

    @property
    def sends_seed(self) -> bool:
        return "seed" in self.params

    def not_sent(self, key: str) -> str:
        """Why ``key`` is not sent (an ``ignored_parameters`` value)."""
        return f"{self.label} does not take '{key}'; it was not sent"


GENERIC = Profile(
    name="generic",
    label="this server",
    params={name: name for name in IMAGE_PARAMS},
)
OPENAI = Profile(
    name="openai",
    label="the OpenAI API",
    params={},
    extra_keys=frozenset(),
    refuse_unsendable=True,
    stream_previews=True,
)
SDCPP = Profile(
    name="sdcpp",
    label="sd-server (stable-diffusion.cpp)",
    params={
        "negative_prompt": "negative_prompt",
        "steps": "sample_params.sample_steps",
        "guidance_scale": "sample_params.guidance.txt_cfg",
        "seed": "seed",
        "strength": "strength",
        "width": "width",  # only when one of the two is given
        "height": "height",
    },
    dims_as_size=True,
    carrier="prompt_block",
    openai_fields=("output_format", "output_compression"),
    extra_keys=SDCPP_EXTRA_ARGS,
    model_field=None,
    max_n=8,  # sd-server clamps batch_count to 1..8 (SDGenerationParams::resolve, strict)
    video=False,
    catalog_tasks=("text_to_image", "image_to_image"),
)
A1111 = Profile(
    name="a1111",
    label="the A1111 API (/sdapi/v1)",
    routes="sdapi",
    params={
        "negative_prompt": "negative_prompt",
        "steps": "steps",
        "guidance_scale": "cfg_scale",
        "seed": "seed",
        "strength": "denoising_strength",
        "width": "width",
        "height": "height",
    },
    openai_fields=(),
    model_field="override_settings.sd_model_checkpoint",
    max_n=8,  # sd-server clamps batch_size to 8; AUTOMATIC1111 and Forge cap it at 8 in their UI
    mask="grey",
    video=False,
    catalog="sdapi",
    catalog_tasks=("text_to_image", "image_to_image"),
    multi_image=False,
)
PROFILES: dict[str, Profile] = {p.name: p for p in (GENERIC, OPENAI, SDCPP, A1111)}


def check_profile_name(value: Any) -> Optional[str]:
    """``None`` or a valid profile choice (lower-cased); raises otherwise."""
    if value is None:
        return None
    name = str(value).strip().lower()
    if name not in PROFILE_CHOICES:
        raise InvalidRequestError(
            f"profile must be one of {', '.join(PROFILE_CHOICES)}, got {value!r}.", param="profile"
        )
    return name


def initial_profile(
    name: Optional[str], *, send_diffusion_params: Optional[bool], targets_openai: bool
) -> str:
    """The configured profile (``auto`` stays ``auto`` until :func:`detect` runs).

    Without a ``profile``, ``send_diffusion_params`` (the older switch) decides:
    ``False`` -> ``openai``, ``True`` -> ``generic``, ``None`` -> ``openai`` for
    ``api.openai.com``, else ``generic``.
    """
    if name is None:
        if send_diffusion_params is None:
            return "openai" if targets_openai else "generic"
        return "generic" if send_diffusion_params else "openai"
    if send_diffusion_params is not None and name != "auto":
        sends = PROFILES[name].params != {}
        if sends != send_diffusion_params:
            raise InvalidRequestError(
                f"send_diffusion_params={send_diffusion_params} contradicts profile={name!r} "
                f"(which {'sends' if sends else 'does not send'} diffusion parameters); drop one of them.",
                param="send_diffusion_params",
            )
    return name


# -- detection ----------------------------------------------------------------------------


def _probe(wire: Wire, path: str, timeout_s: float) -> Flow[tuple[Any, str]]:
    """(parsed JSON or None, what happened) for one short ``GET``; never retried."""
    import json

    what = f"GET {path}"
    try:
        reply = yield from send(
            wire, "GET", path, deadline=Deadline(timeout_s, what=what), what=what, max_retries=0
        )
    except ProviderConnectionError:
        raise
    except GenerationTimeoutError:
        return None, f"{what}: no answer within {timeout_s:g} s"
    except ProviderError as exc:
        return None, f"{what}: HTTP {exc.status_code}" if exc.status_code else f"{what}: {exc}"
    try:
        return json.loads(reply.content), f"{what}: HTTP {reply.status}"
    except ValueError:
        return None, f"{what}: HTTP {reply.status}, not JSON"


def detect(wire: Wire, *, targets_openai: bool, timeout_s: float) -> Flow[str]:
    """The profile the server at ``wire.base_url`` identifies itself as.

    ``api.openai.com`` is ``openai`` without a probe. Otherwise ``GET /models`` listing
    sd-server's ``sd-cpp-local`` entry -> ``sdcpp``; else ``GET /sdapi/v1/options``
    answering a JSON object -> ``a1111``; else a ``/models`` catalog -> ``generic``.
    Anything else raises :class:`ProviderResponseError` naming what each probe saw.
    """
    if targets_openai:
        return "openai"
    models, seen_models = yield from _probe(wire, "/models", timeout_s)
    data = models.get("data") if isinstance(models, dict) else None
    if isinstance(data, list) and any(isinstance(e, dict) and e.get("id") == SDCPP_MODELS_ID for e in data):
        return "sdcpp"
    options, seen_options = yield from _probe(wire, "/sdapi/v1/options", timeout_s)
    if isinstance(options, dict):
        return "a1111"
    if isinstance(data, list):
        return "generic"
    raise ProviderResponseError(
        f"profile='auto' could not identify the server at {wire.redact(wire.base_url)} "
        f"({seen_models}; {seen_options}). Set profile to one of {', '.join(PROFILE_NAMES)}; "
        "for the A1111 API, base_url is the server root (http://host:7860, without /v1)."
    )
