"""Served models: the public names, ``--model [NAME=]SPEC`` and the models file.

A *served model* is one backend configuration under a public name, as ``abstractvision
serve`` (and a scale-out worker) exposes it. Clients only ever see the name:

- by default the name is the folder or file *basename* of a local model
  (``/data/models/sdxl`` -> ``sdxl``, ``/m/flux1-schnell-Q4_0.gguf`` ->
  ``flux1-schnell-Q4_0.gguf``); a hub id stays as given (``stabilityai/sdxl-turbo``);
- ``NAME=SPEC`` on the command line, ``--served-model-name`` for a single model, or the table
  name in a models file, overrides it.

A models file (TOML, or JSON with the same shape) lists models with their own backend and
options, for mixed setups::

    [defaults]                 # optional: settings every model below starts from
    device = "cpu"

    [models.sd-turbo]          # the served name
    backend = "diffusers"
    model = "models/sd-turbo"  # relative paths are read from this file's folder

    [models.wan]
    backend = "diffusers"
    model = "models/wan2.1-t2v-1.3b"
    workers = 1                # this model's own limits (default: the server's)
    queue_size = 4

    [models.flux-gguf]
    backend = "sdcpp"
    [models.flux-gguf.options]
    diffusion_model = "models/flux1-schnell-Q4_0.gguf"
    clip_l = "models/clip_l.safetensors"
    t5xxl = "models/t5xxl_fp16.safetensors"
    vae = "models/ae.safetensors"

Each table takes the settings of :mod:`abstractvision.config` (``backend``, ``model``,
``base_url``, ``api_key``, ``device``, ``dtype``, ``allow_download``, ``timeout_s``,
``options``), plus ``workers``, ``queue_size``, ``registry_id`` (a capability-registry id
whose tasks and parameter limits then gate requests), ``description`` (one line clients
see in ``/v1/models`` and the playground) and ``request_defaults`` (a table of request
parameters used when a request leaves them out, e.g. ``steps = 4``). From the command line's settings a file
model inherits only the machine-wide ones (``device``, ``dtype``, ``allow_download``,
``timeout_s``): its backend, model and options are its own. Shared values (the command
line's and ``[defaults]``) reach only the models whose backend takes them (``device`` is not
given to a stable-diffusion.cpp model); a value in a model's own table always applies, and one
its backend does not take is an error naming the model.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .config import BackendSettings, override_settings
from .errors import InvalidRequestError

__all__ = [
    "ServedModel",
    "default_served_name",
    "load_models_file",
    "parse_model_arg",
    "served_models_from_args",
    "unique_names",
]

#: a served name: no spaces, no leading dot or slash; '/' allowed (hub ids), at most 128 chars
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,127}$")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
#: settings a file model inherits from the command line (the machine's, not the model's)
_INHERITED = ("device", "dtype", "allow_download", "timeout_s")
_MODEL_KEYS = ("workers", "queue_size", "registry_id", "description", "request_defaults")
#: request fields that are inputs or routing, never defaults
_NOT_DEFAULTS = frozenset(
    {"prompt", "image", "mask", "reference_image", "reference_images", "count", "seeds", "extra"}
)
#: backend options that name files (resolved against the models file's folder)
_PATH_OPTIONS = (
    "model",
    "diffusion_model",
    "vae",
    "taesd",
    "clip_l",
    "clip_g",
    "t5xxl",
    "llm",
    "upscaler",
    "upscaler_model_id",
    "lora_model_dir",
    "cache_dir",
)


@dataclass(frozen=True)
class ServedModel:
    """One model a server serves: its public ``name`` and the settings of its backend.

    Attributes:
        name: the public model id (``/v1/models``, the ``model`` request field).
        settings: resolved backend settings (:func:`abstractvision.config.create_backend`).
        workers: engine calls at the same time for this model (``None``: the server's).
        queue_size: waiting jobs for this model before 429 (``None``: the server's).
        registry_id: capability-registry id whose tasks and limits gate this model's requests.
        description: one line about the model that clients see (``/v1/models``, the playground,
            the startup line), e.g. that ``serve --demo``'s models make noise.
        request_defaults: request parameters applied when a request leaves them out
            (``{"width": 64, "height": 64, "steps": 4}``), for every task that takes them; a
            request's own value always wins.
    """

    name: str
    settings: BackendSettings
    workers: Optional[int] = None
    queue_size: Optional[int] = None
    registry_id: Optional[str] = None
    description: Optional[str] = None
    request_defaults: Optional[Mapping[str, Any]] = None

    def __post_init__(self) -> None:
        check_name(self.name)
        for key in ("workers", "queue_size"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidRequestError(
                    f"Model {self.name!r}: {key} must be a positive integer, got {value!r}.", param=key
                )
        if self.description is not None and not isinstance(self.description, str):
            raise InvalidRequestError(
                f"Model {self.name!r}: description must be a string, got {self.description!r}.",
                param="description",
            )
        if self.request_defaults is not None:
            check_request_defaults(self.name, self.request_defaults)

    @property
    def local_paths(self) -> tuple[str, ...]:
        """Absolute local paths this model's settings name (what a server must never show)."""
        values = [self.settings.model, *(self.settings.options.get(k) for k in _PATH_OPTIONS)]
        out: list[str] = []
        for value in values:
            if isinstance(value, (str, os.PathLike)) and str(value):
                path = Path(os.fspath(value)).expanduser()
                if path.exists():
                    out += [str(path.absolute()), str(path.resolve())]
        return tuple(dict.fromkeys(out))


def check_request_defaults(name: str, defaults: Any) -> None:
    """Refuse request defaults that are not a table of known scalar request parameters."""
    import dataclasses

    from ._core import _REQUEST_TYPES

    if not isinstance(defaults, Mapping):
        raise InvalidRequestError(
            f"Model {name!r}: request_defaults must be a table of parameter = value.", param="request_defaults"
        )
    known = {f.name for cls in _REQUEST_TYPES.values() for f in dataclasses.fields(cls)} - _NOT_DEFAULTS
    for key, value in defaults.items():
        if key not in known:
            raise InvalidRequestError(
                f"Model {name!r}: request_defaults has an unknown parameter {key!r}; known: "
                f"{', '.join(sorted(known))}.",
                param="request_defaults",
            )
        if isinstance(value, (dict, list, tuple, set, bytes)) or value is None:
            raise InvalidRequestError(
                f"Model {name!r}: request_defaults.{key} must be a number, a string or a boolean.",
                param="request_defaults",
            )


def check_name(name: Any) -> str:
    """A valid served name, or :class:`InvalidRequestError` saying what a name may hold."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or "//" in name or name.endswith("/"):
        raise InvalidRequestError(
            f"{name!r} is not a valid served model name: use letters, digits and . _ - : @ + / "
            "(no spaces, at most 128 characters, not starting with '.' or '/').",
            param="model",
        )
    return name


def looks_like_hub_id(spec: str) -> bool:
    """``org/name`` that is not an existing local path."""
    return bool(_HUB_ID_RE.match(spec)) and not Path(spec).expanduser().exists()


def default_served_name(spec: Union[str, os.PathLike[str]]) -> str:
    """The default public name of a model spec: a hub id as given, else the path's basename."""
    text = os.fspath(spec).strip()
    if looks_like_hub_id(text):
        return text
    base = os.path.basename(text.rstrip("/\\")) or text
    return base if _NAME_RE.match(base) else re.sub(r"[^A-Za-z0-9._:@+-]", "-", base).lstrip(".-") or "model"


def _settings_name(settings: BackendSettings) -> str:
    """The default name of a backend configuration (its model, else its main file, else the backend)."""
    spec = settings.model or settings.options.get("diffusion_model") or settings.options.get("model")
    if spec:
        return default_served_name(str(spec))
    return settings.backend or "default"


def parse_model_arg(text: str) -> tuple[Optional[str], str]:
    """``"NAME=SPEC"`` -> ``(NAME, SPEC)``; ``"SPEC"`` -> ``(None, SPEC)``.

    The text before the first ``=`` is a name only when it is a valid served name and the
    whole text is not an existing path (a path may contain ``=``).
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError("--model needs a value: [NAME=]SPEC.", param="model")
    name, sep, spec = text.partition("=")
    if sep and name and _NAME_RE.match(name) and not Path(text).expanduser().exists():
        if not spec.strip():
            raise InvalidRequestError(f"--model {text!r}: nothing after '='; use NAME=SPEC.", param="model")
        return name, spec.strip()
    return None, text.strip()


def unique_names(models: Iterable[ServedModel]) -> list[ServedModel]:
    """``models`` in order; raises when two share a name (the error names both)."""
    seen: dict[str, ServedModel] = {}
    for model in models:
        if model.name in seen:
            raise InvalidRequestError(
                f"Two served models are named {model.name!r}; give one another name with NAME=SPEC, "
                "--served-model-name or the models file's table name.",
                param="model",
            )
        seen[model.name] = model
    return list(seen.values())


# -- the models file ----------------------------------------------------------------------


def _read_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidRequestError(
            f"Cannot read the models file {path}: {exc.strerror or exc}.", param="models_file"
        ) from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            try:
                import tomllib
            except ModuleNotFoundError as exc:  # Python 3.10
                raise InvalidRequestError(
                    "TOML models files need Python 3.11+; write the same tables as JSON (.json).",
                    param="models_file",
                ) from exc
            data = tomllib.loads(raw.decode("utf-8"))
    except InvalidRequestError:
        raise
    except Exception as exc:
        raise InvalidRequestError(f"The models file {path} is not valid: {exc}", param="models_file") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError(f"The models file {path} must hold tables.", param="models_file")
    return data


def _resolve_path(value: Any, folder: Path, *, force: bool = False) -> Any:
    """A relative path that exists next to the models file (or starts with ./ or ../) -> absolute."""
    if not isinstance(value, str) or not value or os.path.isabs(value) or value.startswith("~"):
        return value
    candidate = folder / value
    if force or value.startswith(("./", "../")) or candidate.exists():
        return str(candidate.resolve())
    return value


def _takes(backend: Any) -> frozenset[str]:
    """Scalar settings ``backend`` takes (all of them when it is unknown: the error comes later)."""
    from .config import _SCALARS, backend_setting_names

    try:
        return backend_setting_names(backend) if backend else frozenset(_SCALARS)
    except InvalidRequestError:
        return frozenset(_SCALARS)


def load_models_file(
    path: Union[str, os.PathLike[str]], base: Optional[BackendSettings] = None
) -> list[ServedModel]:
    """The served models of a models file (see the module docstring for the format).

    ``base`` is the command line's resolved settings; file models inherit its machine-wide
    settings only.
    """
    file = Path(path).expanduser()
    data = _read_file(file)
    unknown = set(data) - {"defaults", "models"}
    if unknown:
        raise InvalidRequestError(
            f"The models file {file}: unknown top-level key(s) {sorted(unknown)}; "
            "use [defaults] and [models.NAME] tables.",
            param="models_file",
        )
    defaults = data.get("defaults") or {}
    models = data.get("models")
    if not isinstance(defaults, dict):
        raise InvalidRequestError(f"The models file {file}: [defaults] must be a table.", param="models_file")
    if not isinstance(models, dict) or not models:
        raise InvalidRequestError(
            f"The models file {file} lists no models: add a [models.NAME] table per model.",
            param="models_file",
        )
    folder = file.parent
    out: list[ServedModel] = []
    for name, table in models.items():
        if not isinstance(table, dict):
            raise InvalidRequestError(
                f"The models file {file}: [models.{name}] must be a table of settings.", param="models_file"
            )
        backend = table.get("backend") or defaults.get("backend") or (base.backend if base else None)
        takes = _takes(backend)
        # shared values (the command line's, [defaults]) reach only backends that take them
        inherited = {
            k: v for k, v in defaults.items() if k in ("backend", "options", *_MODEL_KEYS) or k in takes
        }
        merged: dict[str, Any] = {**inherited, **table}
        merged["options"] = {**dict(defaults.get("options") or {}), **dict(table.get("options") or {})}
        extras = {k: merged.pop(k) for k in _MODEL_KEYS if k in merged}
        merged["model"] = _resolve_path(merged.get("model"), folder)
        merged["options"] = {
            k: _resolve_path(v, folder, force=k not in ("model", "upscaler_model_id"))
            if k in _PATH_OPTIONS
            else v
            for k, v in merged["options"].items()
        }
        start = BackendSettings()
        for key in _INHERITED:
            if base is not None and getattr(base, key) is not None and key in takes:
                setattr(start, key, getattr(base, key))
                start.sources[key] = base.sources.get(key, "command line")
        try:
            settings = override_settings(start, merged, source=f"models file [models.{name}]")
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"{file}: {exc}", param=exc.param) from None
        if settings.backend is None:
            raise InvalidRequestError(
                f"The models file {file}: [models.{name}] needs a backend (openai | diffusers | sdcpp).",
                param="backend",
            )
        out.append(ServedModel(check_name(str(name)), settings, **extras))
    return unique_names(out)


def served_models_from_args(
    base: BackendSettings,
    *,
    models: Sequence[str] = (),
    served_model_name: Optional[str] = None,
    models_file: Optional[str] = None,
) -> list[ServedModel]:
    """The served models of ``serve``/``worker`` flags, in order (the first is the default).

    ``models`` are ``[NAME=]SPEC`` values sharing the backend flags of ``base``; without any
    ``models`` or ``models_file``, ``base`` itself is the one served model (as before).
    """
    if served_model_name is not None and (len(models) > 1 or models_file):
        raise InvalidRequestError(
            "--served-model-name names a single model; with several, use --model NAME=SPEC "
            "or the models file's table names.",
            param="served_model_name",
        )
    out: list[ServedModel] = []
    for text in models:
        name, spec = parse_model_arg(text)
        settings = override_settings(base, {"model": spec}, source="--model")
        out.append(ServedModel(name or served_model_name or default_served_name(spec), settings))
    if models_file:
        out += load_models_file(models_file, base)
    if not models and not models_file:
        out.append(ServedModel(served_model_name or _settings_name(base), base))
    return unique_names(out)
