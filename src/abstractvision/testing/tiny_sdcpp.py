"""Tiny random-weight model files that stable-diffusion.cpp loads, written without torch.

stable-diffusion.cpp hard-codes the SD1/SD2/SDXL UNet and CLIP sizes, so a tiny Stable
Diffusion checkpoint is rejected. Its Flux runner, however, infers depth, width and heads
from tensor shapes, so a one-block Flux DiT works, decoded by a tiny TAESD (16 latent
channels) instead of the 84M-parameter Flux VAE. sd.cpp still needs a text encoder: a
full-size CLIP-L (123M parameters, 246 MB in float16) with random weights.

Everything here is standard library only (no torch, numpy or diffusers): the tensors are
float16 values drawn from :class:`random.Random` with a magnitude of about
``1/sqrt(fan_in)`` (like PyTorch's default init), so outputs depend on the seed and
the files are byte-identical for the same ``seed``. Formats written: safetensors (original
Black Forest Labs tensor names, which sd.cpp detects as Flux) and GGUF (float16 tensors).

Typical use in a test session::

    files = build_tiny_flux_sdcpp(tmp_dir)
    StableDiffusionCppBackendConfig(diffusion_model=files.diffusion_model,
                                    taesd=files.taesd, clip_l=files.clip_l)
"""

from __future__ import annotations

import json
import math
import os
import random
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Union

__all__ = [
    "TinyFluxFiles",
    "build_tiny_flux_sdcpp",
    "clip_l_shapes",
    "esrgan_shapes",
    "flux_lora_shapes",
    "flux_shapes",
    "taesd_shapes",
    "write_gguf",
    "write_safetensors",
    "write_tiny_flux_lora",
]

PathLike = Union[str, "os.PathLike[str]"]
Shape = tuple[int, ...]


# -- tensor shapes ----------------------------------------------------------------------


def flux_shapes(
    *, hidden: int = 128, depth: int = 1, depth_single: int = 1, mlp_ratio: int = 4, guidance: bool = False
) -> dict[str, Shape]:
    """Flux DiT tensors with original (BFL) names, as sd.cpp expects them.

    Fixed by sd.cpp: 64 input channels (16 latent channels x 2x2 patches), a 4096-wide
    context (zeros when T5 is absent), a 768-wide pooled vector (CLIP-L) and a head
    dimension of 128 (the sum of the RoPE axes 16+56+56), so ``hidden`` is a multiple of 128.
    """
    mlp = hidden * mlp_ratio
    s: dict[str, Shape] = {
        "img_in.weight": (hidden, 64),
        "img_in.bias": (hidden,),
        "txt_in.weight": (hidden, 4096),
        "txt_in.bias": (hidden,),
    }
    embedders = [("time_in", 256), ("vector_in", 768)] + ([("guidance_in", 256)] if guidance else [])
    for name, width in embedders:
        s[f"{name}.in_layer.weight"] = (hidden, width)
        s[f"{name}.in_layer.bias"] = (hidden,)
        s[f"{name}.out_layer.weight"] = (hidden, hidden)
        s[f"{name}.out_layer.bias"] = (hidden,)
    for i in range(depth):
        p = f"double_blocks.{i}."
        for stream in ("img", "txt"):
            s[p + f"{stream}_mod.lin.weight"] = (6 * hidden, hidden)
            s[p + f"{stream}_mod.lin.bias"] = (6 * hidden,)
            s[p + f"{stream}_attn.qkv.weight"] = (3 * hidden, hidden)
            s[p + f"{stream}_attn.qkv.bias"] = (3 * hidden,)
            s[p + f"{stream}_attn.proj.weight"] = (hidden, hidden)
            s[p + f"{stream}_attn.proj.bias"] = (hidden,)
            s[p + f"{stream}_attn.norm.query_norm.scale"] = (128,)
            s[p + f"{stream}_attn.norm.key_norm.scale"] = (128,)
            s[p + f"{stream}_mlp.0.weight"] = (mlp, hidden)
            s[p + f"{stream}_mlp.0.bias"] = (mlp,)
            s[p + f"{stream}_mlp.2.weight"] = (hidden, mlp)
            s[p + f"{stream}_mlp.2.bias"] = (hidden,)
    for i in range(depth_single):
        p = f"single_blocks.{i}."
        s[p + "modulation.lin.weight"] = (3 * hidden, hidden)
        s[p + "modulation.lin.bias"] = (3 * hidden,)
        s[p + "linear1.weight"] = (3 * hidden + mlp, hidden)
        s[p + "linear1.bias"] = (3 * hidden + mlp,)
        s[p + "linear2.weight"] = (hidden, hidden + mlp)
        s[p + "linear2.bias"] = (hidden,)
        s[p + "norm.query_norm.scale"] = (128,)
        s[p + "norm.key_norm.scale"] = (128,)
    s["final_layer.adaLN_modulation.1.weight"] = (2 * hidden, hidden)
    s["final_layer.adaLN_modulation.1.bias"] = (2 * hidden,)
    s["final_layer.linear.weight"] = (64, hidden)
    s["final_layer.linear.bias"] = (64,)
    return s


