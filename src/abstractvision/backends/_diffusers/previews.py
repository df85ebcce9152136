"""Live previews of the Diffusers backend: the latents of a step as a small RGB image, cheaply.

Called from the pipeline's ``callback_on_step_end`` only at the steps the request's
``on_preview`` asks for (:func:`abstractvision._relays.wants_preview`); a request without
``on_preview`` never reaches this module. Decoders, cheapest faithful first
(``HuggingFaceDiffusersBackendConfig.preview_decoder``):

- ``tiny_autoencoder``: a TAESD-style ``AutoencoderTiny`` (``preview_vae``: a folder or hub
  id; with ``auto``, also the family's known one when it is already in the local Hugging
  Face cache: ``madebyollin/taesd``, ``taesdxl``, ``taesd3``, ``taef1``). Never downloaded
  unless ``allow_download`` is on.
- ``latent_rgb``: a linear latent-to-RGB map fitted once per model from the model's own VAE
  encoder (a colour chart is encoded and the latents are regressed onto its colours: the same
  kind of per-family matrix ComfyUI or sd.cpp ship, but read from the weights in use, so it
  fits any family, fine-tune or test model). One 128 px encode per loaded VAE, then a
  matrix product per preview at latent resolution.
- ``vae``: the full VAE decode of the step's latents (exact but as slow as the final decode:
  only when asked for).

``auto`` (the default) picks the tiny autoencoder when one is configured or present, else
``latent_rgb``. Videos preview their middle frame. Packed latents (Flux, Qwen-Image) are
unpacked with the pipeline's own ``_unpack_latents``; a family whose latents cannot be read
this way (LTX-Video) gets no previews and a warning in the log, never a failed generation.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable
from typing import Any, Optional

from ...types import PreviewEvent

__all__ = ["PREVIEW_DECODERS", "Previewer", "make_previewer"]

logger = logging.getLogger("abstractvision.backends.huggingface_diffusers")

PREVIEW_DECODERS = ("auto", "tiny_autoencoder", "latent_rgb", "vae")
#: TAESD-family autoencoders by pipeline-class prefix (longest prefix first)
_KNOWN_TINY = (
    ("StableDiffusionXL", "madebyollin/taesdxl"),
    ("StableDiffusion3", "madebyollin/taesd3"),
    ("StableDiffusion", "madebyollin/taesd"),
    ("Flux", "madebyollin/taef1"),
)
_CHART_PX = 128
#: latent_rgb previews are scaled up to the output size, at most this long
_MAX_PREVIEW_PX = 512
#: fitted latent -> RGB maps, per VAE module (dropped with the model)
_FITTED: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_TINY: dict[tuple[str, str, str], Any] = {}


class _Unreadable(Exception):
    """These latents cannot be turned into an image by this module."""


def known_tiny_autoencoder(class_name: str, cache_dir: Optional[str] = None) -> Optional[str]:
    """The local folder of the family's TAESD-style autoencoder, when it is in the Hugging Face cache."""
    repo = next((r for prefix, r in _KNOWN_TINY if class_name.startswith(prefix)), None)
    if repo is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, "config.json", cache_dir=cache_dir)
    except Exception:
        return None
    return os.path.dirname(found) if isinstance(found, str) and os.path.isfile(found) else None


