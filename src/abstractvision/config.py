"""One resolver for backend settings, shared by the CLI, the HTTP server and the AbstractCore plugin.

Precedence, highest first: explicit options (CLI flags, a host's config dict), environment
variables (``ABSTRACTVISION_*``), a config file, built-in defaults. The config file is JSON
or TOML, found at ``--config`` / ``ABSTRACTVISION_CONFIG`` or, when present,
``~/.config/abstractvision/config.toml`` (or ``.json``). Example TOML::

    backend = "diffusers"
    model = "runwayml/stable-diffusion-v1-5"
    device = "auto"
    [options]
    offload = "model"

Environment variables: ``ABSTRACTVISION_BACKEND``, ``_MODEL``, ``_BASE_URL``, ``_API_KEY``,
``_DEVICE``, ``_DTYPE``, ``_ALLOW_DOWNLOAD``, ``_TIMEOUT_S``, ``_STORE_DIR``, ``_MODELS_DIR``
(where :mod:`abstractvision.discovery` looks for local models), ``_CONFIG``
and, for backend options, ``ABSTRACTVISION_OPT_<NAME>`` (for example
``ABSTRACTVISION_OPT_CLIP_L=/models/clip_l.safetensors``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .errors import InvalidRequestError

__all__ = [
    "BACKENDS",
    "SETTING_KEYS",
    "BackendSettings",
    "backend_setting_names",
    "coerce_option",
    "create_backend",
    "create_manager",
    "load_config_file",
    "normalize_backend_name",
    "override_settings",
    "resolve_settings",
]

#: backend name -> (module, config class, backend class)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "openai": ("openai_compatible", "OpenAICompatibleBackendConfig", "OpenAICompatibleVisionBackend"),
    "diffusers": (
        "huggingface_diffusers",
        "HuggingFaceDiffusersBackendConfig",
        "HuggingFaceDiffusersVisionBackend",
    ),
    "sdcpp": ("stable_diffusion_cpp", "StableDiffusionCppBackendConfig", "StableDiffusionCppVisionBackend"),
}
_ALIASES = {
    "openai-compatible": "openai",
    "http": "openai",
    "hf": "diffusers",
    "huggingface": "diffusers",
    "sd.cpp": "sdcpp",
    "stable-diffusion-cpp": "sdcpp",
}

_SCALARS = (
    "backend",
    "model",
    "base_url",
    "api_key",
    "device",
    "dtype",
    "allow_download",
    "timeout_s",
    "store_dir",
    "models_dir",
)
#: every scalar setting, in display order (the CLI's `doctor` lists them)
SETTING_KEYS = _SCALARS
#: settings whose value is text (a path or a name)
_STRINGS = ("backend", "model", "base_url", "api_key", "device", "dtype", "store_dir", "models_dir")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
DEFAULT_CONFIG_PATHS = (
    Path("~/.config/abstractvision/config.toml"),
    Path("~/.config/abstractvision/config.json"),
)


@dataclass
class BackendSettings:
    """Resolved settings. ``sources`` says where each value came from (for ``doctor``)."""

    backend: Optional[str] = None
    model: Optional[str] = None
    base_url: Optional[str] = None
    api_key: Optional[str] = field(default=None, repr=False)
    device: Optional[str] = None
    dtype: Optional[str] = None
    allow_download: Optional[bool] = None
    timeout_s: Optional[float] = None
    store_dir: Optional[str] = None
    models_dir: Optional[str] = None
    options: dict[str, Any] = field(default_factory=dict)
    config_path: Optional[str] = None
    sources: dict[str, str] = field(default_factory=dict)

    def redacted(self) -> dict[str, Any]:
        """JSON-safe view with the API key hidden."""
        out = dataclasses.asdict(self)
        if out.get("api_key"):
            out["api_key"] = "***"
        return out


def normalize_backend_name(name: Any, *, param: str = "backend") -> str:
    """``"hf"`` -> ``"diffusers"``, ``"sd.cpp"`` -> ``"sdcpp"``... (raises for unknown names)."""
    key = str(name or "").strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BACKENDS:
        raise InvalidRequestError(
            f"Unknown backend {name!r}; choose one of: {', '.join(BACKENDS)} (aliases: {', '.join(sorted(_ALIASES))}).",
            param=param,
        )
    return key


def _parse_bool(value: Any, name: str) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidRequestError(f"{name} must be true or false, got {value!r}.", param=name)


def _parse_float(value: Any, name: str) -> Optional[float]:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidRequestError(f"{name} must be a number of seconds, got {value!r}.", param=name)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidRequestError(f"{name} must be a number of seconds, got {value!r}.", param=name) from exc
    if not math.isfinite(number) or number <= 0:  # NaN would disable every comparison against it
        raise InvalidRequestError(f"{name} must be a positive, finite number, got {value!r}.", param=name)
    return number


def coerce_option(text: str) -> Any:
    """Parse a KEY=VALUE option value: booleans, numbers and JSON lists/objects; else the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            pass
    return text


