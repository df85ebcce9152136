"""Tiny random-weight Diffusers pipelines, built from configs and saved with ``save_pretrained``.

Nothing here downloads anything: every component is created from a config with random
weights (seeded), and the tokenizers are written locally (a byte-level CLIP BPE vocab and
an in-memory T5 unigram vocab). Loading the saved folder back with
``from_pretrained(path, local_files_only=True)`` exercises the real loading code, which is
what the tests and the CLI ``demo`` command need. The outputs are noise-like images and
videos: check shapes, determinism and plumbing, never content.

Each builder writes a folder and returns its path::

    sd = build_tiny_sd(tmp / "tiny-sd")            # StableDiffusionPipeline, 64x64 in ~30 ms
    wan = build_tiny_wan(tmp / "tiny-wan")         # WanPipeline, 9 frames of 16x16
    lora = build_tiny_lora(tmp / "tiny-lora")      # a LoRA for build_tiny_sd's UNet

torch, diffusers and transformers are imported inside the builders (extra ``diffusers``);
:func:`build_tiny_lora` also needs ``peft``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, Union

from ..backends._diffusers.runtime import silence_torchvision_fallback

# the builders import the same pipelines as the Diffusers backend: same boundary, same notice dropped
silence_torchvision_fallback()

__all__ = [
    "TINY_LORA_WEIGHT_NAME",
    "build_all",
    "build_tiny_flux",
    "build_tiny_lora",
    "build_tiny_sd",
    "build_tiny_sd_upscaler",
    "build_tiny_wan",
    "build_tiny_wan_i2v",
    "tiny_t5_tokenizer",
    "write_tiny_clip_tokenizer",
]

PathLike = Union[str, "os.PathLike[str]"]

#: File name written by :func:`build_tiny_lora` (the diffusers default).
TINY_LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"

# A few BPE merges so the tokenizer merges something; every piece exists in the vocab.
_CLIP_MERGES = (
    ("a", "t</w>"),
    ("c", "at</w>"),
    ("t", "h"),
    ("th", "e</w>"),
    ("o", "n</w>"),
    ("i", "n"),
    ("in", "g</w>"),
    ("d", "o"),
    ("do", "g</w>"),
    ("r", "e"),
)
_T5_WORDS = ("a", "the", "of", "cat", "dog", "photo", "video", "red", "blue", "lighthouse")


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (GPT-2/CLIP)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = 256 + extra
            extra += 1
    return [chr(table[b]) for b in range(256)]


def write_tiny_clip_tokenizer(folder: PathLike) -> int:
    """Write ``vocab.json`` and ``merges.txt`` of a tiny CLIP BPE tokenizer; return the vocab size.

    Any UTF-8 text tokenizes (at worst one token per byte). Load it with
    ``CLIPTokenizer.from_pretrained(folder)``: transformers 5 silently ignores
    ``CLIPTokenizer(vocab_file=..., merges_file=...)``.
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    symbols = _byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols)]
    for left, right in _CLIP_MERGES:
        if left + right not in tokens:
            tokens.append(left + right)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as fh:
        json.dump({tok: i for i, tok in enumerate(tokens)}, fh, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as fh:
        fh.write("#version: 0.2\n")
        fh.writelines(f"{left} {right}\n" for left, right in _CLIP_MERGES)
    return len(tokens)


def _clip_tokenizer() -> Any:
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="abstractvision-tok-") as folder:
        size = write_tiny_clip_tokenizer(folder)
        tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=77)
    if len(tokenizer) != size:  # pragma: no cover - guards against a transformers API change
        raise RuntimeError(f"tiny CLIP tokenizer has {len(tokenizer)} tokens, expected {size}")
    return tokenizer


def _clip_text_encoder(
    tokenizer: Any, *, hidden: int = 32, layers: int = 2, hidden_act: str = "quick_gelu"
) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=hidden,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=layers,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            projection_dim=32,
            hidden_act=hidden_act,
        )
    )


