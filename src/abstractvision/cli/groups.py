"""The flag groups several commands share: general, backend, output, image file, served models.

Each is a parent parser (``add_help=False``) that :mod:`abstractvision.cli.parser` passes to
the commands that take those flags (standard library only).
"""

from __future__ import annotations

import argparse

from .. import _params
from .flags import add_param, key_value, number, positive_int

TYPE_CHECKING = False  # not `from typing import ...`: keeps `--help` free of the typing import
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = [
    "add_distributed",
    "add_served_models",
    "backend_parent",
    "common_parent",
    "image_file_parent",
    "json_parent",
    "output_parent",
]


def common_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("general")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary on stderr")
    group.add_argument(
        "--debug", action="store_true", help="print the full traceback on errors (or ABSTRACTVISION_DEBUG=1)"
    )
    return parent


def json_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print a machine-readable JSON result on stdout")
    return parent


def backend_parent(api_key_flag: str = "--api-key", *, serving: bool = False) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("backend (flags > ABSTRACTVISION_* environment > config file)")
    group.add_argument(
        "--backend",
        metavar="NAME",
        help="openai | diffusers | sdcpp (ABSTRACTVISION_BACKEND); implied 'openai' by --base-url",
    )
    if serving:
        group.add_argument(
            "--model",
            "-m",
            action="append",
            default=[],
            metavar="[NAME=]SPEC",
            help="a model to serve (hub id, local folder or checkpoint file), repeatable; served as NAME, "
            "else as its folder/file basename (a hub id as given); the backend flags are shared",
        )
    else:
        group.add_argument("--model", "-m", metavar="ID", help="model id, local folder or checkpoint file")
    group.add_argument(
        "--base-url", metavar="URL", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"
    )
    group.add_argument(
        "--profile",
        metavar="NAME",
        help="dialect of the --base-url server: generic | openai | sdcpp (sd-server) | a1111 "
        "(/sdapi/v1; base URL without /v1) | auto (probe once); ABSTRACTVISION_OPT_PROFILE",
    )
    group.add_argument(
        api_key_flag,
        dest="api_key",
        metavar="KEY",
        help="API key for --base-url (prefer ABSTRACTVISION_API_KEY: flags show up in process lists)",
    )
    group.add_argument("--device", metavar="DEV", help="auto | cpu | cuda | cuda:N | mps (local backends)")
    group.add_argument(
        "--dtype", metavar="DTYPE", help="float32 | float16 | bfloat16 | auto (local backends)"
    )
    group.add_argument(
        "--allow-download",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let local backends download missing weights (off by default)",
    )
    group.add_argument("--timeout", type=number, metavar="SECONDS", help="request/job deadline in seconds")
    group.add_argument("--config", metavar="FILE", help="config file (TOML or JSON; ABSTRACTVISION_CONFIG)")
    group.add_argument(
        "-O",
        "--option",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="backend config option, repeatable (e.g. -O offload=model; ABSTRACTVISION_OPT_<KEY>)",
    )
    sdcpp = parent.add_argument_group("stable-diffusion.cpp components (--backend sdcpp)")
    for flag, what in (
        ("--diffusion-model", "diffusion model (GGUF/safetensors) of a component model"),
        ("--vae", "VAE file"),
        ("--taesd", "TAESD (tiny autoencoder) file"),
        ("--clip-l", "CLIP-L text encoder file"),
        ("--clip-g", "CLIP-G text encoder file"),
        ("--t5xxl", "T5-XXL text encoder file"),
        ("--llm", "LLM text encoder file (Qwen-Image and similar)"),
    ):
        sdcpp.add_argument(flag, metavar="FILE", help=what)
    return parent


def output_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("output")
    group.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="file (several outputs get -1, -2 ... suffixes) or directory (existing, ending in /, "
        "or without an extension); default: the current directory",
    )
    group.add_argument(
        "--store",
        nargs="?",
        const=True,
        default=False,
        metavar="URL",
        help="also keep the outputs in the artifact store: the default one (--store-dir), or the one at "
        "URL (a folder, file:///dir, s3://bucket/prefix)",
    )
    group.add_argument(
        "--store-dir",
        metavar="DIR",
        help="artifact store directory or URL (ABSTRACTVISION_STORE_DIR; s3://... needs the distributed extra)",
    )
    group.add_argument(
        "--json", action="store_true", help="print a JSON result (paths, refs, seeds, timings) on stdout"
    )
    group.add_argument(
        "--embed-metadata",
        choices=_params.PARAMS["embed_metadata"]["choices"],
        default=None,
        help="what the files carry: none (default: no text), parameters (the A1111-style "
        "'parameters' text: prompt, steps, sampler, CFG scale, seed, size, model) or full "
        "(that plus the JSON provenance)",
    )
    group.add_argument(
        "--previews",
        metavar="DIR",
        help="write live previews to DIR while the engine works (STEP-NNNN.jpg per output, and "
        "latest.jpg, replaced in place); see docs/previews.md",
    )
    add_param(group, "preview_every", "with --previews: a preview every N steps (default 1)")
    checks = parent.add_argument_group("checks")
    checks.add_argument(
        "--skip-registry-check",
        action="store_true",
        help="do not check --model's tasks and parameter limits against the capability registry",
    )
    return parent


def image_file_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("image file")
    group.add_argument(
        "--format",
        dest="output_format",
        choices=(*_params.PARAMS["output_format"]["choices"], "jpg"),
        default=None,
        help="encode the images as png, jpeg or webp (default: from -o's extension, else what "
        "the backend returned)",
    )
    add_param(
        group,
        "output_compression",
        "JPEG/WebP quality, 100 = best (OpenAI's output_compression; default 100)",
        dest="output_compression",
    )
    return parent


def add_served_models(p: Any, *, load_flag: bool) -> None:
    """The flags that name the served models (``serve`` and ``worker``)."""
    g = p.add_argument_group("models")
    g.add_argument(
        "--served-model-name",
        metavar="NAME",
        help="public name of the single --model (default: its folder/file basename, or the hub id)",
    )
    g.add_argument(
        "--models-file",
        metavar="FILE",
        help="TOML (or JSON) file of [models.NAME] tables, each with its own backend and options",
    )
    g.add_argument(
        "--discover",
        action="store_true",
        help="also serve every model found on this machine (HF cache, --models-dir; see 'models --local')",
    )
    g.add_argument(
        "--models-dir",
        metavar="DIR",
        help="folder of local models for --discover (ABSTRACTVISION_MODELS_DIR)",
    )
    g.add_argument(
        "--max-loaded",
        type=positive_int,
        metavar="N",
        help="most models holding weights at once; the least recently used idle one is unloaded "
        "to load another (default: no limit)",
    )
    if load_flag:
        g.add_argument(
            "--preload",
            action="store_true",
            help="load the models before accepting requests (up to --max-loaded)",
        )


def add_distributed(g: Any) -> None:
    """Settings an API node and its workers share (``serve --broker`` and ``worker``)."""
    g.add_argument(
        "--store",
        dest="store_url",
        metavar="URL",
        help="the artifact store every node and worker shares: s3://BUCKET/PREFIX, file:///DIR or a "
        "folder (ABSTRACTVISION_STORE_DIR); S3 credentials and endpoint from the AWS_* environment",
    )
    g.add_argument(
        "--prefix",
        default=None,
        metavar="NAME",
        help="Redis key and queue prefix of this deployment (default av; ABSTRACTVISION_PREFIX)",
    )
