"""Tiny random-weight transformer (DiT) image pipelines of the current families, saved with
``save_pretrained`` (UNet families: :mod:`.tiny_unet_families`).

The component configs follow the dummy components of diffusers' own test suite
(``tests/pipelines/<family>/test_*.py``: ``get_dummy_components``), with the tokenizers those
tests download replaced by local ones (:mod:`._tiny_text`). Each builder writes a pipeline
folder that loads back with ``DiffusionPipeline.from_pretrained(path, local_files_only=True)``,
which is how the backend loads real checkpoints. Outputs are noise: test shapes and plumbing.

Sizes: every model here generates 32-64 px images in 2 steps in well under a second on a CPU.
"""

from __future__ import annotations

import os
from typing import Any, Union

from ._tiny_text import tiny_clip_text, tiny_clip_tokenizer, tiny_gemma2, tiny_glm, tiny_t5
from .tiny_unet_families import _sd_vae

__all__ = [
    "build_tiny_chroma",
    "build_tiny_cogview4",
    "build_tiny_flux_fill",
    "build_tiny_flux_kontext",
    "build_tiny_lumina2",
    "build_tiny_pixart_sigma",
    "build_tiny_qwen_image",
    "build_tiny_sana",
    "build_tiny_sd3",
    "build_tiny_z_image",
]

PathLike = Union[str, "os.PathLike[str]"]


def _save(pipe: Any, path: PathLike) -> str:
    out = os.fspath(path)
    pipe.save_pretrained(out)
    return out


def _flat_vae(latent_channels: int, *, blocks: int = 1, **extra: Any) -> Any:
    """The 4-channel ``AutoencoderKL`` of diffusers' Flux/SD3/Lumina tests (VAE factor 2**(blocks-1))."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=(4,) * blocks,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
        **extra,
    )


def build_tiny_sd3(path: PathLike, *, seed: int = 0) -> str:
    """Stable Diffusion 3 (``StableDiffusion3Pipeline``): MMDiT, two CLIP encoders and T5."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    t5_tokenizer, t5 = tiny_t5()
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=16,  # the real SD3 latent width: its inpainting pipeline needs 16 (or 33)
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=16,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        vae=_flat_vae(16),
        text_encoder=tiny_clip_text(tokenizer, projection=True),
        tokenizer=tokenizer,
        text_encoder_2=tiny_clip_text(tokenizer, projection=True),
        tokenizer_2=tokenizer,
        text_encoder_3=t5,
        tokenizer_3=t5_tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    return _save(pipe, path)


def _flux_parts(in_channels: int, out_channels: Any, latent_channels: int) -> dict[str, Any]:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    tokenizer = tiny_clip_tokenizer()
    t5_tokenizer, t5 = tiny_t5()
    return {
        "transformer": FluxTransformer2DModel(
            patch_size=1,
            in_channels=in_channels,
            out_channels=out_channels,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            axes_dims_rope=[4, 4, 8],
        ),
        "vae": _flat_vae(latent_channels),
        "text_encoder": tiny_clip_text(tokenizer),
        "tokenizer": tokenizer,
        "text_encoder_2": t5,
        "tokenizer_2": t5_tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }


def build_tiny_flux_fill(path: PathLike, *, seed: int = 0) -> str:
    """Flux Fill (``FluxFillPipeline``): the transformer also reads the mask and the masked image."""
    import torch
    from diffusers import FluxFillPipeline

    torch.manual_seed(seed)
    return _save(FluxFillPipeline(**_flux_parts(20, 8, 2)), path)


def build_tiny_flux_kontext(path: PathLike, *, seed: int = 0) -> str:
    """Flux Kontext (``FluxKontextPipeline``): text-to-image and reference editing on one model."""
    import torch
    from diffusers import FluxKontextPipeline

    torch.manual_seed(seed)
    pipe = FluxKontextPipeline(**_flux_parts(4, None, 1), image_encoder=None, feature_extractor=None)
    return _save(pipe, path)


