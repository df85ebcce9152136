"""The argument parser: every command, its flags and its help text (standard library only).

Each command records the function that runs it as ``"module:function"`` (relative to this
package); :func:`abstractvision.cli.app.main` imports that module only when the command
runs, so ``abstractvision --help`` never loads torch, diffusers, Pillow or httpx.
"""

from __future__ import annotations

import argparse
import re

from .. import _params
from .._version import __version__
from .flags import Bounded, add_task_flags, number, port_number, positive_int, task_name
from .groups import (
    add_distributed,
    add_served_models,
    backend_parent,
    common_parent,
    image_file_parent,
    json_parent,
    output_parent,
)

TYPE_CHECKING = False  # not `from typing import ...`: keeps `--help` free of the typing import
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence
    from typing import Any, NoReturn

EPILOG = """\
backends (--backend):
  openai     any OpenAI-compatible HTTP server (--base-url, --api-key, --profile)
  diffusers  local Hugging Face Diffusers (--model, --device, --dtype, --allow-download)
  sdcpp      local stable-diffusion.cpp (--model FILE or --diffusion-model/--vae/--clip-l ...)
  Defaults come from ABSTRACTVISION_* environment variables (ABSTRACTVISION_BACKEND,
  _MODEL, _BASE_URL, _API_KEY, _DEVICE, _DTYPE, _ALLOW_DOWNLOAD, _TIMEOUT_S, _STORE_DIR,
  _OPT_<NAME>) and an optional config file (--config, ABSTRACTVISION_CONFIG or
  ~/.config/abstractvision/config.toml); flags win over both.

exit codes:
  0    success
  1    generation or backend error (engine failure, provider error, model load failure)
  2    usage error or invalid input (bad flag, bad value, unknown model, unsupported task)
  3    a missing optional dependency (the message names the pip install command)
  130  cancelled (Ctrl-C)
  141  output pipe closed early (for example `| head`)

Try `abstractvision demo` (no download) and `abstractvision COMMAND --help`.
Docs: docs/cli.md
"""

_QUOTED = re.compile(r"'([^']*)'")


class CliParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line plus a hint (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        hint = self._hint(message)
        self.exit(2, f"{self.prog}: error: {message}\nhint: {hint}\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._argv = list(args) if args is not None else None
        return super().parse_known_args(args, namespace)

    def _command_parser(self) -> argparse.ArgumentParser:
        """The subcommand parser named in the arguments being parsed (for hints)."""
        import sys

        argv = getattr(self, "_argv", None)
        argv = sys.argv[1:] if argv is None else argv
        parser: argparse.ArgumentParser = self
        for word in argv:
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if not subs or word not in subs[0].choices:
                if word.startswith("-") or not subs:
                    continue
                break
            parser = subs[0].choices[word]
        return parser

    def _hint(self, message: str) -> str:
        """Close spellings only; for a flag that belongs to other commands, name those commands."""
        target = self._command_parser() if message.startswith("unrecognized arguments:") else self
        help_hint = f"see '{target.prog} --help'."
        import difflib

        if message.startswith("unrecognized arguments:"):
            hints = []
            for word in message.split(":", 1)[1].split():
                flag = word.split("=", 1)[0]
                if not flag.startswith("--"):
                    continue
                owners = [
                    prog for prog, sub in _commands(self) if sub is not target and flag in _options(sub)
                ]
                if owners:
                    hints.append(f"{flag} is an option of {_joined(owners)}, not of '{target.prog}'.")
                    continue
                # compared without the dashes, which every flag shares: '--frames' is not '--taesd'
                close = _close_flag(flag, _options(target))
                if close:
                    hints.append(f"Did you mean '{close}'?")
                    continue
                elsewhere = _close_flag(flag, set().union(*(_options(sub) for _, sub in _commands(self))))
                if elsewhere:
                    owners = [prog for prog, sub in _commands(self) if elsewhere in _options(sub)]
                    hints.append(f"Did you mean '{elsewhere}'? It is an option of {_joined(owners)}.")
            if hints:
                return " ".join(hints) + f" Or {help_hint}"
        elif "invalid choice:" in message:
            head, _, choices = message.partition("(choose from")
            words = _QUOTED.findall(head)[:1]
            known_choices = [c.strip(" '\")") for c in choices.split(",")]
            for word in words:
                spelled = difflib.get_close_matches(word, known_choices, n=1, cutoff=0.6)
                if spelled:
                    return f"did you mean '{spelled[0]}'? Or {help_hint}"
        return help_hint[0].upper() + help_hint[1:]


def _close_flag(flag: str, options: set[str]) -> str | None:
    """The one flag of ``options`` spelled close to ``flag`` (compared without the leading dashes)."""
    import difflib

    known = {o[2:]: o for o in options}
    close = difflib.get_close_matches(flag[2:], sorted(known), n=1, cutoff=0.75)
    return known[close[0]] if close else None


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """The long flags of ``parser`` itself (not of its subcommands)."""
    return {s for action in parser._actions for s in action.option_strings if s.startswith("--")}


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """``(prog, parser)`` of every (sub)command under ``parser``, aliases folded, in order."""
    out: list[tuple[str, argparse.ArgumentParser]] = []
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    out += [(f"'{sub.prog}'", sub), *_commands(sub)]
    return out


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_FORMATTER = argparse.RawDescriptionHelpFormatter


class _Commands:
    """Adds subcommands: each records its handler (``"module:function"``) and its parents."""

    def __init__(self, parser: CliParser) -> None:
        self.subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
        self.common, self.backend, self.output = common_parent(), backend_parent(), output_parent()
        self.as_json = json_parent()
        self.gen = (self.common, self.backend, self.output)
        self.image_gen = (*self.gen, image_file_parent())

    def __call__(self, name: str, handler: str, summary: str, parents: Sequence[Any], **kw: Any) -> CliParser:
        sub: CliParser = self.subparsers.add_parser(
            name,
            help=summary,
            description=kw.pop("description", summary),
            parents=list(parents),
            formatter_class=_FORMATTER,
            epilog=kw.pop("epilog", "Exit codes and environment: see 'abstractvision --help'."),
            **kw,
        )
        sub.set_defaults(handler=handler, command=name)
        return sub


def _add_task_commands(command: _Commands) -> None:
    """One command per task; its generation flags come from the parameter table."""
    gen, image_gen = command.gen, command.image_gen
    p = command("generate", "tasks:generate", "text to image", image_gen)
    p.add_argument("prompt", help="what to draw")
    add_task_flags(p.add_argument_group("generation"), "text_to_image")

    p = command(
        "edit",
        "tasks:edit",
        "edit an image (image to image; inpainting with --mask)",
        image_gen,
        aliases=["i2i"],
    )
    p.add_argument("prompt", help="the edit to make")
    g = p.add_argument_group("generation")
    g.add_argument(
        "-i", "--image", required=True, metavar="FILE", help="input image (path, '-' for stdin, artifact:ID)"
    )
    g.add_argument("--mask", metavar="FILE", help="inpainting mask, same size as the image (white = repaint)")
    add_task_flags(g, "image_to_image")

    p = command("upscale", "tasks:upscale", "upscale an image", image_gen)
    p.add_argument("image", metavar="IMAGE", help="input image (path, '-' for stdin, artifact:ID)")
    g = p.add_argument_group("generation")
    g.add_argument("-p", "--prompt", metavar="TEXT", help="optional text guidance (diffusion upscalers)")
    add_task_flags(g, "image_upscale", {"scale": "upscale factor (for example 2 or 4)"})

    p = command("video", "tasks:video", "text to video", gen, aliases=["t2v"])
    p.add_argument("prompt", help="what to film")
    add_task_flags(p.add_argument_group("generation"), "text_to_video")

    p = command("i2v", "tasks:i2v", "image to video (animate an image)", gen)
    p.add_argument("prompt", nargs="?", help="optional motion guidance")
    g = p.add_argument_group("generation")
    g.add_argument(
        "-i", "--image", required=True, metavar="FILE", help="image to animate (path, '-', artifact:ID)"
    )
    add_task_flags(g, "image_to_video")

    p = command("angles", "tasks:angles", "multi-view images of one subject", image_gen)
    p.add_argument("prompt", help="the subject")
    g = p.add_argument_group("generation")
    g.add_argument(
        "-i", "--image", "--reference-image", dest="image", metavar="FILE", help="optional reference image"
    )
    g.add_argument(
        "--angles",
        metavar="LIST",
        help="comma-separated angle names or degrees (default: "
        + ",".join(_params.PARAMS["angles"]["default"])
        + ")",
    )
    add_task_flags(g, "multi_view_image", {"strength": "how far views may depart from the reference"})


def _add_catalog_commands(command: _Commands) -> None:
    """``models`` (the registry, or what is on this machine) and ``provider-models``."""
    common, backend, as_json = command.common, command.backend, command.as_json
    p = command(
        "models",
        "catalog:models",
        "the capability registry: models, their tasks and parameter limits",
        (common, as_json),
        description="List the models of the capability registry, filter them, or show one model's "
        "tasks and parameter constraints; with --local, the models found on this machine.\n\n"
        "  abstractvision models\n"
        "  abstractvision models --task text_to_video\n"
        "  abstractvision models black-forest-labs/FLUX.1-schnell\n"
        "  abstractvision models --local --models-dir ~/models",
    )
    p.add_argument("model_id", nargs="?", metavar="MODEL", help="show this model (id or alias)")
    p.add_argument(
        "-t",
        "--task",
        type=task_name,
        metavar="TASK",
        help="only models supporting TASK (text_to_image or t2i ...)",
    )
    p.add_argument("--backend", metavar="NAME", help="only models that run on this backend")
    p.add_argument("--tasks", dest="list_tasks", action="store_true", help="list the task names instead")
    p.add_argument(
        "--local",
        action="store_true",
        help="models found on this machine instead (Hugging Face cache and --models-dir; headers only)",
    )
    p.add_argument(
        "--models-dir", metavar="DIR", help="folder of local models for --local (ABSTRACTVISION_MODELS_DIR)"
    )

    p = command(
        "provider-models",
        "catalog:provider_models",
        "the configured backend's model catalog",
        (common, backend, as_json),
    )
    p.add_argument(
        "-t",
        "--task",
        type=task_name,
        metavar="TASK",
        help="only models advertising TASK (or its short name)",
    )


def _add_store_command(command: _Commands) -> None:
    common, as_json = command.common, command.as_json
    p = command(
        "store",
        "store:dispatch",
        "the local artifact store: list, show, export, delete",
        (),
        description="Manage the artifacts kept by --store (ABSTRACTVISION_STORE_DIR or "
        "~/.abstractvision/assets). IDs may be abbreviated to a unique prefix.",
    )
    store_cmds = p.add_subparsers(title="store commands", metavar="ACTION", dest="store_action")
    store_cmds.required = True
    store_parent = CliParser(add_help=False)
    store_parent.add_argument("--store-dir", metavar="DIR", help="store directory (ABSTRACTVISION_STORE_DIR)")
    parents: list[Any] = [common, as_json, store_parent]
    sp = store_cmds.add_parser("list", help="list artifacts, newest first", parents=parents, aliases=["ls"])
    sp.add_argument(
        "-t", "--task", type=task_name, metavar="TASK", help="only artifacts of this task (or its short name)"
    )
    sp.add_argument(
        "--type", dest="content_type", metavar="MIME", help="MIME prefix, e.g. image/ or video/mp4"
    )
    sp.add_argument("-l", "--limit", type=positive_int, metavar="N", help="at most N artifacts")
    sp = store_cmds.add_parser("show", help="an artifact's metadata", parents=parents)
    sp.add_argument("artifact_id", metavar="ID")
    sp = store_cmds.add_parser("export", help="copy an artifact to a file", parents=parents)
    sp.add_argument("artifact_id", metavar="ID")
    sp.add_argument("-o", "--output", metavar="PATH", help="file or directory (default: current directory)")
    sp = store_cmds.add_parser("delete", help="delete artifacts", parents=parents, aliases=["rm"])
    sp.add_argument("artifact_ids", nargs="+", metavar="ID")


def _add_serve_command(command: _Commands) -> None:
    common = command.common
    p = command(
        "serve",
        "serve:serve",
        "run the HTTP server (OpenAI-compatible API, jobs, playground)",
        (common, backend_parent(api_key_flag="--backend-api-key", serving=True)),
        description="Serve one or several models over HTTP: OpenAI-compatible /v1/images/* and "
        "/v1/videos*, /v1/models, a job API with live progress, and a browser playground at /.\n\n"
        "  abstractvision serve --demo                        (two tiny noise models, no download)\n"
        "  abstractvision serve --backend diffusers --model runwayml/stable-diffusion-v1-5\n"
        "  abstractvision serve --backend diffusers -m sd=/models/sd-turbo -m wan=/models/wan --max-loaded 1\n"
        "  abstractvision serve --models-file serve.toml      (mixed backends, see docs/server.md)\n"
        "  abstractvision serve --discover                    (every local model: models --local)\n"
        '  abstractvision serve --host 0.0.0.0 --api-key "$KEY" ...   (non-local binds need a key)',
    )
    add_served_models(p, load_flag=True)
    p.add_argument(
        "--demo",
        action="store_true",
        help="try the server with no download: serve two tiny random-weight models built now in a "
        "temporary folder (deleted at exit), tiny-sd-noise (text/image to image) and tiny-wan-noise "
        "(text to video); their outputs are NOISE",
    )
    g = p.add_argument_group("distributed mode (docs/scale-out.md)")
    g.add_argument(
        "--broker",
        metavar="URL",
        help="run as an API node: jobs go to workers through this Redis (redis://HOST:6379/0); "
        "no engine is loaded here (ABSTRACTVISION_BROKER)",
    )
    add_distributed(g)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    g.add_argument("--port", type=port_number, default=8000, help="port (default 8000)")
    g.add_argument(
        "--api-key",
        dest="server_api_key",
        metavar="KEY",
        help="clients must send 'Authorization: Bearer KEY' (or ABSTRACTVISION_SERVER_API_KEY); "
        "the upstream key of --backend openai is --backend-api-key",
    )
    g.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow this CORS origin, repeatable",
    )
    g.add_argument("--workers", type=positive_int, metavar="N", help="concurrent generations (default 1)")
    g.add_argument(
        "--queue-size", type=positive_int, metavar="N", help="waiting jobs before 429 (default 16)"
    )
    g.add_argument("--store-dir", metavar="DIR", help="where job outputs are kept")
    g.add_argument("--job-ttl", type=number, metavar="SECONDS", help="how long finished jobs are kept")
    g.add_argument("--max-body-bytes", type=positive_int, metavar="N", help="largest accepted request body")
    g.add_argument("--public-url", metavar="URL", help="base URL used in 'url' responses (behind a proxy)")
    g.add_argument(
        "--allow-extra-key",
        action="append",
        default=[],
        metavar="KEY",
        help="backend 'extra' key clients may set, repeatable (none by default)",
    )
    g.add_argument(
        "--embed-metadata",
        choices=_params.PARAMS["embed_metadata"]["choices"],
        default=None,
        help="what result files carry: none (default), parameters (A1111-style text) or full "
        "(plus the JSON provenance)",
    )
    g.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default=None,
        help="server log level (default info)",
    )


