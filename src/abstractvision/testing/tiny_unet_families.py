"""Tiny random-weight UNet pipelines (SDXL, SD inpainting, InstructPix2Pix, Kandinsky 2.2),
saved with ``save_pretrained``.

The component configs follow the dummy components of diffusers' own test suite
(``tests/pipelines/<family>/test_*.py``: ``get_dummy_components``), with local tokenizers
(:mod:`._tiny_text`). Transformer (DiT) families are in :mod:`.tiny_image_families`.
"""

from __future__ import annotations

import os
from typing import Any, Union

from ._tiny_text import tiny_clip_text, tiny_clip_tokenizer, tiny_clip_vision

__all__ = [
    "build_tiny_kandinsky22",
    "build_tiny_pix2pix",
    "build_tiny_sd_inpaint",
    "build_tiny_sdxl",
]

PathLike = Union[str, "os.PathLike[str]"]


def _save(pipe: Any, path: PathLike) -> str:
    out = os.fspath(path)
    pipe.save_pretrained(out)
    return out


def _sd_vae() -> Any:
    """The two-block ``AutoencoderKL`` of diffusers' SD/SDXL tests (VAE factor 2)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        sample_size=128,
    )


def _euler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )


def _sd_unet(in_channels: int = 4) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def _sd_parts(in_channels: int) -> dict[str, Any]:
    tokenizer = tiny_clip_tokenizer()
    return {
        "unet": _sd_unet(in_channels),
        "vae": _sd_vae(),
        "text_encoder": tiny_clip_text(tokenizer),
        "tokenizer": tokenizer,
        "scheduler": _euler(),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def build_tiny_sd_inpaint(path: PathLike, *, seed: int = 0) -> str:
    """An inpainting checkpoint (``StableDiffusionInpaintPipeline``, 9-channel UNet): masked edits only."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    torch.manual_seed(seed)
    return _save(StableDiffusionInpaintPipeline(**_sd_parts(9)), path)


def build_tiny_pix2pix(path: PathLike, *, seed: int = 0) -> str:
    """InstructPix2Pix (``StableDiffusionInstructPix2PixPipeline``, 8-channel UNet): edits only."""
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline

    torch.manual_seed(seed)
    return _save(StableDiffusionInstructPix2PixPipeline(**_sd_parts(8)), path)


def build_tiny_sdxl(path: PathLike, *, seed: int = 0) -> str:
    """SDXL (``StableDiffusionXLPipeline``): two CLIP encoders, a text-time conditioned UNet."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 * 8 + 32
        cross_attention_dim=64,
        norm_num_groups=1,
    )
    pipe = StableDiffusionXLPipeline(
        unet=unet,
        vae=_sd_vae(),
        text_encoder=tiny_clip_text(tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=tiny_clip_text(tokenizer, projection=True),
        tokenizer_2=tokenizer,
        scheduler=_euler(),
    )
    return _save(pipe, path)


def build_tiny_kandinsky22(path: PathLike, *, seed: int = 0, inpaint: bool = False) -> str:
    """Kandinsky 2.2 prior + decoder (``KandinskyV22CombinedPipeline``; ``inpaint``: the
    ``KandinskyV22InpaintCombinedPipeline`` with a 9-channel inpainting decoder)."""
    import torch
    from diffusers import (
        DDIMScheduler,
        KandinskyV22CombinedPipeline,
        KandinskyV22InpaintCombinedPipeline,
        PriorTransformer,
        UnCLIPScheduler,
        UNet2DConditionModel,
        VQModel,
    )
    from transformers import CLIPImageProcessor

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=32, num_layers=1)
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))  # type: ignore[attr-defined]
    unet = UNet2DConditionModel(
        in_channels=9 if inpaint else 4,
        out_channels=8,
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        encoder_hid_dim=32,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=32,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
    )
    movq = VQModel(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        in_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        out_channels=3,
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        vq_embed_dim=4,
    )
    cls = KandinskyV22InpaintCombinedPipeline if inpaint else KandinskyV22CombinedPipeline
    pipe = cls(
        unet=unet,
        scheduler=DDIMScheduler(
            num_train_timesteps=1000,
            beta_schedule="linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
            prediction_type="epsilon",
            thresholding=False,
        ),
        movq=movq,
        prior_prior=prior,
        prior_image_encoder=tiny_clip_vision(hidden=32, image_size=32, patch=4),
        prior_text_encoder=tiny_clip_text(tokenizer, projection=True),
        prior_tokenizer=tokenizer,
        prior_scheduler=UnCLIPScheduler(
            variance_type="fixed_small_log",
            prediction_type="sample",
            num_train_timesteps=1000,
            clip_sample=True,
            clip_sample_range=10.0,
        ),
        prior_image_processor=CLIPImageProcessor(crop_size=32, size=32),
    )
    return _save(pipe, path)
