"""``demo``: prove the installation works without downloading anything.

It builds a tiny Stable Diffusion pipeline with random weights in a temporary folder
(:func:`abstractvision.testing.tiny_diffusers.build_tiny_sd`), loads it back through the
normal :class:`~abstractvision.backends.HuggingFaceDiffusersVisionBackend` path
(``local_files_only``), generates one image through :class:`~abstractvision.VisionManager`
and saves it. The picture is noise: the weights are random.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

from ..errors import OptionalDependencyMissingError
from ..types import ProgressEvent
from .common import quiet_libraries, wants_tty
from .output import check_output
from .progress import ProgressRenderer
from .tasks import OutputItem, execute, report, save

NOTICE = (
    "note: this image is random noise from a smoke-test model with random weights (nothing was "
    "downloaded); it shows that generation works end to end on this machine, not image quality."
)
NEXT_STEP = (
    'next: abstractvision generate "a watercolor lighthouse at dusk" --backend diffusers '
    "--model runwayml/stable-diffusion-v1-5 --allow-download -o lighthouse.png"
)


def _require_diffusers() -> None:
    for module, dist in (("torch", "torch"), ("diffusers", "diffusers"), ("transformers", "transformers")):
        if importlib.util.find_spec(module) is None:
            raise OptionalDependencyMissingError(dist, "diffusers", purpose="the demo")


def demo(args: argparse.Namespace) -> int:
    _require_diffusers()
    check_output(args.output)
    started = time.perf_counter()
    task = "text_to_image"
    with (
        ProgressRenderer(
            sys.stderr, label="demo", enabled=not args.quiet and wants_tty(sys.stderr)
        ) as progress,
        tempfile.TemporaryDirectory(prefix="abstractvision-demo-") as tmp,
        quiet_libraries(enabled=not args.debug),
    ):
        progress(ProgressEvent(task=task, phase="loading", message="importing torch and diffusers"))
        # the slow part of a cold start (seconds), shown as its own phase
        import torch  # noqa: F401
        from diffusers import StableDiffusionPipeline  # noqa: F401

        from ..backends.huggingface_diffusers import (
            HuggingFaceDiffusersBackendConfig,
            HuggingFaceDiffusersVisionBackend,
        )
        from ..testing.tiny_diffusers import build_tiny_sd
        from ..vision_manager import VisionManager

        progress(ProgressEvent(task=task, phase="loading", message="building a tiny random-weight model"))
        t0 = time.perf_counter()
        model_dir = build_tiny_sd(Path(tmp) / "tiny-sd", seed=args.seed)
        build_s = time.perf_counter() - t0
        backend = HuggingFaceDiffusersVisionBackend(
            config=HuggingFaceDiffusersBackendConfig(
                model_id=model_dir, device=args.device, allow_download=False
            )
        )
        manager = VisionManager(backend=backend)
        results = execute(
            manager,
            "generate_image",
            (args.prompt,),
            {"width": args.size, "height": args.size, "steps": args.steps, "seed": args.seed},
            count=None,
            progress=progress,
            label="demo",
        )
    elapsed = time.perf_counter() - started
    items = [
        OutputItem(data=bytes(r.data), mime_type=r.mime_type, metadata=dict(r.metadata)) for r in results
    ]
    save(args.output, items, "demo", None)
    report(args, items, elapsed, smoke_test=True, notice=NOTICE, build_s=round(build_s, 4))
    if not args.quiet:
        sys.stderr.write(f"{NOTICE}\n{NEXT_STEP}\n")
    return 0