def load_config_file(path: Union[str, os.PathLike[str]]) -> dict[str, Any]:
    """Read a JSON or TOML config file into a dict (raises :class:`InvalidRequestError`)."""
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InvalidRequestError(
            f"Cannot read config file {p}: {exc.strerror or exc}.", param="config"
        ) from exc
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError as exc:  # Python 3.10
                raise InvalidRequestError(
                    "TOML config files need Python 3.11+; use a .json file.", param="config"
                ) from exc
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except InvalidRequestError:
        raise
    except Exception as exc:
        raise InvalidRequestError(f"Config file {p} is not valid: {exc}", param="config") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"Config file {p} must contain a table/object at the top level.", param="config"
        )
    unknown = set(data) - set(_SCALARS) - {"options"}
    if unknown:
        raise InvalidRequestError(
            f"Config file {p}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(_SCALARS)}, options.",
            param="config",
        )
    return data


def resolve_settings(
    explicit: Optional[Mapping[str, Any]] = None,
    *,
    env: Optional[Mapping[str, str]] = None,
    config_path: Optional[Union[str, os.PathLike[str]]] = None,
) -> BackendSettings:
    """Merge explicit options, environment and config file into :class:`BackendSettings`.

    ``explicit`` may hold the scalar keys (``backend``, ``model``, ``base_url``...) and an
    ``options`` dict of backend-specific config fields. ``None`` values are "not given".
    """
    env = os.environ if env is None else env
    if explicit is not None and not isinstance(explicit, Mapping):
        raise InvalidRequestError(
            f"settings must be a mapping of setting names to values, got {type(explicit).__name__}.",
            param="settings",
        )
    explicit = dict(explicit or {})
    settings = BackendSettings()

    path = config_path or explicit.pop("config", None) or env.get("ABSTRACTVISION_CONFIG") or None
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise InvalidRequestError(
            f"config must be the path of a JSON or TOML file, got {type(path).__name__}.", param="config"
        )
    file_data: dict[str, Any] = {}
    if path:
        file_data = load_config_file(path)
        settings.config_path = str(Path(path).expanduser())
    else:
        for candidate in DEFAULT_CONFIG_PATHS:
            if candidate.expanduser().is_file():
                file_data = load_config_file(candidate)
                settings.config_path = str(candidate.expanduser())
                break

    layers: list[tuple[str, Mapping[str, Any]]] = [("config file", file_data)]
    env_layer: dict[str, Any] = {
        k: env[f"ABSTRACTVISION_{k.upper()}"] for k in _SCALARS if env.get(f"ABSTRACTVISION_{k.upper()}")
    }
    env_layer["options"] = {
        k[len("ABSTRACTVISION_OPT_") :].lower(): coerce_option(v)
        for k, v in env.items()
        if k.startswith("ABSTRACTVISION_OPT_")
    }
    layers.append(("environment", env_layer))
    layers.append(("explicit", explicit))

    for source, layer in layers:
        for key in _SCALARS:
            if layer.get(key) is not None:
                setattr(settings, key, layer[key])
                settings.sources[key] = source
        options = layer.get("options") or {}
        if not isinstance(options, Mapping):
            raise InvalidRequestError(f"'options' from the {source} must be a mapping.", param="options")
        for key, value in options.items():
            if value is not None:
                settings.options[str(key)] = value
                settings.sources[f"options.{key}"] = source

    _check_known(explicit, "settings")
    return _finish(settings)


