"""Tiny random-weight video pipelines (LTX-Video, CogVideoX, Mochi, Stable Video Diffusion,
Wan 2.2 TI2V), saved with ``save_pretrained``.

Component configs follow the dummy components of diffusers' own test suite
(``tests/pipelines/<family>/test_*.py``), with local tokenizers (:mod:`._tiny_text`).
Each generates a handful of 16-32 px frames in 2 steps in about a second on a CPU.
"""

from __future__ import annotations

import os
from typing import Any, Union

from ._tiny_text import tiny_clip_vision, tiny_t5
from .tiny_diffusers import _tiny_wan_transformer

__all__ = [
    "build_tiny_cogvideox",
    "build_tiny_ltx",
    "build_tiny_mochi",
    "build_tiny_svd",
    "build_tiny_wan22_ti2v",
]

PathLike = Union[str, "os.PathLike[str]"]


def _save(pipe: Any, path: PathLike) -> str:
    out = os.fspath(path)
    pipe.save_pretrained(out)
    return out


def build_tiny_ltx(path: PathLike, *, seed: int = 0) -> str:
    """LTX-Video (``LTXPipeline``); its image-to-video sibling shares the weights."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(seed)
    tokenizer, t5 = tiny_t5()
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    pipe = LTXPipeline(
        transformer=transformer,
        vae=vae,
        text_encoder=t5.eval(),
        tokenizer=tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    return _save(pipe, path)


def build_tiny_cogvideox(path: PathLike, *, seed: int = 0) -> str:
    """CogVideoX (``CogVideoXPipeline``): 16x16 frames, ``num_frames = 4k+1``."""
    import torch
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
        DDIMScheduler,
    )

    torch.manual_seed(seed)
    tokenizer, t5 = tiny_t5()
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=2,
        sample_height=2,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=226,  # the pipeline's default max_sequence_length
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    pipe = CogVideoXPipeline(
        transformer=transformer, vae=vae, text_encoder=t5, tokenizer=tokenizer, scheduler=DDIMScheduler()
    )
    return _save(pipe, path)


def build_tiny_mochi(path: PathLike, *, seed: int = 0) -> str:
    """Mochi 1 (``MochiPipeline``): asymmetric DiT with a T5 encoder."""
    import torch
    from diffusers import (
        AutoencoderKLMochi,
        FlowMatchEulerDiscreteScheduler,
        MochiPipeline,
        MochiTransformer3DModel,
    )

    torch.manual_seed(seed)
    tokenizer, t5 = tiny_t5()
    transformer = MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=12,
        out_channels=None,
        qk_norm="rms_norm",
        text_embed_dim=32,
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=16,
    )
    freqs = transformer.pos_frequencies  # type: ignore[attr-defined]
    freqs.data = freqs.new_full(freqs.shape, 0)  # as diffusers' test does
    vae = AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    )
    pipe = MochiPipeline(
        transformer=transformer,
        vae=vae,
        text_encoder=t5,
        tokenizer=tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    return _save(pipe, path)


def build_tiny_svd(path: PathLike, *, seed: int = 0) -> str:
    """Stable Video Diffusion (``StableVideoDiffusionPipeline``): image-only conditioning, no prompt."""
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor

    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
        num_frames=4,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        trained_betas=None,
        use_karras_sigmas=True,
    )
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        latent_channels=4,
    )
    pipe = StableVideoDiffusionPipeline(
        unet=unet,
        image_encoder=tiny_clip_vision(hidden=32, image_size=224, patch=14),  # SVD feeds 224 px crops
        scheduler=scheduler,
        vae=vae,
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
    )
    return _save(pipe, path)


def build_tiny_wan22_ti2v(path: PathLike, *, seed: int = 0) -> str:
    """Wan 2.2 TI2V-5B layout (``WanPipeline`` with ``expand_timesteps``, 48-channel VAE):
    text-to-video, and image-to-video with the same weights."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline

    torch.manual_seed(seed)
    tokenizer, t5 = tiny_t5()
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )
    transformer = _tiny_wan_transformer(in_channels=48, out_channels=48)
    pipe = WanPipeline(
        transformer=transformer,
        vae=vae,
        text_encoder=t5.eval(),
        tokenizer=tokenizer,
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        ),
        transformer_2=None,
        boundary_ratio=None,
        expand_timesteps=True,
    )
    return _save(pipe, path)