def taesd_shapes(*, latent_channels: int = 16, channels: int = 64) -> dict[str, Shape]:
    """A TAESD (diffusers ``AutoencoderTiny`` names): encoder and decoder of 3x3 convs."""
    c = channels
    s: dict[str, Shape] = {}

    def conv(name: str, cin: int, cout: int, bias: bool = True) -> None:
        s[f"{name}.weight"] = (cout, cin, 3, 3)
        if bias:
            s[f"{name}.bias"] = (cout,)

    def block(name: str) -> None:
        for j in (0, 2, 4):
            conv(f"{name}.conv.{j}", c, c)

    conv("encoder.layers.0", 3, c)
    block("encoder.layers.1")
    for down in (2, 6, 10):
        conv(f"encoder.layers.{down}", c, c, bias=False)
        for j in range(1, 4):
            block(f"encoder.layers.{down + j}")
    conv("encoder.layers.14", c, latent_channels)
    conv("decoder.layers.0", latent_channels, c)
    for j in (2, 3, 4):
        block(f"decoder.layers.{j}")
    for up in (6, 11):
        conv(f"decoder.layers.{up}", c, c, bias=False)
        for j in range(1, 4):
            block(f"decoder.layers.{up + j}")
    conv("decoder.layers.16", c, c, bias=False)
    block("decoder.layers.17")
    conv("decoder.layers.18", c, 3)
    return s


def esrgan_shapes(*, scale: int = 2, num_block: int = 1) -> dict[str, Shape]:
    """An ESRGAN (RRDBNet, original names) upscaler; sd.cpp fixes 64 features and 32 growth channels."""
    if scale not in (1, 2, 4):
        raise ValueError("scale must be 1, 2 or 4")
    feat, grow = 64, 32
    s: dict[str, Shape] = {}

    def conv(name: str, cin: int, cout: int) -> None:
        s[f"{name}.weight"] = (cout, cin, 3, 3)
        s[f"{name}.bias"] = (cout,)

    conv("conv_first", 3, feat)
    for i in range(num_block):
        for r in (1, 2, 3):
            for k in range(1, 6):
                conv(f"body.{i}.rdb{r}.conv{k}", feat + (k - 1) * grow, feat if k == 5 else grow)
    conv("conv_body", feat, feat)
    if scale >= 2:
        conv("conv_up1", feat, feat)
    if scale == 4:
        conv("conv_up2", feat, feat)
    conv("conv_hr", feat, feat)
    conv("conv_last", feat, 3)
    return s


def clip_l_shapes() -> dict[str, Shape]:
    """The OpenAI CLIP ViT-L/14 text tower (``text_model.*`` names); sd.cpp fixes its size."""
    d, ff, layers = 768, 3072, 12
    s: dict[str, Shape] = {
        "text_model.embeddings.token_embedding.weight": (49408, d),
        "text_model.embeddings.position_embedding.weight": (77, d),
    }
    for i in range(layers):
        p = f"text_model.encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s[p + f"self_attn.{proj}.weight"] = (d, d)
            s[p + f"self_attn.{proj}.bias"] = (d,)
        for ln in ("layer_norm1", "layer_norm2"):
            s[p + f"{ln}.weight"] = (d,)
            s[p + f"{ln}.bias"] = (d,)
        s[p + "mlp.fc1.weight"] = (ff, d)
        s[p + "mlp.fc1.bias"] = (ff,)
        s[p + "mlp.fc2.weight"] = (d, ff)
        s[p + "mlp.fc2.bias"] = (d,)
    s["text_model.final_layer_norm.weight"] = (d,)
    s["text_model.final_layer_norm.bias"] = (d,)
    return s


