"""Pipeline families of the Diffusers backend: which tasks a loaded model can run, and how.

A model folder names its pipeline class in ``model_index.json``. Most image families are
covered by diffusers' own AutoPipeline tables (text-to-image, image-to-image and inpainting
variants of one set of weights, switched with ``from_pipe``). The families those tables
miss or get wrong are listed here, in :data:`OWN_FAMILIES`, one line each:

* edit-only pipelines (InstructPix2Pix, Qwen-Image-Edit Plus) run ``image_to_image`` only;
* fill/inpaint-only pipelines (Flux Fill, 9-channel inpainting checkpoints) need a mask;
* Kontext-style reference editing runs text-to-image and edits on one pipeline, with a
  masked sibling (``FluxKontextInpaintPipeline``) derived from the same weights;
* video pairs that share weights (LTX-Video, Wan 2.2 TI2V) expose both video tasks.

Two rules read the model's own configuration instead of the class name: a denoiser with the
inpainting input layout (9 channels: latents + mask + masked image) can only inpaint, and a
family whose inpainting pipeline needs that layout (Kandinsky 2.2) offers no masked edit on
base weights. :func:`classify_pipeline` returns a :class:`Family` with the exact tasks,
whether a mask is supported or required, and the pipeline class behind each task variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = [
    "OWN_FAMILIES",
    "VIDEO_SIBLINGS",
    "Family",
    "FamilyRule",
    "classify_pipeline",
    "native_video_task",
]

#: The loaded pipeline itself serves a variant.
SELF = "self"

_VIDEO_MARKERS = (
    "Video",
    "Wan",
    "LTX",
    "CogVideoX",
    "Mochi",
    "Allegro",
    "Latte",
    "AnimateDiff",
    "I2VGenXL",
    "SkyReels",
    "EasyAnimate",
    "ConsisID",
)
_I2V_MARKERS = ("ImageToVideo", "I2V", "StableVideoDiffusion", "ConsisID")

#: Video pipelines whose text- and image-to-video variants share one set of weights.
VIDEO_SIBLINGS = {
    "LTXPipeline": {"image_to_video": "LTXImageToVideoPipeline"},
    "LTXImageToVideoPipeline": {"text_to_video": "LTXPipeline"},
}

#: Pipelines whose inpainting variant needs inpainting weights (a 9-channel denoiser input).
_MASK_NEEDS_INPAINT_WEIGHTS = ("KandinskyV22", "Kandinsky")
#: Inpainting checkpoints: denoiser input channels of latents + mask + masked-image latents.
_INPAINT_IN_CHANNELS = 9


@dataclass(frozen=True)
class FamilyRule:
    """One row of :data:`OWN_FAMILIES`: the variants a pipeline class runs, and its quirks.

    ``variants`` maps ``text2img`` / ``img2img`` / ``inpaint`` / ``text_to_video`` /
    ``image_to_video`` to ``"self"`` (the loaded pipeline) or the diffusers class derived
    with ``from_pipe``. ``size`` is ``"max_area"`` for pipelines that scale their output to
    a ``max_area`` parameter (Kontext) instead of using width/height as given.
    """

    variants: Mapping[str, str]
    mask_required: bool = False
    size: str = "default"
    note: str = ""


OWN_FAMILIES: dict[str, FamilyRule] = {
    # edit-only: an instruction edits the input image; no text-to-image, no mask
    "StableDiffusionInstructPix2PixPipeline": FamilyRule({"img2img": SELF}, note="instruction editing"),
    "StableDiffusionXLInstructPix2PixPipeline": FamilyRule({"img2img": SELF}, note="instruction editing"),
    "QwenImageEditPlusPipeline": FamilyRule({"img2img": SELF}, note="multi-image instruction editing"),
    "QwenImageEditPipeline": FamilyRule(
        {"img2img": SELF, "inpaint": "QwenImageEditInpaintPipeline"}, note="instruction editing"
    ),
    "QwenImageEditInpaintPipeline": FamilyRule(
        {"img2img": "QwenImageEditPipeline", "inpaint": SELF}, note="instruction editing"
    ),
    # fill/inpaint-only: the denoiser is conditioned on a mask; a mask is required
    "FluxFillPipeline": FamilyRule({"inpaint": SELF}, mask_required=True, note="fill (inpainting) only"),
    # Kontext-style reference editing: one pipeline for t2i and edits, a masked sibling
    "FluxKontextPipeline": FamilyRule(
        {"text2img": SELF, "img2img": SELF, "inpaint": "FluxKontextInpaintPipeline"},
        size="max_area",
        note="reference editing",
    ),
    "FluxKontextInpaintPipeline": FamilyRule(
        {"text2img": "FluxKontextPipeline", "img2img": "FluxKontextPipeline", "inpaint": SELF},
        size="max_area",
        note="reference editing",
    ),
    # image families whose edit variants exist in diffusers but not in its AutoPipeline tables
    # (ChromaInpaintPipeline is left out: in diffusers 0.42 it reads a config key Chroma lacks)
    "ChromaPipeline": FamilyRule({"text2img": SELF, "img2img": "ChromaImg2ImgPipeline"}),
    # video pairs sharing weights
    "LTXPipeline": FamilyRule({"text_to_video": SELF, "image_to_video": "LTXImageToVideoPipeline"}),
    "LTXImageToVideoPipeline": FamilyRule({"text_to_video": "LTXPipeline", "image_to_video": SELF}),
    "StableVideoDiffusionPipeline": FamilyRule({"image_to_video": SELF}, note="no text conditioning"),
}

#: ``WanPipeline`` folders with ``expand_timesteps`` (Wan 2.2 TI2V-5B) also animate an image
#: with the same weights (diffusers' Wan 2.2 TI2V example).
_WAN_TI2V = FamilyRule(
    {"text_to_video": SELF, "image_to_video": "WanImageToVideoPipeline"}, note="Wan 2.2 TI2V"
)

_VARIANT_TASK = {
    "text2img": "text_to_image",
    "img2img": "image_to_image",
    "inpaint": "image_to_image",
    "text_to_video": "text_to_video",
    "image_to_video": "image_to_video",
}


@dataclass(frozen=True)
class Family:
    """What a pipeline class can do: its kind, tasks, mask handling and the class per variant."""

    pipeline_class: Optional[str]
    kind: str  # "image" | "video" | "upscaler" | "unknown"
    tasks: Optional[tuple[str, ...]]
    supports_mask: Optional[bool] = None
    mask_required: bool = False
    variants: Mapping[str, str] = field(default_factory=dict)
    size: str = "default"
    source: str = "autopipeline"  # where the answer came from: "own-table", "autopipeline", "video", ...
    note: str = ""


def native_video_task(class_name: str) -> str:
    """The task a video pipeline class runs itself (its sibling, if any, comes from ``from_pipe``)."""
    return "image_to_video" if any(m in class_name for m in _I2V_MARKERS) else "text_to_video"


def _denoiser_in_channels(configs: Mapping[str, Mapping[str, Any]]) -> Optional[int]:
    for name in ("unet", "transformer"):
        value = (configs.get(name) or {}).get("in_channels")
        if isinstance(value, int):
            return value
    return None


def _from_rule(class_name: str, rule: FamilyRule, kind: str) -> Family:
    tasks = tuple(dict.fromkeys(_VARIANT_TASK[v] for v in rule.variants))
    return Family(
        class_name,
        kind,
        tasks,
        supports_mask="inpaint" in rule.variants,
        mask_required=rule.mask_required,
        variants=dict(rule.variants),
        size=rule.size,
        source="own-table",
        note=rule.note,
    )


def classify_pipeline(
    class_name: Optional[str],
    *,
    index: Optional[Mapping[str, Any]] = None,
    configs: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> Family:
    """Family of a diffusers pipeline class (from ``model_index.json`` or a loaded pipeline).

    Args:
        class_name: the pipeline class name.
        index: the ``model_index.json`` content (pipeline-level config), when known.
        configs: component configs by component name (``{"unet": {...}}``), when known;
            the denoiser's ``in_channels`` tells inpainting checkpoints apart.
    """
    if not class_name:
        return Family(None, "unknown", None)
    index = index or {}
    configs = configs or {}
    if "Upscale" in class_name:
        return Family(class_name, "upscaler", ("image_upscale",), False, source="upscaler")
    if class_name == "WanPipeline" and index.get("expand_timesteps"):
        return _from_rule(class_name, _WAN_TI2V, "video")
    rule = OWN_FAMILIES.get(class_name)
    is_video = any(m in class_name for m in _VIDEO_MARKERS) and "Img2Img" not in class_name
    if rule is not None:
        return _from_rule(class_name, rule, "video" if is_video else "image")
    if is_video:
        native = native_video_task(class_name)
        return Family(class_name, "video", (native,), False, variants={native: SELF}, source="video")
    try:
        from diffusers.pipelines import auto_pipeline as ap
    except ImportError:  # diffusers missing: let the call report it
        return Family(class_name, "image", ("text_to_image",), False, variants={"text2img": SELF})

    def linked(mapping: Any) -> Optional[str]:
        found = ap._get_task_class(mapping, class_name, throw_error_if_not_exist=False)
        return None if found is None else (SELF if found.__name__ == class_name else found.__name__)

    variants: dict[str, str] = {}
    for variant, mapping, auto in (
        ("text2img", ap.AUTO_TEXT2IMAGE_PIPELINES_MAPPING, "AutoPipelineForText2Image"),
        ("img2img", ap.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, "AutoPipelineForImage2Image"),
        ("inpaint", ap.AUTO_INPAINT_PIPELINES_MAPPING, "AutoPipelineForInpainting"),
    ):
        target = linked(mapping)
        if target is not None:
            variants[variant] = SELF if target == SELF else auto
    in_channels = _denoiser_in_channels(configs)
    inpaint_weights = in_channels == _INPAINT_IN_CHANNELS and "Inpaint" in (
        class_name + str(variants.get("inpaint", ""))
    )
    if inpaint_weights:
        # an inpainting checkpoint: the denoiser expects mask + masked image; nothing else runs
        variants = {"inpaint": variants.get("inpaint", SELF)}
        note = "inpainting checkpoint (9-channel denoiser)"
        return Family(
            class_name, "image", ("image_to_image",), True, True, variants, source="config", note=note
        )
    if "inpaint" in variants and class_name.startswith(_MASK_NEEDS_INPAINT_WEIGHTS):
        del variants["inpaint"]  # its inpainting pipeline needs inpainting weights
    if not variants:  # a pipeline outside every table: call it as text-to-image
        variants["text2img"] = SELF
    tasks = tuple(
        dict.fromkeys(_VARIANT_TASK[v] for v in ("text2img", "img2img", "inpaint") if v in variants)
    )
    return Family(class_name, "image", tasks, "inpaint" in variants, variants=variants)


# -- video frame rules (read from the configs on disk, before anything is loaded) ---------------


def _integral(value: Any) -> Optional[int]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if float(value).is_integer() and value >= 1 else None


def _last(value: Any) -> Optional[int]:
    if isinstance(value, (list, tuple)) and value:
        value = value[-1]
    return _integral(value)


def video_rule(
    class_name: Optional[str], vae: Mapping[str, Any], transformer: Mapping[str, Any]
) -> Optional[dict[str, Any]]:
    """The frame rule and size multiple a video pipeline computes when it loads, from its configs.

    The VAE's temporal factor T makes the pipeline need ``Tk+1`` frames (``vae_scale_factor_temporal``
    of Wan and CogVideoX, ``vae_temporal_compression_ratio`` of LTX, Mochi's fixed 6); width and
    height must be multiples of the spatial factor times the transformer's patch size. Returns
    ``{"num_frames": {"multiple_of": T, "offset": 1}, "size_multiple": S}`` (the parts known), or
    ``None`` when the configs do not say (the pipeline still checks when it runs).
    """
    if not class_name or not any(m in class_name for m in _VIDEO_MARKERS):
        return None
    temporal: Optional[int] = None
    spatial: Optional[int] = None
    if class_name.startswith("Mochi"):
        temporal, spatial = 6, 8  # MochiPipeline hard-codes both
    elif "scale_factor_temporal" in vae:  # Wan: AutoencoderKLWan's config
        temporal, spatial = (
            _integral(vae["scale_factor_temporal"]),
            _integral(vae.get("scale_factor_spatial")),
        )
    elif "spatio_temporal_scaling" in vae:  # LTX-Video, LTX-2: patch sizes x 2^(scaling blocks)
        blocks = sum(1 for x in vae["spatio_temporal_scaling"] if x)
        temporal = _integral(vae.get("temporal_compression_ratio")) or (
            (_integral(vae.get("patch_size_t")) or 1) * 2**blocks
        )
        spatial = (
            _integral(vae.get("spatial_compression_ratio"))
            or (_integral(vae.get("patch_size")) or 1) * 2**blocks
        )
    elif "temporal_compression_ratio" in vae:  # CogVideoX, HunyuanVideo
        temporal = _integral(vae["temporal_compression_ratio"])
        spatial = _integral(vae.get("spatial_compression_ratio"))
        channels = vae.get("block_out_channels")
        if spatial is None and isinstance(channels, (list, tuple)) and channels:
            spatial = 2 ** (len(channels) - 1)
    out: dict[str, Any] = {}
    if temporal is not None and temporal > 1:
        out["num_frames"] = {"multiple_of": temporal, "offset": 1}
    if spatial is not None:
        out["size_multiple"] = spatial * (_last(transformer.get("patch_size")) or 1)
    return out or None