class Previewer:
    """Turns one step's latents into :class:`PreviewEvent` s for the request's ``on_preview``."""

    def __init__(
        self,
        pipe: Any,
        task: str,
        on_preview: Callable[[PreviewEvent], None],
        *,
        decoder: str,
        tiny: Any = None,
        height: Optional[int] = None,
        width: Optional[int] = None,
    ) -> None:
        self.pipe = pipe
        self.task = task
        self.on_preview = on_preview
        self.decoder = decoder
        self.tiny = tiny
        self.height = height
        self.width = width
        self.disabled = False

    def __call__(self, step: int, total: Optional[int], latents: Any) -> None:
        from ..._relays import encode_preview, wants_preview

        if self.disabled or latents is None or not wants_preview(self.on_preview, step, total):
            return

        try:
            images, frame = self._images(latents)
        except _Unreadable as exc:
            self.disabled = True
            logger.warning("No previews for %s: %s", type(self.pipe).__name__, exc)
            return
        for index, image in enumerate(images):
            data, width, height = encode_preview(image)
            self.on_preview(
                PreviewEvent(
                    task=self.task,
                    image=data,
                    width=width,
                    height=height,
                    step=step,
                    total_steps=total,
                    index=index,
                    decoder=self.decoder,
                    frame=frame,
                )
            )

    # -- latents -> images -------------------------------------------------------------------

    def _images(self, latents: Any) -> tuple[list[Any], Optional[int]]:
        import torch

        with torch.no_grad():
            latents = self._unpacked(latents.detach())
            frame = None
            channels = _latent_channels(self.pipe.vae)
            if latents.ndim == 5 and latents.shape[1] != channels and latents.shape[2] == channels:
                latents = latents.permute(0, 2, 1, 3, 4)  # CogVideoX, SVD: [batch, frames, channels, h, w]
            if latents.ndim == 5:  # video: [batch, channels, frames, h, w] -> the middle frame
                frame_index = latents.shape[2] // 2
                temporal = _temporal_factor(self.pipe)
                frame = frame_index * temporal if temporal else frame_index
                latents = latents[:, :, frame_index]
            if latents.ndim != 4:
                raise _Unreadable(f"latents of shape {tuple(latents.shape)}")
            if self.decoder == "tiny_autoencoder":
                rgb = self._tiny_decode(latents)
            elif self.decoder == "vae":
                rgb = self._vae_decode(latents)
            else:
                rgb = self._latent_rgb(latents)
        images = [_to_pil(img) for img in rgb]
        if self.decoder == "latent_rgb" and self.width and self.height:  # latent resolution -> output size
            scale = min(1.0, _MAX_PREVIEW_PX / max(self.width, self.height))
            size = (max(1, round(self.width * scale)), max(1, round(self.height * scale)))
            images = [img.resize(size, _bilinear()) for img in images]
        return images, frame

    def _unpacked(self, latents: Any) -> Any:
        if latents.ndim != 3:
            return latents
        unpack = getattr(self.pipe, "_unpack_latents", None)
        factor = getattr(self.pipe, "vae_scale_factor", None)
        if not callable(unpack) or not self.height or not self.width or not isinstance(factor, int):
            raise _Unreadable("its latents are packed and the pipeline cannot unpack them here")
        try:
            out = unpack(latents, self.height, self.width, factor)
        except TypeError as exc:  # another signature (LTX-Video packs frames too)
            raise _Unreadable(f"its latents are packed differently ({exc})") from None
        return out[:, :, 0] if out.ndim == 5 and out.shape[2] == 1 else out

    def _vae_space(self, latents: Any) -> Any:
        """Latents as the pipeline hands them to its VAE (scaling, shift or per-channel statistics)."""
        import torch

        config = self.pipe.vae.config
        scaling = float(getattr(config, "scaling_factor", None) or 1.0)
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        latents = latents.float()
        if mean is not None and std is not None and len(mean) == latents.shape[1]:
            shape = (1, latents.shape[1], 1, 1)
            mean_t = torch.tensor(mean, dtype=latents.dtype, device=latents.device).view(shape)
            std_t = torch.tensor(std, dtype=latents.dtype, device=latents.device).view(shape)
            return latents * std_t / scaling + mean_t
        shift = float(getattr(config, "shift_factor", None) or 0.0)
        return latents / scaling + shift

    def _latent_rgb(self, latents: Any) -> Any:
        z = self._vae_space(latents)
        weights, bias = _fitted_map(self.pipe.vae, z.shape[1])
        rgb = (z.permute(0, 2, 3, 1) @ weights.to(z.device)) + bias.to(z.device)
        return rgb.permute(0, 3, 1, 2)

    def _tiny_decode(self, latents: Any) -> Any:
        tiny = self.tiny
        config = tiny.config
        scaled = latents.to(device=tiny.device, dtype=tiny.dtype) / float(config.scaling_factor or 1.0)
        return tiny.decode(scaled + float(config.shift_factor or 0.0)).sample.float()

    def _vae_decode(self, latents: Any) -> Any:
        vae = self.pipe.vae
        z = self._vae_space(latents).to(device=vae.device, dtype=vae.dtype)
        if _is_video_vae(vae):
            return vae.decode(z.unsqueeze(2)).sample[:, :, 0].float()
        return vae.decode(z).sample.float()