def _add_worker_command(command: _Commands) -> None:
    common = command.common
    p = command(
        "worker",
        "worker:worker",
        "a worker of the distributed mode: runs the jobs of its models from their Redis queues",
        (common, backend_parent(api_key_flag="--backend-api-key", serving=True)),
        description="Load the models (same flags and names as serve) and run their jobs, taken from "
        "Celery queues on the broker; results go to the shared store. One process per GPU.\n\n"
        "  abstractvision worker --broker redis://10.0.0.5:6379/0 --store s3://media/av \\\n"
        "      --backend diffusers --model sdxl=/models/sdxl-turbo\n"
        "See docs/scale-out.md.",
    )
    add_served_models(p, load_flag=False)
    g = p.add_argument_group("distributed mode (docs/scale-out.md)")
    g.add_argument(
        "--broker",
        metavar="URL",
        help="the Redis of the deployment: redis://HOST:6379/0 (ABSTRACTVISION_BROKER)",
    )
    add_distributed(g)
    g.add_argument(
        "--heartbeat",
        type=number,
        default=2.0,
        metavar="SECONDS",
        help="seconds between announcements (default 2)",
    )
    g.add_argument(
        "--lease",
        type=number,
        default=10.0,
        metavar="SECONDS",
        help="a running job goes back to the queue this long after this worker stops renewing it (default 10)",
    )
    g.add_argument(
        "--job-ttl", type=number, metavar="SECONDS", help="how long finished jobs are kept (default 3600)"
    )
    g.add_argument(
        "--visibility-timeout",
        type=number,
        metavar="SECONDS",
        help="Celery redelivers an unacknowledged message after this long; above the longest job (default 21600)",
    )
    g.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default=None,
        help="worker log level (default warning)",
    )