def _check_known(layer: Mapping[str, Any], what: str) -> None:
    unknown = set(layer) - set(_SCALARS) - {"options"}
    if unknown:
        raise InvalidRequestError(
            f"Unknown setting(s) {sorted(map(repr, unknown))} in the {what}; "
            f"allowed: {', '.join(_SCALARS)}, options.",
            param="settings",
        )


def _finish(settings: BackendSettings) -> BackendSettings:
    """Check types and normalise values once every layer is applied."""
    for key in _STRINGS:
        value = getattr(settings, key)
        if isinstance(value, os.PathLike) and key in ("store_dir", "models_dir"):
            value = os.fspath(value)
            setattr(settings, key, value)
        if value is not None and not isinstance(value, str):
            raise InvalidRequestError(
                f"{key} must be a string, got {type(value).__name__} {value!r} "
                f"(from the {settings.sources.get(key, 'settings')}).",
                param=key,
            )
    settings.allow_download = _parse_bool(settings.allow_download, "allow_download")
    settings.timeout_s = _parse_float(settings.timeout_s, "timeout_s")
    if settings.backend is not None:
        settings.backend = normalize_backend_name(settings.backend)
    elif settings.base_url:
        settings.backend = "openai"
        settings.sources["backend"] = "implied by base_url"
    return settings


def override_settings(
    base: BackendSettings, overrides: Mapping[str, Any], *, source: str = "explicit"
) -> BackendSettings:
    """A copy of resolved ``base`` settings with ``overrides`` applied on top, checked again.

    ``overrides`` holds scalar keys (``backend``, ``model``...) and an optional ``options``
    mapping, as :func:`resolve_settings` takes them; ``None`` values are "not given". The
    models file of ``abstractvision serve`` builds each served model's settings this way.
    """
    if not isinstance(overrides, Mapping):
        raise InvalidRequestError(f"The {source} must be a table of settings.", param="settings")
    _check_known(overrides, source)
    settings = dataclasses.replace(base, options=dict(base.options), sources=dict(base.sources))
    for key in _SCALARS:
        if overrides.get(key) is not None:
            setattr(settings, key, overrides[key])
            settings.sources[key] = source
    options = overrides.get("options") or {}
    if not isinstance(options, Mapping):
        raise InvalidRequestError(f"'options' in the {source} must be a table.", param="options")
    for key, value in options.items():
        if value is not None:
            settings.options[str(key)] = value
            settings.sources[f"options.{key}"] = source
    return _finish(settings)


def _config_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()


def _backend_classes(backend: str) -> tuple[type, type]:
    import importlib

    module_name, config_name, backend_name = BACKENDS[backend]
    module = importlib.import_module(f"abstractvision.backends.{module_name}")
    return getattr(module, config_name), getattr(module, backend_name)


def _setting_targets(fields: set[str]) -> dict[str, str]:
    """Scalar setting -> the backend config field it sets."""
    return {
        "model": "model_id" if "model_id" in fields else "model",
        "base_url": "base_url",
        "api_key": "api_key",
        "device": "device",
        "dtype": "torch_dtype" if "torch_dtype" in fields else "dtype",
        "allow_download": "allow_download",
        "timeout_s": "timeout_s",
    }


def backend_setting_names(backend: str) -> frozenset[str]:
    """The scalar settings (``device``, ``base_url``...) the named backend takes."""
    fields = _config_fields(_backend_classes(normalize_backend_name(backend))[0])
    return frozenset(key for key, target in _setting_targets(fields).items() if target in fields)