def build_tiny_qwen_image(path: PathLike, *, seed: int = 0) -> str:
    """Qwen-Image (``QwenImagePipeline``) with a tiny Qwen2.5-VL text encoder."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )

    from ._tiny_text import tiny_qwen25_vl

    torch.manual_seed(seed)
    tokenizer, text_encoder = tiny_qwen25_vl()
    z_dim = 4
    pipe = QwenImagePipeline(
        transformer=QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=3,
            joint_attention_dim=16,
            guidance_embeds=False,
            axes_dims_rope=(8, 4, 4),
        ),
        vae=AutoencoderKLQwenImage(
            base_dim=z_dim * 6,
            z_dim=z_dim,
            dim_mult=[1, 2, 4],
            num_res_blocks=1,
            temperal_downsample=[False, True],
            latents_mean=[0.0] * z_dim,
            latents_std=[1.0] * z_dim,
        ),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    return _save(pipe, path)


def build_tiny_pixart_sigma(path: PathLike, *, seed: int = 0) -> str:
    """PixArt-Sigma (``PixArtSigmaPipeline``): DiT with a T5 encoder; resolution binning on 256 px bins."""
    import torch
    from diffusers import DDIMScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    torch.manual_seed(seed)
    tokenizer, t5 = tiny_t5()
    transformer = PixArtTransformer2DModel(
        sample_size=32,  # 32 selects the 256 px aspect-ratio bins of the pipeline
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    pipe = PixArtSigmaPipeline(
        transformer=transformer,
        vae=_sd_vae(),
        text_encoder=t5,
        tokenizer=tokenizer,
        scheduler=DDIMScheduler(),
    )
    return _save(pipe, path)


def build_tiny_sana(path: PathLike, *, seed: int = 0) -> str:
    """Sana (``SanaPipeline``): linear-attention DiT (patch size 1), a DC-AE and a Gemma 2 encoder."""
    import torch
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel

    torch.manual_seed(seed)
    tokenizer, text_encoder = tiny_gemma2()
    transformer = SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=8,
        sample_size=16,  # 16 selects the 512 px aspect-ratio bins of the pipeline
    )
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=[1, 1],
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    pipe = SanaPipeline(
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )
    return _save(pipe, path)


def build_tiny_lumina2(path: PathLike, *, seed: int = 0) -> str:
    """Lumina Image 2.0 (``Lumina2Pipeline``): next-DiT with a Gemma 2 encoder."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    torch.manual_seed(seed)
    tokenizer, text_encoder = tiny_gemma2()
    transformer = Lumina2Transformer2DModel(
        sample_size=4,
        patch_size=2,
        in_channels=4,
        hidden_size=8,
        num_layers=2,
        num_attention_heads=1,
        num_kv_heads=1,
        multiple_of=16,
        ffn_dim_multiplier=None,
        norm_eps=1e-5,
        scaling_factor=1.0,
        axes_dim_rope=[4, 2, 2],
        cap_feat_dim=8,
    )
    pipe = Lumina2Pipeline(
        transformer=transformer,
        vae=_flat_vae(4, blocks=4),  # Lumina2Pipeline assumes the real VAE factor, 8
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    return _save(pipe, path)


def build_tiny_cogview4(path: PathLike, *, seed: int = 0) -> str:
    """CogView4 (``CogView4Pipeline``): DiT with a GLM encoder."""
    import torch
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel, FlowMatchEulerDiscreteScheduler

    torch.manual_seed(seed)
    tokenizer, text_encoder = tiny_glm()
    transformer = CogView4Transformer2DModel(
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=4,
        num_attention_heads=4,
        out_channels=4,
        text_embed_dim=32,
        time_embed_dim=8,
        condition_dim=4,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_shift=0.25,
        max_shift=0.75,
        base_image_seq_len=256,
        use_dynamic_shifting=True,
        time_shift_type="linear",
    )
    pipe = CogView4Pipeline(
        transformer=transformer,
        vae=_sd_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
    )
    return _save(pipe, path)


def build_tiny_chroma(path: PathLike, *, seed: int = 0) -> str:
    """Chroma (``ChromaPipeline``): a Flux-schnell derivative with a T5 encoder only and real CFG."""
    import torch
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    torch.manual_seed(seed)
    tokenizer, t5 = tiny_t5()
    transformer = ChromaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=[4, 4, 8],
        approximator_hidden_dim=32,
        approximator_layers=1,
        approximator_num_channels=16,
    )
    pipe = ChromaPipeline(
        transformer=transformer,
        vae=_flat_vae(1),
        text_encoder=t5.eval(),
        tokenizer=tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    return _save(pipe, path)


def build_tiny_z_image(path: PathLike, *, seed: int = 0) -> str:
    """Z-Image (``ZImagePipeline``): single-stream DiT with a Qwen3 encoder; img2img/inpaint share it."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        ZImagePipeline,
        ZImageTransformer2DModel,
    )

    from ._tiny_text import tiny_qwen3

    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=16,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32],
    )
    with torch.no_grad():  # as diffusers' test does: random pad tokens can overflow
        for token in (transformer.x_pad_token, transformer.cap_pad_token):  # type: ignore[attr-defined]
            token.copy_(torch.ones_like(token.data))
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        block_out_channels=[32, 64],
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=32,
        sample_size=32,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )
    tokenizer, text_encoder = tiny_qwen3()
    pipe = ZImagePipeline(
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    return _save(pipe, path)
