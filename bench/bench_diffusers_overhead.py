"""Overhead of the Diffusers backend over a raw diffusers call, on a tiny random-weight pipeline.

Measures, in one process and on the same tiny Stable Diffusion folder (built here, offline):

1. ``VisionManager.generate_image`` (validation, backend, PNG bytes with provenance chunks)
   against the raw ``pipe(...)`` call plus ``Image.save(PNG)``, interleaved call by call
   (the order alternates) so machine noise hits both sides alike. Gate: median ratio <= 1.03.
2. Cold (first call: load + run) against warm calls.
3. Task switch: the ``from_pipe`` cost of deriving image-to-image from the loaded weights,
   and text-to-image / image-to-image calls alternating (no reload: one load in total).
4. A batch of 4 images in one pipeline call against 4 separate calls.

usage: python bench/bench_diffusers_overhead.py [--calls 40] [--size 64] [--steps 4] [--threads N] [--json]
Exit status 1 when the overhead ratio is above the gate.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GATE = 1.03


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=40, help="interleaved calls per side (>= 30)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers import DiffusionPipeline

    from abstractvision import VisionManager
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend
    from abstractvision.testing.tiny_diffusers import build_tiny_sd

    prompt, size, steps = "a watercolor painting of a lighthouse", args.size, args.steps
    with tempfile.TemporaryDirectory(prefix="abstractvision-bench-") as tmp:
        model = build_tiny_sd(Path(tmp) / "tiny-sd")
        results: dict[str, Any] = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "size": size,
            "steps": steps,
            "calls": args.calls,
        }

        # -- cold vs warm ---------------------------------------------------------------
        def manager() -> VisionManager:
            backend = HuggingFaceDiffusersVisionBackend(
                config=HuggingFaceDiffusersBackendConfig(model_id=model, device="cpu")
            )
            return VisionManager(backend=backend)

        vm = manager()
        cold_s, cold = timed(lambda: vm.generate_image(prompt, width=size, height=size, steps=steps, seed=0))
        results["cold_s"] = cold_s
        results["cold_load_s"] = cold.metadata["timings"]["load_s"]

        # -- overhead: manager vs raw pipeline + PNG encode ----------------------------------
        raw = DiffusionPipeline.from_pretrained(model, local_files_only=True)
        raw.set_progress_bar_config(disable=True)

        def ours(seed: int) -> bytes:
            return vm.generate_image(prompt, width=size, height=size, steps=steps, seed=seed).data  # type: ignore[union-attr]

        def baseline(seed: int) -> bytes:
            image = raw(
                prompt,
                width=size,
                height=size,
                num_inference_steps=steps,
                generator=[torch.Generator("cpu").manual_seed(seed)],
            ).images[0]
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            return buf.getvalue()

        for seed in range(3):  # warm both paths
            ours(seed)
            baseline(seed)
        mine: list[float] = []
        base: list[float] = []
        for i in range(args.calls):
            pair = [(mine, ours), (base, baseline)]
            for bucket, fn in pair if i % 2 == 0 else reversed(pair):
                bucket.append(timed(lambda fn=fn, seed=i: fn(seed))[0])
        results["manager_ms"] = median_ms(mine)
        results["raw_ms"] = median_ms(base)
        results["overhead_ratio"] = statistics.median(mine) / statistics.median(base)
        results["overhead_ms"] = results["manager_ms"] - results["raw_ms"]
        results["warm_ms"] = results["manager_ms"]

        # -- task switch: t2i -> i2i on the same weights (from_pipe, no reload) ----------------
        from abstractvision.backends._diffusers.models import derive_pipeline

        source = cold.data  # type: ignore[union-attr]
        first_s, _ = timed(lambda: vm.edit_image(prompt, source, strength=0.5, steps=steps, seed=0))
        entry = next(iter(vm.backend._cache))  # type: ignore[union-attr]
        switches = []
        for _ in range(20):
            entry.derived.pop("img2img", None)
            switches.append(timed(lambda: derive_pipeline(entry, "img2img"))[0])
        t2i, i2i = [], []
        for k in range(10):  # alternate tasks every call: each call is a task switch
            t2i.append(
                timed(lambda k=k: vm.generate_image(prompt, width=size, height=size, steps=steps, seed=k))[0]
            )
            i2i.append(timed(lambda k=k: vm.edit_image(prompt, source, strength=1.0, steps=steps, seed=k))[0])
        results["first_img2img_ms"] = first_s * 1000.0
        results["from_pipe_ms"] = median_ms(switches)
        results["alternating_t2i_ms"] = median_ms(t2i)
        results["alternating_i2i_ms"] = median_ms(i2i)
        results["loads_after_switches"] = vm.backend.load_count  # type: ignore[union-attr]

        # -- batch of 4 in one call vs 4 calls -------------------------------------------------
        batch, singles = [], []
        for _ in range(5):
            batch.append(
                timed(
                    lambda: vm.generate_image_batch(
                        prompt, count=4, seed=10, width=size, height=size, steps=steps
                    )
                )[0]
            )
            singles.append(
                timed(
                    lambda: [
                        vm.generate_image(prompt, width=size, height=size, steps=steps, seed=10 + k)
                        for k in range(4)
                    ]
                )[0]
            )
        results["batch4_one_call_ms"] = median_ms(batch)
        results["batch4_four_calls_ms"] = median_ms(singles)
        results["batch_speedup"] = statistics.median(singles) / statistics.median(batch)
        vm.close()

    r = results
    print(
        f"tiny SD {size}x{size}, {steps} steps, torch {r['torch']} ({r['threads']} threads), {r['calls']} calls/side"
    )
    print(f"  overhead  VisionManager.generate_image {r['manager_ms']:8.2f} ms  (median)")
    print(f"            raw pipe() + PNG encode      {r['raw_ms']:8.2f} ms  (median)")
    print(
        f"            ratio {r['overhead_ratio']:.4f} (gate <= {GATE}), {r['overhead_ms']:+.2f} ms per call"
    )
    print(
        f"  cold vs warm  first call {r['cold_s'] * 1000:8.1f} ms (load {r['cold_load_s'] * 1000:.1f} ms), warm {r['warm_ms']:.2f} ms"
    )
    print(
        f"  task switch   from_pipe {r['from_pipe_ms']:.3f} ms (median of 20), first img2img call "
        f"{r['first_img2img_ms']:.1f} ms; alternating t2i/i2i every call: {r['alternating_t2i_ms']:.1f} / "
        f"{r['alternating_i2i_ms']:.1f} ms (strength 1.0, same steps); loads {r['loads_after_switches']}"
    )
    print(
        f"  batch n=4     one call {r['batch4_one_call_ms']:.1f} ms vs 4 calls {r['batch4_four_calls_ms']:.1f} ms "
        f"-> x{r['batch_speedup']:.2f}"
    )
    if args.json:
        print(json.dumps(r, indent=2, sort_keys=True))
    return 0 if r["overhead_ratio"] <= GATE else 1


if __name__ == "__main__":
    sys.exit(main())