# -- random float16 data ------------------------------------------------------------------

_F16_ONE = struct.pack("<e", 1.0)


def _numel(shape: Shape) -> int:
    return math.prod(shape)


def _is_norm_scale(name: str) -> bool:
    return name.endswith(".scale") or (("norm" in name) and name.endswith(".weight"))


def _high_byte_table(fan_in: int) -> bytes:
    """Map a random byte to the high byte of a float16 of magnitude ~1/sqrt(fan_in).

    Bit 7 keeps the sign, bits 5-6 pick one of four exponents below the target, bits 0-1
    are the top mantissa bits; the low byte (random) holds the rest of the mantissa.
    """
    top = math.floor(math.log2(1.0 / math.sqrt(max(fan_in, 1))))
    table = bytearray(256)
    for b in range(256):
        exponent = max(1, min(30, top + 15 - ((b >> 5) & 0x3)))
        table[b] = (b & 0x80) | (exponent << 2) | (b & 0x3)
    return bytes(table)


def _tensor_f16(name: str, shape: Shape, rng: random.Random, fan_in: int) -> bytes:
    n = _numel(shape)
    if _is_norm_scale(name):
        return _F16_ONE * n
    if name.endswith(".bias") and "norm" in name:
        return bytes(2 * n)
    data = bytearray(rng.randbytes(2 * n))
    data[1::2] = bytes(data[1::2]).translate(_high_byte_table(fan_in))
    return bytes(data)


def _fan_in(name: str, shapes: dict[str, Shape]) -> int:
    shape = shapes[name]
    if name.endswith(".bias"):
        weight = shapes.get(name[: -len(".bias")] + ".weight")
        return _numel(weight[1:]) if weight else shape[0]
    if "embedding" in name:
        return 1024  # embeddings: small values, like N(0, 0.02)
    return _numel(shape[1:]) if len(shape) > 1 else shape[0]


def random_tensors(shapes: dict[str, Shape], *, seed: int = 0) -> Iterator[tuple[str, Shape, bytes]]:
    """Yield ``(name, shape, float16 little-endian bytes)`` deterministically for ``seed``."""
    rng = random.Random(seed)
    for name, shape in shapes.items():
        yield name, shape, _tensor_f16(name, shape, rng, _fan_in(name, shapes))


# -- file formats -------------------------------------------------------------------------


