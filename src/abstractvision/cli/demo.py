"""``demo`` and ``serve --demo``: prove the installation works without downloading anything.

``demo`` builds a tiny Stable Diffusion pipeline with random weights in a temporary folder
(:func:`abstractvision.testing.tiny_diffusers.build_tiny_sd`), loads it back through the
normal :class:`~abstractvision.backends.HuggingFaceDiffusersVisionBackend` path
(``local_files_only``), generates one image through :class:`~abstractvision.VisionManager`
and saves it. The picture is noise: the weights are random.

``serve --demo`` serves two such models (:func:`build_demo_models`): a tiny Stable Diffusion
(text to image, image to image) and a tiny Wan 2.1 (text to video), labelled as noise
generators in their names, in ``/v1/models`` and in the playground.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

from ..config import BackendSettings
from ..errors import OptionalDependencyMissingError
from ..served_models import ServedModel
from ..types import ProgressEvent
from .common import quiet_libraries, wants_tty
from .output import check_output
from .progress import ProgressRenderer
from .tasks import OutputItem, execute, report, save

NOTICE = (
    "note: this image is random noise from a smoke-test model with random weights (nothing was "
    "downloaded); it shows that generation works end to end on this machine, not image quality."
)
MODEL_NOTE = (
    "a random-weight model built in a temporary folder that is deleted when the demo exits "
    "(abstractvision serve --demo serves it and a tiny video model over HTTP)"
)
NEXT_STEP = (
    'next: abstractvision generate "a watercolor lighthouse at dusk" --backend diffusers '
    "--model runwayml/stable-diffusion-v1-5 --allow-download -o lighthouse.png"
)


#: the served names of ``serve --demo``'s models (the names say what they make)
DEMO_IMAGE_MODEL = "tiny-sd-noise"
DEMO_VIDEO_MODEL = "tiny-wan-noise"
DEMO_DESCRIPTION = (
    "random-weight demo model: its {what} are noise (a smoke test of the server, nothing was downloaded)"
)


def _require_diffusers(purpose: str = "the demo") -> None:
    for module, dist in (("torch", "torch"), ("diffusers", "diffusers"), ("transformers", "transformers")):
        if importlib.util.find_spec(module) is None:
            raise OptionalDependencyMissingError(dist, "diffusers", purpose=purpose)


def build_demo_models(folder: Path, *, device: str = "cpu", seed: int = 0) -> list[ServedModel]:
    """Build ``serve --demo``'s two tiny random-weight models under ``folder`` and describe them.

    Their request defaults keep a request that names no size cheap and valid (64x64 images;
    9 frames of 32x32 for the video model, which cannot make large frames).
    """
    _require_diffusers("serve --demo")
    from ..testing.tiny_diffusers import build_tiny_sd, build_tiny_wan

    image = build_tiny_sd(folder / DEMO_IMAGE_MODEL, seed=seed)
    video = build_tiny_wan(folder / DEMO_VIDEO_MODEL, seed=seed)

    def settings(path: str) -> BackendSettings:
        return BackendSettings(backend="diffusers", model=path, device=device, allow_download=False)

    return [
        ServedModel(
            DEMO_IMAGE_MODEL,
            settings(image),
            description=DEMO_DESCRIPTION.format(what="images"),
            request_defaults={"width": 64, "height": 64, "steps": 4},
        ),
        ServedModel(
            DEMO_VIDEO_MODEL,
            settings(video),
            description=DEMO_DESCRIPTION.format(what="videos"),
            request_defaults={"width": 32, "height": 32, "num_frames": 9, "fps": 8, "steps": 4},
        ),
    ]


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
        # the folder is deleted at exit: results name the model, never the temporary path
        manager = VisionManager(backend=backend, model_label=DEMO_IMAGE_MODEL)
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
    report(
        args, items, elapsed, smoke_test=True, notice=NOTICE, model_note=MODEL_NOTE, build_s=round(build_s, 4)
    )
    if not args.quiet:
        sys.stderr.write(f"{NOTICE}\n{NEXT_STEP}\n")
    return 0