def tiny_t5_tokenizer() -> Any:
    """A T5 unigram tokenizer built from an in-memory vocab (no sentencepiece file, no hub)."""
    from transformers import T5Tokenizer

    chars = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -5.0) for c in chars] + [("\u2581" + c, -4.0) for c in chars]
    pieces += [("\u2581" + w, -1.0) for w in _T5_WORDS]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def _tiny_t5_encoder(vocab_size: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(  # type: ignore[call-arg]
            vocab_size=vocab_size,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
    )


def _save(pipe: Any, path: PathLike) -> str:
    out = os.fspath(path)
    pipe.save_pretrained(out)
    return out


def build_tiny_sd(
    path: PathLike,
    *,
    seed: int = 0,
    block_out_channels: Sequence[int] = (32, 64),
    text_hidden: int = 32,
) -> str:
    """A Stable Diffusion 1.x-style pipeline (UNet, 2-block VAE, CLIP) with random weights.

    Defaults: 64x64 images (VAE factor 2), about 7 MB on disk. ``block_out_channels``
    widens the UNet (for memory measurements). The scheduler is Euler, so ``steps`` maps
    one-to-one to denoising steps.
    """
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    out = os.fspath(path)
    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer()
    text_encoder = _clip_text_encoder(tokenizer, hidden=text_hidden)
    unet = UNet2DConditionModel(
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=text_hidden,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=64,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return _save(pipe, out)


def build_tiny_autoencoder_tiny(path: PathLike, *, latent_channels: int = 4, seed: int = 0) -> str:
    """A TAESD-style ``AutoencoderTiny`` (x2 up/down sampling, 16 channels), random weights: a
    preview decoder (``preview_vae``) for the tiny models. About 0.1 MB."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    tiny: Any = AutoencoderTiny(
        encoder_block_out_channels=(16, 16),
        decoder_block_out_channels=(16, 16),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=latent_channels,
    )
    out = os.fspath(path)
    tiny.save_pretrained(out)
    return out


def build_tiny_sd_upscaler(path: PathLike, *, seed: int = 0) -> str:
    """A Stable Diffusion x4 upscaler pipeline (``StableDiffusionUpscalePipeline``), random weights.

    A 16x16 input becomes 64x64.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )

    out = os.fspath(path)
    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer()
    text_encoder = _clip_text_encoder(tokenizer, hidden_act="gelu")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=7,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        use_linear_projection=True,
        only_cross_attention=(True, True, False),
        num_class_embeds=100,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        scaling_factor=0.08333,
    )
    pipe = StableDiffusionUpscalePipeline(
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        max_noise_level=350,
    )
    return _save(pipe, out)


def build_tiny_flux(path: PathLike, *, seed: int = 0) -> str:
    """A Flux.1-style pipeline (one double and one single block, CLIP + T5), random weights."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    out = os.fspath(path)
    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer()
    text_encoder = _clip_text_encoder(tokenizer, hidden_act="gelu")
    tokenizer_2 = tiny_t5_tokenizer()
    text_encoder_2 = _tiny_t5_encoder(len(tokenizer_2))
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )
    vae = AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    return _save(pipe, out)


def _tiny_wan_vae() -> Any:
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def _tiny_wan_transformer(**extra: Any) -> Any:
    from diffusers import WanTransformer3DModel

    config: dict[str, Any] = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    config.update(extra)
    return WanTransformer3DModel(**config)


def build_tiny_wan(path: PathLike, *, seed: int = 0) -> str:
    """A Wan 2.1 text-to-video pipeline (``WanPipeline``), random weights; 9 frames of 16x16 in ~50 ms."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    torch.manual_seed(seed)
    tokenizer = tiny_t5_tokenizer()
    pipe = WanPipeline(
        transformer=_tiny_wan_transformer(),
        vae=_tiny_wan_vae(),
        text_encoder=_tiny_t5_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )
    return _save(pipe, path)


def build_tiny_wan_i2v(path: PathLike, *, seed: int = 0) -> str:
    """A Wan 2.1 image-to-video pipeline (``WanImageToVideoPipeline``) with a tiny CLIP vision encoder."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    tokenizer = tiny_t5_tokenizer()
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=1,
        )
    )
    pipe = WanImageToVideoPipeline(
        transformer=_tiny_wan_transformer(in_channels=36, image_dim=4),
        vae=_tiny_wan_vae(),
        text_encoder=_tiny_t5_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
    )
    return _save(pipe, path)


def build_tiny_lora(
    path: PathLike,
    *,
    seed: int = 0,
    rank: int = 4,
    block_out_channels: Sequence[int] = (32, 64),
    text_hidden: int = 32,
) -> str:
    """A LoRA (attention projections of the UNet) for :func:`build_tiny_sd` with the same sizes.

    The LoRA weights are random and non-zero, so applying the adapter visibly changes the
    output. Writes ``path/pytorch_lora_weights.safetensors`` (needs ``peft``).
    """
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    out = os.fspath(path)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=text_hidden,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    unet.add_adapter(  # type: ignore[attr-defined]
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            init_lora_weights=False,
        )
    )
    layers = get_peft_model_state_dict(unet)
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=layers, weight_name=TINY_LORA_WEIGHT_NAME)
    return out


def build_all(root: PathLike) -> dict[str, str]:
    """Build every tiny model under ``root``; returns ``{"sd": path, "flux": path, ...}``."""
    base = os.fspath(root)
    return {
        "sd": build_tiny_sd(os.path.join(base, "tiny-sd")),
        "sd_upscaler": build_tiny_sd_upscaler(os.path.join(base, "tiny-sd-x4-upscaler")),
        "flux": build_tiny_flux(os.path.join(base, "tiny-flux")),
        "wan": build_tiny_wan(os.path.join(base, "tiny-wan")),
        "wan_i2v": build_tiny_wan_i2v(os.path.join(base, "tiny-wan-i2v")),
        "lora": build_tiny_lora(os.path.join(base, "tiny-sd-lora")),
    }