def _temporal_factor(pipe: Any) -> Optional[int]:
    for name in ("vae_scale_factor_temporal", "vae_temporal_compression_ratio", "vae_temporal_scale_factor"):
        value = getattr(pipe, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _latent_channels(vae: Any) -> Optional[int]:
    config = vae.config
    for key in ("latent_channels", "z_dim"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


_VIDEO_VAE: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _is_video_vae(vae: Any) -> bool:
    """A VAE with 3D convolutions takes ``[batch, channels, frames, h, w]``."""
    found = _VIDEO_VAE.get(vae)
    if found is None:
        import torch

        found = any(isinstance(m, torch.nn.Conv3d) for m in vae.modules()) or any(
            "Conv3d" in type(m).__name__ for m in vae.modules()
        )
        _VIDEO_VAE[vae] = found
    return found


def _bilinear() -> Any:
    from PIL import Image

    return Image.Resampling.BILINEAR


def _to_pil(rgb: Any) -> Any:
    """``[3, h, w]`` in [-1, 1] -> a PIL image."""
    from PIL import Image

    array = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to("cpu").byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array, "RGB")


def _chart(px: int) -> Any:
    """A fixed colour chart in [-1, 1]: 8x8 flat patches of varied colours (and greys)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    colours = torch.rand(64, 3, generator=generator) * 2 - 1
    colours[:8] = torch.linspace(-1, 1, 8).unsqueeze(1)  # a grey ramp
    patch = px // 8
    grid = colours.view(8, 8, 3).permute(2, 0, 1)
    return grid.repeat_interleave(patch, 1).repeat_interleave(patch, 2).unsqueeze(0)


def _fitted_map(vae: Any, channels: int) -> tuple[Any, Any]:
    """``(weights [channels, 3], bias [3])`` mapping VAE-space latents to RGB in [-1, 1]."""
    cached = _FITTED.get(vae)
    if cached is not None:
        return cached
    import torch

    encode = getattr(vae, "encode", None)
    if not callable(encode) or getattr(vae, "encoder", None) is None:
        raise _Unreadable("its VAE has no encoder to fit a latent-to-RGB map with (set preview_decoder)")
    chart = _chart(_CHART_PX).to(device=vae.device, dtype=vae.dtype)
    video = _is_video_vae(vae)
    try:
        with torch.no_grad():
            encoded = encode(chart.unsqueeze(2) if video else chart)
            dist = getattr(encoded, "latent_dist", None)
            z = (dist.mode() if dist is not None else encoded.latents).float()
    except Exception as exc:  # an encoder that wants another input layout
        raise _Unreadable(
            f"its VAE could not encode the colour chart ({type(exc).__name__}: {exc})"
        ) from None
    if video:
        z = z[:, :, 0]
    if z.shape[1] != channels:
        raise _Unreadable(f"its VAE encodes {z.shape[1]} channels but the latents have {channels}")
    h, w = z.shape[-2:]
    target = torch.nn.functional.adaptive_avg_pool2d(chart.float().to(z.device), (h, w))
    x = z.permute(0, 2, 3, 1).reshape(-1, channels)
    y = target.permute(0, 2, 3, 1).reshape(-1, 3)
    design = torch.cat([x, torch.ones(x.shape[0], 1, device=x.device)], dim=1)
    solution = torch.linalg.lstsq(design.cpu(), y.cpu()).solution
    fitted = (solution[:-1].contiguous(), solution[-1].contiguous())
    _FITTED[vae] = fitted
    return fitted


def _load_tiny(
    source: str, *, device: Any, dtype: Any, allow_download: bool, cache_dir: Optional[str]
) -> Any:
    key = (source, str(device), str(dtype))
    if key not in _TINY:
        from diffusers import AutoencoderTiny

        from .runtime import quiet_loading_bars

        with quiet_loading_bars():
            tiny = AutoencoderTiny.from_pretrained(
                source, torch_dtype=dtype, local_files_only=not allow_download, cache_dir=cache_dir
            )
        _TINY[key] = tiny.to(device).eval()
    return _TINY[key]


def make_previewer(backend: Any, pipe: Any, task: str, request: Any, call: Any) -> Optional[Previewer]:
    """The previewer of one pipeline call, or ``None`` when the request wants no previews."""
    on_preview = getattr(request, "on_preview", None)
    if on_preview is None:
        return None
    from ...errors import ModelLoadError

    config = backend.config
    choice = config.preview_decoder
    tiny = None
    source = config.preview_vae
    if choice in ("auto", "tiny_autoencoder") and source is None:
        source = known_tiny_autoencoder(type(pipe).__name__, config.cache_dir)
    if choice == "tiny_autoencoder" and source is None:
        raise ModelLoadError(
            "preview_decoder='tiny_autoencoder' needs preview_vae (an AutoencoderTiny folder or hub id such as "
            "'madebyollin/taesd'), or the family's one in the local Hugging Face cache."
        )
    decoder = "latent_rgb" if choice == "auto" else choice
    if choice in ("auto", "tiny_autoencoder") and source is not None:
        vae = getattr(pipe, "vae", None)
        try:
            tiny = _load_tiny(
                source,
                device=getattr(vae, "device", "cpu"),
                dtype=getattr(vae, "dtype", None),
                allow_download=config.allow_download,
                cache_dir=config.cache_dir,
            )
            decoder = "tiny_autoencoder"
        except Exception as exc:
            if choice == "tiny_autoencoder" or config.preview_vae is not None:
                raise ModelLoadError(f"Cannot load the preview autoencoder {source!r}: {exc}") from exc
            logger.warning(
                "The cached tiny autoencoder %s did not load (%s); previews use latent_rgb.", source, exc
            )
    height, width = call.effective("height"), call.effective("width")
    sample = getattr(pipe, "default_sample_size", None)
    factor = getattr(pipe, "vae_scale_factor", None)
    if isinstance(sample, int) and isinstance(factor, int):
        height, width = height or sample * factor, width or sample * factor
    return Previewer(pipe, task, on_preview, decoder=decoder, tiny=tiny, height=height, width=width)