def _add_doctor_and_demo(command: _Commands) -> None:
    common, backend, as_json = command.common, command.backend, command.as_json
    p = command(
        "doctor",
        "doctor:doctor",
        "what is installed: extras, device, torch/CUDA, store and cache directories, settings",
        (common, backend, as_json),
    )
    p.add_argument("--store-dir", metavar="DIR", help="artifact store directory to report")

    p = command(
        "demo",
        "demo:demo",
        "smoke test with no download: a tiny random-weight model makes a (noise) image",
        (common, as_json),
        description="Build a tiny random-weight Stable Diffusion pipeline locally (nothing is "
        "downloaded), generate one image through the normal Diffusers backend path and save it. "
        "The image is noise: this checks the installation, not image quality.",
    )
    p.add_argument(
        "-o",
        "--output",
        default="abstractvision-demo.png",
        metavar="PATH",
        help="default ./abstractvision-demo.png",
    )
    p.add_argument("--prompt", default="a lighthouse at dusk", help="prompt (it has no visible effect)")
    p.add_argument(
        "-s", "--steps", type=Bounded("steps"), default=4, metavar="N", help="denoising steps (default 4)"
    )
    p.add_argument(
        "--size", type=Bounded("width"), default=64, metavar="PX", help="width and height (default 64)"
    )
    p.add_argument("--seed", type=Bounded("seed"), default=0, metavar="N", help="seed (default 0)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu (default), auto, cuda, mps")


def build_parser() -> CliParser:
    """The full ``abstractvision`` parser."""
    parser = CliParser(
        prog="abstractvision",
        description="Generate and edit images and videos from the shell, on OpenAI-compatible, "
        "Diffusers or stable-diffusion.cpp backends.",
        epilog=EPILOG,
        formatter_class=_FORMATTER,
    )
    parser.add_argument("-V", "--version", action="version", version=f"abstractvision {__version__}")
    parser.set_defaults(handler=None)
    command = _Commands(parser)
    _add_task_commands(command)
    _add_catalog_commands(command)
    _add_store_command(command)
    _add_serve_command(command)
    _add_worker_command(command)
    _add_doctor_and_demo(command)
    return parser
