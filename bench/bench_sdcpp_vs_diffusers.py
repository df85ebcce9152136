"""stable-diffusion.cpp against Diffusers on the same tiny Flux, through VisionManager.

Both engines run the same architecture at the same image size, step count and thread
count, built here offline with random weights:

- sd.cpp: ``abstractvision.testing.tiny_sdcpp`` (Flux DiT: hidden 128, one double and one
  single block; TAESD decoder with 16 latent channels; a full-size CLIP-L; no T5, so sd.cpp
  feeds 256 zero context tokens), through ``StableDiffusionCppVisionBackend`` in its worker
  process, also with ``vae_conv_direct`` (ggml's direct convolution for the TAESD decoder,
  which dominates at larger sizes on CPU) and, with ``--in-process``, without the worker.
- Diffusers: a ``FluxPipeline`` folder with the same DiT configuration, an
  ``AutoencoderTiny`` (16 latent channels), the same CLIP-L size, and a one-layer T5 of width
  4096 (``max_sequence_length=256`` to match sd.cpp's context), through
  ``HuggingFaceDiffusersVisionBackend`` on CPU in float32.

Per engine it prints the cold start (model load) and, per size and step count, the median
(and minimum) time of a warm ``generate_image`` call. Calls alternate between the engines so machine noise
hits both alike; the load average is printed because a busy machine skews everything
(ggml's worker threads spin and suffer most from oversubscription).

usage: python bench/bench_sdcpp_vs_diffusers.py [--sizes 64,128,256] [--steps 2,4]
       [--repeats 5] [--threads 2] [--in-process] [--skip-diffusers] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROMPT = "a watercolor painting of a lighthouse"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def build_diffusers_flux(folder: Path, *, seed: int = 0) -> str:
    """A FluxPipeline folder shaped like the sd.cpp tiny Flux (random weights)."""
    import torch
    from diffusers import (
        AutoencoderTiny,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    from abstractvision.testing.tiny_diffusers import tiny_t5_tokenizer, write_tiny_clip_tokenizer

    torch.manual_seed(seed)
    tok_dir = folder / "_clip_tokenizer"
    write_tiny_clip_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(  # OpenAI CLIP ViT-L/14 text tower, as sd.cpp requires
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            projection_dim=768,
        )
    )
    tokenizer_2 = tiny_t5_tokenizer()
    text_encoder_2 = T5EncoderModel(
        T5Config(  # type: ignore[call-arg]
            vocab_size=len(tokenizer_2),
            d_model=4096,
            d_kv=64,
            d_ff=64,
            num_layers=1,
            num_heads=1,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    transformer = FluxTransformer2DModel(  # the sd.cpp tiny DiT's configuration
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=128,
        num_attention_heads=1,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=False,
        axes_dims_rope=(16, 56, 56),
    )
    vae = AutoencoderTiny(in_channels=3, out_channels=3, latent_channels=16)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    out = folder / "flux-tiny-diffusers"
    pipe.save_pretrained(str(out))
    return str(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="64,128,256", help="square image sizes, comma-separated")
    ap.add_argument("--steps", default="2,4", help="step counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=5, help="warm calls per engine, size and step count")
    ap.add_argument("--threads", type=int, default=min(os.cpu_count() or 2, 4), help="CPU threads for both")
    ap.add_argument("--skip-diffusers", action="store_true", help="time sd.cpp only")
    ap.add_argument("--in-process", action="store_true", help="also time sd.cpp with isolate=False")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    step_counts = [int(s) for s in args.steps.split(",")]

    from abstractvision import VisionManager
    from abstractvision.backends import StableDiffusionCppBackendConfig, StableDiffusionCppVisionBackend
    from abstractvision.testing.tiny_sdcpp import build_tiny_flux_sdcpp

    results: dict[str, Any] = {"threads": args.threads, "loadavg_start": _loadavg(), "engines": {}}
    with tempfile.TemporaryDirectory(prefix="abstractvision-bench-sdcpp-") as tmp:
        files = build_tiny_flux_sdcpp(Path(tmp) / "sdcpp")
        engines: dict[str, Any] = {}
        variants = [("sdcpp (worker)", True, {}), ("sdcpp conv_direct", True, {"vae_conv_direct": True})]
        if args.in_process:
            variants.append(("sdcpp (in-process)", False, {}))
        for label, isolate, options in variants:
            cfg = StableDiffusionCppBackendConfig(
                diffusion_model=files.diffusion_model,
                taesd=files.taesd,
                clip_l=files.clip_l,
                n_threads=args.threads,
                isolate=isolate,
                engine_options=options,
            )
            engines[label] = (VisionManager(backend=StableDiffusionCppVisionBackend(cfg)), {})
        if not args.skip_diffusers:
            import torch

            from abstractvision.backends import (
                HuggingFaceDiffusersBackendConfig,
                HuggingFaceDiffusersVisionBackend,
            )

            torch.set_num_threads(args.threads)
            folder = build_diffusers_flux(Path(tmp))
            backend = HuggingFaceDiffusersVisionBackend(
                HuggingFaceDiffusersBackendConfig(model_id=folder, device="cpu", torch_dtype="float32")
            )
            engines["diffusers"] = (VisionManager(backend=backend), {"max_sequence_length": 256})

        for label, (vm, _extra) in engines.items():
            load_s, _ = timed(vm.preload)
            results["engines"][label] = {"load_s": round(load_s, 3), "warm_ms": {}, "warm_min_ms": {}}

        for size in sizes:
            for steps in step_counts:
                samples: dict[str, list[float]] = {label: [] for label in engines}
                for repeat in range(args.repeats + 1):  # the first round warms up each shape
                    order = list(engines.items())
                    if repeat % 2:
                        order.reverse()
                    for label, (vm, extra) in order:
                        started = time.perf_counter()
                        asset = vm.generate_image(
                            PROMPT,
                            width=size,
                            height=size,
                            steps=steps,
                            seed=repeat,
                            guidance_scale=1.0,
                            extra=extra,
                        )
                        seconds = time.perf_counter() - started
                        assert asset.to_pil().size == (size, size)
                        if repeat:
                            samples[label].append(seconds)
                for label, values in samples.items():
                    key = f"{size}px/{steps}steps"
                    figures = results["engines"][label]
                    figures["warm_ms"][key] = round(statistics.median(values) * 1000.0, 1)
                    figures["warm_min_ms"][key] = round(min(values) * 1000.0, 1)
        for vm, _extra in engines.values():
            vm.close()
    results["loadavg_end"] = _loadavg()
    _print(results, sizes, step_counts)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _print(results: dict[str, Any], sizes: list[int], step_counts: list[int]) -> None:
    labels = list(results["engines"])
    print(
        f"threads={results['threads']}  loadavg start={results['loadavg_start']} end={results['loadavg_end']}"
    )
    print(f"{'':>22}" + "".join(f"{label:>20}" for label in labels))
    print(f"{'cold load (s)':>22}" + "".join(f"{results['engines'][lb]['load_s']:>20.2f}" for lb in labels))
    for size in sizes:
        for steps in step_counts:
            key = f"{size}px/{steps}steps"
            row = "".join(
                f"{results['engines'][lb]['warm_ms'][key]:>12.1f} ({results['engines'][lb]['warm_min_ms'][key]:.0f})".rjust(
                    20
                )
                for lb in labels
            )
            print(f"{key + ' ms med (min)':>22}{row}")
    if "diffusers" in results["engines"] and "sdcpp (worker)" in results["engines"]:
        for size in sizes:
            for steps in step_counts:
                key = f"{size}px/{steps}steps"
                ratio = (
                    results["engines"]["diffusers"]["warm_ms"][key]
                    / results["engines"]["sdcpp (worker)"]["warm_ms"][key]
                )
                print(f"{key}: diffusers / sd.cpp(worker) = {ratio:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