def write_safetensors(
    path: PathLike, tensors: Iterable[tuple[str, Shape, bytes]], *, shapes: dict[str, Shape]
) -> str:
    """Write float16 tensors as a safetensors file (header first, then data, streamed)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt", "creator": "abstractvision.testing"}}
    offset = 0
    for name, shape in shapes.items():
        size = 2 * _numel(shape)
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    target = os.fspath(path)
    tmp = target + ".part"
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for _name, _shape, data in tensors:
            fh.write(data)
    os.replace(tmp, target)
    return target


def _gguf_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


_GGUF_ALIGN = 32
_GGML_TYPE_F16 = 1
_GGUF_TYPE_STRING = 8
_GGUF_TYPE_UINT32 = 4


def write_gguf(
    path: PathLike, tensors: Iterable[tuple[str, Shape, bytes]], *, shapes: dict[str, Shape]
) -> str:
    """Write float16 tensors as a GGUF (v3) file, the format llama.cpp and sd.cpp share."""
    kv = [
        (_gguf_string("general.architecture"), _GGUF_TYPE_STRING, _gguf_string("flux")),
        (_gguf_string("general.alignment"), _GGUF_TYPE_UINT32, struct.pack("<I", _GGUF_ALIGN)),
    ]
    head = b"GGUF" + struct.pack("<IQQ", 3, len(shapes), len(kv))
    head += b"".join(key + struct.pack("<I", kind) + value for key, kind, value in kv)
    offset = 0
    for name, shape in shapes.items():
        dims = tuple(reversed(shape))  # GGUF lists the fastest-varying dimension first
        head += _gguf_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        head += struct.pack("<IQ", _GGML_TYPE_F16, offset)
        size = 2 * _numel(shape)
        offset += size + (-size % _GGUF_ALIGN)
    target = os.fspath(path)
    tmp = target + ".part"
    with open(tmp, "wb") as fh:
        fh.write(head + b"\x00" * (-len(head) % _GGUF_ALIGN))
        for _name, _shape, data in tensors:
            fh.write(data + b"\x00" * (-len(data) % _GGUF_ALIGN))
    os.replace(tmp, target)
    return target


def flux_lora_shapes(
    *, hidden: int = 128, rank: int = 4, prefix: str = "diffusion_model."
) -> dict[str, Shape]:
    """A LoRA (``lora_down``/``lora_up`` pairs) for :func:`flux_shapes`' attention and single-block
    projections, with the tensor names sd.cpp maps onto its Flux model (``prefix`` + BFL name)."""
    targets = {
        "double_blocks.0.img_attn.qkv": 3 * hidden,
        "double_blocks.0.txt_attn.qkv": 3 * hidden,
        "single_blocks.0.linear1": 3 * hidden + 4 * hidden,
    }
    shapes: dict[str, Shape] = {}
    for name, out in targets.items():
        shapes[f"{prefix}{name}.lora_down.weight"] = (rank, hidden)
        shapes[f"{prefix}{name}.lora_up.weight"] = (out, rank)
    return shapes


def write_tiny_flux_lora(path: PathLike, *, seed: int = 0, foreign: bool = False) -> str:
    """Write a random LoRA for the tiny Flux (safetensors). ``foreign=True`` writes one with
    Stable Diffusion UNet names (kohya style), which match no Flux tensor: a LoRA for another
    model family."""
    shapes = flux_lora_shapes()
    if foreign:
        shapes = {
            name.replace("diffusion_model.", "lora_unet_down_blocks_0_attentions_0_").replace(
                ".", "_", 1
            ): shape
            for name, shape in shapes.items()
        }
    return write_safetensors(path, random_tensors(shapes, seed=seed), shapes=shapes)


# -- the tiny model set -------------------------------------------------------------------


@dataclass(frozen=True)
class TinyFluxFiles:
    """Paths of a tiny Flux model set for stable-diffusion.cpp."""

    diffusion_model: str
    taesd: str
    clip_l: str
    diffusion_model_gguf: str
    upscaler: str


def build_tiny_flux_sdcpp(out_dir: PathLike, *, seed: int = 0, gguf: bool = True) -> TinyFluxFiles:
    """Write (or reuse) a tiny Flux DiT, TAESD, ESRGAN x2 and a random CLIP-L into ``out_dir``.

    Files already present are kept, so a session-scoped fixture can call this cheaply.
    Sizes: DiT 3.2 MB, TAESD 4.9 MB, ESRGAN 1.8 MB, CLIP-L 246 MB; 64x64 images in 2 steps take about
    0.3 s on two CPU cores.
    """
    folder = os.fspath(out_dir)
    os.makedirs(folder, exist_ok=True)
    paths = {
        "diffusion_model": os.path.join(folder, f"flux-tiny-s{seed}.safetensors"),
        "diffusion_model_gguf": os.path.join(folder, f"flux-tiny-s{seed}-f16.gguf"),
        "taesd": os.path.join(folder, f"taef1-tiny-s{seed}.safetensors"),
        "clip_l": os.path.join(folder, f"clip_l-random-s{seed}-f16.safetensors"),
        "upscaler": os.path.join(folder, f"esrgan-x2-tiny-s{seed}.safetensors"),
    }
    jobs = [
        ("diffusion_model", flux_shapes(), write_safetensors, seed),
        ("taesd", taesd_shapes(), write_safetensors, seed + 1),
        ("clip_l", clip_l_shapes(), write_safetensors, seed + 2),
        ("upscaler", esrgan_shapes(), write_safetensors, seed + 3),
    ]
    if gguf:
        jobs.append(("diffusion_model_gguf", flux_shapes(), write_gguf, seed))
    for key, shapes, writer, tensor_seed in jobs:
        if not os.path.isfile(paths[key]):
            writer(paths[key], random_tensors(shapes, seed=tensor_seed), shapes=shapes)
    return TinyFluxFiles(
        diffusion_model=paths["diffusion_model"],
        taesd=paths["taesd"],
        clip_l=paths["clip_l"],
        diffusion_model_gguf=paths["diffusion_model_gguf"] if gguf else "",
        upscaler=paths["upscaler"],
    )


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys
    import time

    start = time.perf_counter()
    built = build_tiny_flux_sdcpp(sys.argv[1] if len(sys.argv) > 1 else "tiny-flux-sdcpp")
    print(f"built in {time.perf_counter() - start:.2f}s: {built}")
