"""Cost of live previews on a tiny random-weight Stable Diffusion (Diffusers backend, CPU).

One process, one tiny SD folder and one tiny TAESD-style autoencoder built here (offline).
Interleaved calls (the order rotates) of ``generate_image`` with the same seed:

- ``off``: no ``on_preview`` (the default), twice as two series: the second is the noise
  floor, and the backend is checked to have made no preview at all;
- ``latent_rgb``: a preview at every step with the linear latent-to-RGB map (fitted once per
  model from its VAE: the one-time fit is reported apart);
- ``tiny_autoencoder``: a preview at every step through the tiny autoencoder;
- ``vae``: a preview at every step through the full VAE (what the cheap decoders avoid);
- ``partial_images=2``: two latent_rgb previews per image (OpenAI's streaming default use).

Prints the median time per call of each and its ratio to ``off``.

usage: python bench/bench_previews.py [--calls 12] [--size 64] [--steps 20] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=12, help="interleaved calls per variant")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from abstractvision import VisionManager
    from abstractvision.backends import (
        HuggingFaceDiffusersBackendConfig,
        HuggingFaceDiffusersVisionBackend,
        _diffusers_previews,
    )
    from abstractvision.testing.tiny_diffusers import build_tiny_autoencoder_tiny, build_tiny_sd

    with tempfile.TemporaryDirectory(prefix="abstractvision-bench-") as tmp:
        model = build_tiny_sd(Path(tmp) / "tiny-sd")
        tae = build_tiny_autoencoder_tiny(Path(tmp) / "tiny-tae")

        def manager(**config: Any) -> VisionManager:
            backend = HuggingFaceDiffusersVisionBackend(
                config=HuggingFaceDiffusersBackendConfig(model_id=model, device="cpu", **config)
            )
            return VisionManager(backend=backend)

        managers = {
            "off": manager(),
            "latent_rgb": manager(preview_decoder="latent_rgb"),
            "tiny_autoencoder": manager(preview_vae=tae),
            "vae": manager(preview_decoder="vae"),
        }
        previews: dict[str, list[Any]] = {name: [] for name in (*managers, "partial_images=2", "off (again)")}
        variants = {
            "off": (managers["off"], {}),
            "off (again)": (managers["off"], {}),
            "latent_rgb": (managers["latent_rgb"], {"on_preview": previews["latent_rgb"].append}),
            "tiny_autoencoder": (
                managers["tiny_autoencoder"],
                {"on_preview": previews["tiny_autoencoder"].append},
            ),
            "vae": (managers["vae"], {"on_preview": previews["vae"].append}),
            "partial_images=2": (
                managers["latent_rgb"],
                {"on_preview": previews["partial_images=2"].append, "partial_images": 2},
            ),
        }
        common = {"width": args.size, "height": args.size, "steps": args.steps, "seed": 1}
        for vm in managers.values():  # load every model once
            vm.generate_image("warm-up", **common)
        fitted = time.perf_counter()
        managers["latent_rgb"].generate_image("fit", **common, on_preview=lambda e: None)
        fit_s = time.perf_counter() - fitted  # includes the one-time latent->RGB fit
        for values in previews.values():
            values.clear()

        made: list[int] = []
        real_init = _diffusers_previews.Previewer.__init__

        def counted(self: Any, *a: Any, **kw: Any) -> None:
            made.append(1)
            real_init(self, *a, **kw)

        _diffusers_previews.Previewer.__init__ = counted  # type: ignore[method-assign]
        times: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        off_previewers = 0
        for i in range(args.calls):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                vm, extra = variants[name]
                before = len(made)
                started = time.perf_counter()
                vm.generate_image("a watercolor lighthouse", **common, **extra)
                times[name].append(time.perf_counter() - started)
                if name.startswith("off"):
                    off_previewers += len(made) - before
        _diffusers_previews.Previewer.__init__ = real_init  # type: ignore[method-assign]

        base = statistics.median(times["off"])
        results: dict[str, Any] = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "size": args.size,
            "steps": args.steps,
            "calls": args.calls,
            "previewers_made_when_off": off_previewers,
            "first_latent_rgb_call_s": round(fit_s, 4),
            "variants": {},
        }
        print(
            f"tiny SD {args.size}x{args.size}, {args.steps} steps, {args.calls} interleaved calls each, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
        )
        print(f"{'variant':<20} {'median ms':>10} {'ratio':>7} {'previews/call':>14}  decoder")
        for name in names:
            median = statistics.median(times[name])
            per_call = len(previews.get(name, [])) / args.calls
            decoders = sorted({e.decoder for e in previews.get(name, [])}) or ["-"]
            results["variants"][name] = {
                "median_ms": round(median * 1000, 3),
                "ratio": round(median / base, 4),
                "previews_per_call": per_call,
                "decoder": decoders[0] if len(decoders) == 1 else decoders,
            }
            print(
                f"{name:<20} {median * 1000:>10.1f} {median / base:>7.3f} {per_call:>14.1f}  {', '.join(decoders)}"
            )
        print(f"previewers made with previews off: {off_previewers} (no listener, nothing decoded)")
        print(f"first latent_rgb call (with the one-time fit): {fit_s * 1000:.1f} ms")
        for vm in managers.values():
            vm.close()
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