def _check_sdcpp_model(model: str, options: dict[str, Any]) -> None:
    """``--model`` of the sd.cpp backend that is no file: a label beside components, else an error.

    sd.cpp loads files. A model that is not a file is only meaningful as the provenance label of
    a component model (``--diffusion-model`` ...) or an upscale-only backend; otherwise say what is
    wrong with it (a missing file, a folder, a hub id) and how to give the model.
    """
    if options.get("diffusion_model") or options.get("upscaler"):
        return
    path = Path(model).expanduser()
    components = "or give a component model with --diffusion-model FILE plus --vae/--taesd and its text encoders"
    if path.is_dir():
        raise InvalidRequestError(
            f"The sdcpp model {model!r} is a folder; stable-diffusion.cpp loads one checkpoint file. Point the "
            f"model (--model) at the .gguf/.safetensors file inside it, {components}.",
            param="model",
        )
    hub_id = model.count("/") == 1 and not model.startswith((".", "~", "/")) and not path.suffix
    if hub_id or (os.sep not in model and "/" not in model and not path.suffix):
        raise InvalidRequestError(
            f"The sdcpp model {model!r} is not a file; stable-diffusion.cpp loads local checkpoint files "
            f"(GGUF or safetensors) and downloads nothing. Give the model as a file path (--model "
            f"PATH/TO/MODEL.gguf), {components}.",
            param="model",
        )
    raise InvalidRequestError(
        f"The sdcpp model file {model!r} does not exist (looked for {path.absolute()}). Check the path "
        f"(--model), {components}.",
        param="model",
    )


def create_backend(settings: BackendSettings) -> Any:
    """Instantiate the configured backend (imports only that backend's module)."""
    if settings.backend is None:
        raise InvalidRequestError(
            "No backend selected. Choose one with --backend openai|diffusers|sdcpp, ABSTRACTVISION_BACKEND, "
            'or a config file (backend = "...").',
            param="backend",
        )
    config_cls, backend_cls = _backend_classes(settings.backend)
    fields = _config_fields(config_cls)
    kwargs: dict[str, Any] = {}
    mapping = _setting_targets(fields)
    if settings.backend == "sdcpp" and settings.model:
        # a single-file checkpoint path goes to `model`; with components, anything else is a label
        is_file = Path(str(settings.model)).expanduser().is_file()
        if not is_file:
            _check_sdcpp_model(str(settings.model), settings.options)
        mapping["model"] = "model" if is_file and "model" in fields else "model_id"
    for key, target in mapping.items():
        value = getattr(settings, key)
        if value is None:
            continue
        if target not in fields:
            raise InvalidRequestError(f"The {settings.backend} backend does not take '{key}'.", param=key)
        kwargs[target] = value
    for key, value in settings.options.items():
        if key not in fields:
            raise InvalidRequestError(
                f"Unknown {settings.backend} backend option '{key}'. Known options: {', '.join(sorted(fields))}.",
                param=key,
            )
        kwargs[key] = value
    try:
        config = config_cls(**kwargs)
    except TypeError as exc:
        raise InvalidRequestError(f"Invalid {settings.backend} backend settings: {exc}") from exc
    return backend_cls(config=config)


def create_manager(
    settings: BackendSettings,
    *,
    use_store: bool = False,
    asynchronous: bool = False,
    model_id: Optional[str] = None,
    registry: Any = None,
) -> Any:
    """A :class:`VisionManager` (or :class:`AsyncVisionManager`) over :func:`create_backend`.

    ``model_id`` enables registry gating (see ``VisionManager``); ``use_store`` returns
    artifact refs from the store at ``settings.store_dir`` (a folder or a URL such as
    ``s3://bucket/prefix``, see :func:`abstractvision.stores.open_store`).
    """
    from .stores import open_store

    backend = create_backend(settings)
    store = open_store(settings.store_dir) if use_store else None
    if asynchronous:
        from .async_manager import AsyncVisionManager

        return AsyncVisionManager(backend=backend, store=store, model_id=model_id, registry=registry)
    from .vision_manager import VisionManager

    return VisionManager(backend=backend, store=store, model_id=model_id, registry=registry)
