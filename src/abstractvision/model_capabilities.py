"""The capability registry: which model can run which task, with which parameters.

The registry is data: ``assets/vision_model_capabilities.json`` validated against
``assets/vision_model_capabilities.schema.json`` when it is loaded. A user override file
(path in ``ABSTRACTVISION_CAPABILITIES_PATH``, or ``override_path=``) is merged on top:
its tasks and models are added, a model present in both has its fields and task specs
replaced one by one, and a model set to ``null`` is removed.

Example::

    reg = VisionModelCapabilitiesRegistry()
    reg.models_for_task("text_to_image")
    reg.require_support("runwayml/stable-diffusion-v1-5", "text_to_image")
    reg.validate_params("black-forest-labs/FLUX.1-schnell", "text_to_image", {"steps": 8})  # raises
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional, Union

from . import _jsonschema
from .errors import (
    CapabilityNotSupportedError,
    CapabilityRegistryError,
    InvalidRequestError,
    ParameterConstraintError,
    UnknownModelError,
)

if TYPE_CHECKING:  # pragma: no cover
    from dataclasses import dataclass, field
else:  # the same dataclasses, cheaper to define (see _dataclass.py)
    from ._dataclass import dataclass, field

__all__ = [
    "CAPABILITIES_ENV_VAR",
    "ParamSpec",
    "VisionModelCapabilitiesRegistry",
    "VisionModelSpec",
    "VisionTaskSpec",
    "load_schema",
    "validate_capabilities_document",
]

CAPABILITIES_ENV_VAR = "ABSTRACTVISION_CAPABILITIES_PATH"
_ASSET = "vision_model_capabilities.json"
_SCHEMA = "vision_model_capabilities.schema.json"
_MISSING = object()


@dataclass(frozen=True)
class ParamSpec:
    """Constraints of one parameter of one task of one model."""

    name: str
    required: bool = False
    supported: bool = True
    default: Any = None
    has_default: bool = False
    min: Optional[float] = None
    max: Optional[float] = None
    multiple_of: Optional[int] = None
    offset: Optional[int] = None
    enum: Optional[tuple[Any, ...]] = None
    description: str = ""

    def violation(self, value: Any) -> Optional[str]:
        """Why ``value`` breaks this constraint, or ``None`` when it is fine."""
        if not self.supported:
            return f"'{self.name}' is not supported by this model"
        if value is None:
            return None
        if self.enum is not None and value not in self.enum:
            return f"'{self.name}'={value!r} is not one of {list(self.enum)!r}"
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if (self.min is not None or self.max is not None or self.multiple_of) and not numeric:
            return f"'{self.name}' must be a number, got {type(value).__name__}"
        if numeric and isinstance(value, float) and not math.isfinite(value):
            return f"'{self.name}' must be finite, got {value!r}"
        if numeric and self.min is not None and value < self.min:
            return f"'{self.name}'={value!r} is below the minimum {self.min:g}"
        if numeric and self.max is not None and value > self.max:
            return f"'{self.name}'={value!r} is above the maximum {self.max:g}"
        if numeric and self.multiple_of and (value - (self.offset or 0)) % self.multiple_of != 0:
            if self.offset:
                return f"'{self.name}'={value!r} must be {self.multiple_of}k+{self.offset}"
            return f"'{self.name}'={value!r} must be a multiple of {self.multiple_of}"
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"required": self.required}
        if not self.supported:
            out["supported"] = False
        if self.has_default:
            out["default"] = self.default
        for key in ("min", "max", "multiple_of", "offset"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class VisionTaskSpec:
    """One task of one model: inputs, outputs, parameters and requirements."""

    task: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[str, ParamSpec]
    strategy: Optional[str] = None
    pipeline: Optional[str] = None
    requires: Optional[dict[str, Any]] = None
    views: Optional[tuple[dict[str, Any], ...]] = None
    #: explicit ``steps`` for OpenAI's ``quality`` levels (``low``/``medium``/``high``); see
    #: :func:`abstractvision._quality.quality_steps` for the rule used without them
    quality_steps: Optional[dict[str, int]] = None

    def defaults(self) -> dict[str, Any]:
        return {name: p.default for name, p in self.params.items() if p.has_default}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "params": {k: v.to_dict() for k, v in self.params.items()},
        }
        for key in ("strategy", "pipeline", "requires", "quality_steps"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.views is not None:
            out["views"] = [dict(v) for v in self.views]
        return out


@dataclass(frozen=True)
class VisionModelSpec:
    """A model known to the registry."""

    model_id: str
    provider: str
    license: str
    tasks: dict[str, VisionTaskSpec]
    notes: str = ""
    family: str = ""
    backends: tuple[str, ...] = ()
    aliases: tuple[str, ...] = field(default=())
    #: where the entry's facts come from (model card, API reference)
    source: str = ""
    #: the pipeline class in the model's ``model_index.json`` (Diffusers models)
    diffusers_pipeline: Optional[str] = None
    #: StableDiffusionCppBackendConfig field -> the file it needs (sd.cpp models)
    sdcpp_components: dict[str, str] = field(default_factory=dict)
    #: what runs the model when no built-in backend does
    runs_with: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model_id": self.model_id,
            "provider": self.provider,
            "family": self.family,
            "license": self.license,
            "source": self.source,
            "backends": list(self.backends),
            "aliases": list(self.aliases),
            "notes": self.notes,
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
        }
        if self.diffusers_pipeline:
            out["diffusers_pipeline"] = self.diffusers_pipeline
        if self.sdcpp_components:
            out["sdcpp"] = {"components": dict(self.sdcpp_components)}
        if self.runs_with:
            out["runs_with"] = self.runs_with
        return out


def _read_asset(name: str) -> Any:
    from importlib import resources  # here, not at import: it pulls tempfile, shutil, zipfile...

    return json.loads(
        resources.files("abstractvision").joinpath("assets").joinpath(name).read_text(encoding="utf-8")
    )


@functools.lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The packaged JSON Schema of the registry document."""
    return _read_asset(_SCHEMA)


@functools.lru_cache(maxsize=1)
def _packaged_document() -> dict[str, Any]:
    doc = _read_asset(_ASSET)
    validate_capabilities_document(doc, source="packaged registry", strict=True)
    return doc


def _parse_document(
    doc: dict[str, Any],
) -> tuple[str, dict[str, dict[str, Any]], dict[str, VisionModelSpec], dict[str, str]]:
    tasks: dict[str, dict[str, Any]] = dict(doc["tasks"])
    models: dict[str, VisionModelSpec] = {}
    aliases: dict[str, str] = {}
    for model_id, raw in doc["models"].items():
        spec = VisionModelCapabilitiesRegistry._parse_model(model_id, raw)
        models[model_id] = spec
        for alias in (model_id, *spec.aliases):
            aliases.setdefault(alias.lower(), model_id)
    return str(doc["schema_version"]), tasks, models, aliases


@functools.lru_cache(maxsize=1)
def _packaged_parsed() -> tuple[str, dict[str, dict[str, Any]], dict[str, VisionModelSpec], dict[str, str]]:
    return _parse_document(_packaged_document())


def validate_capabilities_document(doc: Any, *, source: str = "registry", strict: bool = False) -> None:
    """Validate a registry document: JSON Schema plus cross-references.

    ``strict`` (the packaged registry) also requires what the project promises of every
    entry: a cited ``source``; a ``diffusers_pipeline`` for models the Diffusers backend
    runs; the ``sdcpp`` components for models the stable-diffusion.cpp backend runs; and
    ``runs_with`` for models no built-in backend runs.

    Raises :class:`CapabilityRegistryError` listing every problem with its JSON path.
    """
    problems = _jsonschema.validate(doc, load_schema())
    if not problems:
        tasks = doc["tasks"]
        models = doc["models"]
        for model_id, model in models.items():
            if strict:
                problems.extend(_strict_problems(f"$['models'][{model_id!r}]", model))
            for task, spec in model["tasks"].items():
                where = f"$['models'][{model_id!r}]['tasks'][{task!r}]"
                if task not in tasks:
                    problems.append(
                        f"{where}: unknown task {task!r} (declared tasks: {', '.join(sorted(tasks))})"
                    )
                base = (spec.get("requires") or {}).get("base_model_id")
                if base is not None and base not in models:
                    problems.append(f"{where}['requires']['base_model_id']: unknown model {base!r}")
                for name, param in spec["params"].items():
                    problems.extend(_param_problems(f"{where}['params'][{name!r}]", name, param))
                if "quality_steps" in spec:
                    problems.extend(_quality_problems(f"{where}['quality_steps']", spec))
    if problems:
        shown = "\n  - ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CapabilityRegistryError(f"Invalid capability {source}:\n  - {shown}{more}")


def _strict_problems(where: str, model: dict[str, Any]) -> list[str]:
    out = []
    backends = model.get("backends") or []
    if not model.get("source"):
        out.append(f"{where}: no 'source' (cite the model card or API reference)")
    if "diffusers" in backends and not model.get("diffusers_pipeline"):
        out.append(f"{where}: runs on 'diffusers' but names no 'diffusers_pipeline'")
    if "sdcpp" in backends and not (model.get("sdcpp") or {}).get("components"):
        out.append(f"{where}: runs on 'sdcpp' but lists no 'sdcpp' components")
    if not backends and not model.get("runs_with"):
        out.append(f"{where}: no built-in backend runs it, so it must say what does ('runs_with')")
    return out


def _param_problems(where: str, name: str, param: dict[str, Any]) -> list[str]:
    out = []
    lo, hi = param.get("min"), param.get("max")
    if lo is not None and hi is not None and lo > hi:
        out.append(f"{where}: min {lo} is greater than max {hi}")
    if param.get("offset") is not None and not param.get("multiple_of"):
        out.append(f"{where}: 'offset' needs 'multiple_of'")
    if "default" in param and param["default"] is not None:
        spec = _param_spec(name, param)
        why = spec.violation(param["default"]) if spec.supported else None
        if why:
            out.append(f"{where}: the default breaks its own constraint ({why})")
    return out


def _quality_problems(where: str, spec: dict[str, Any]) -> list[str]:
    presets = spec["quality_steps"]
    levels = [presets["low"], presets["medium"], presets["high"]]
    out = [] if levels == sorted(levels) else [f"{where}: low <= medium <= high does not hold ({levels})"]
    steps = spec["params"].get("steps")
    if steps is None or steps.get("supported") is False:
        return [*out, f"{where}: the task has no supported 'steps' parameter to preset"]
    for level, value in presets.items():
        why = _param_spec("steps", steps).violation(value)
        if why:
            out.append(f"{where}['{level}']: {why}")
    return out


def _param_spec(name: str, raw: Mapping[str, Any]) -> ParamSpec:
    enum = raw.get("enum")
    return ParamSpec(
        name=name,
        required=bool(raw.get("required", False)),
        supported=bool(raw.get("supported", True)),
        default=raw.get("default"),
        has_default="default" in raw,
        min=raw.get("min"),
        max=raw.get("max"),
        multiple_of=raw.get("multiple_of"),
        offset=raw.get("offset"),
        enum=tuple(enum) if enum is not None else None,
        description=str(raw.get("description", "")),
    )


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    if "schema_version" in override:
        out["schema_version"] = override["schema_version"]
    out["tasks"].update(copy.deepcopy(override.get("tasks") or {}))
    models = out["models"]
    for model_id, spec in (override.get("models") or {}).items():
        if spec is None:
            models.pop(model_id, None)
        elif model_id in models and isinstance(spec, dict):
            merged = models[model_id]
            for key, value in spec.items():
                if key == "tasks" and isinstance(value, dict):
                    for task, tspec in value.items():
                        if tspec is None:
                            merged["tasks"].pop(task, None)
                        else:
                            merged["tasks"][task] = copy.deepcopy(tspec)
                else:
                    merged[key] = copy.deepcopy(value)
        else:
            models[model_id] = copy.deepcopy(spec)
    return out


class VisionModelCapabilitiesRegistry:
    """Loads the packaged registry (plus an optional override file) and answers questions.

    Args:
        asset_path: use this registry file instead of the packaged one.
        override_path: a file merged on top; defaults to ``$ABSTRACTVISION_CAPABILITIES_PATH``.
        use_env: set to ``False`` to ignore the environment variable.
    """

    def __init__(
        self,
        *,
        asset_path: Optional[Union[str, os.PathLike[str]]] = None,
        override_path: Optional[Union[str, os.PathLike[str]]] = None,
        use_env: bool = True,
    ) -> None:
        if override_path is None and use_env:
            override_path = os.environ.get(CAPABILITIES_ENV_VAR) or None
        self.override_path = os.fspath(override_path) if override_path is not None else None
        if asset_path is None and override_path is None:
            # the packaged registry alone: parsed once per process (the specs are immutable)
            version, tasks, models, aliases = _packaged_parsed()
            self._schema_version = version
            self._tasks = dict(tasks)
            self._models = dict(models)
            self._aliases = dict(aliases)
            return
        if asset_path is not None:
            doc = self._read_file(asset_path, "registry file")
            validate_capabilities_document(doc, source=f"registry file {os.fspath(asset_path)}")
        else:
            doc = _packaged_document()
        if override_path is not None:
            override = self._read_file(override_path, "override file")
            if not isinstance(override, dict):
                raise CapabilityRegistryError(
                    f"Invalid capability override file {override_path}: expected a JSON object."
                )
            unknown = set(override) - {"$schema", "schema_version", "tasks", "models"}
            if unknown:
                raise CapabilityRegistryError(
                    f"Invalid capability override file {override_path}: unknown top-level key(s) "
                    f"{sorted(unknown)}; allowed: schema_version, tasks, models."
                )
            doc = _merge(doc, override)
            validate_capabilities_document(doc, source=f"registry after merging {override_path}")
        self._schema_version, self._tasks, self._models, self._aliases = _parse_document(doc)

    @staticmethod
    def _read_file(path: Union[str, os.PathLike[str]], what: str) -> Any:
        try:
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError as exc:
            raise CapabilityRegistryError(f"Capability {what} not found: {os.fspath(path)}") from exc
        except (OSError, ValueError) as exc:
            raise CapabilityRegistryError(
                f"Capability {what} {os.fspath(path)} is not valid JSON: {exc}"
            ) from exc

    @staticmethod
    def _parse_model(model_id: str, raw: dict[str, Any]) -> VisionModelSpec:
        tasks = {}
        for task, t in raw["tasks"].items():
            tasks[task] = VisionTaskSpec(
                task=task,
                inputs=tuple(t["inputs"]),
                outputs=tuple(t["outputs"]),
                params={name: _param_spec(name, p) for name, p in t["params"].items()},
                strategy=t.get("strategy"),
                pipeline=t.get("pipeline"),
                requires=t.get("requires"),
                views=tuple(t["views"]) if "views" in t else None,
                quality_steps=dict(t["quality_steps"]) if "quality_steps" in t else None,
            )
        return VisionModelSpec(
            model_id=model_id,
            provider=raw["provider"],
            license=raw["license"],
            tasks=tasks,
            notes=raw.get("notes", ""),
            family=raw.get("family", ""),
            backends=tuple(raw.get("backends", ())),
            aliases=tuple(raw.get("aliases", ())),
            source=raw.get("source", ""),
            diffusers_pipeline=raw.get("diffusers_pipeline"),
            sdcpp_components=dict((raw.get("sdcpp") or {}).get("components") or {}),
            runs_with=raw.get("runs_with", ""),
        )

    # -- tasks ------------------------------------------------------------------------

    def schema_version(self) -> str:
        return self._schema_version

    def list_tasks(self) -> list[str]:
        """Every task name the registry knows, sorted."""
        return sorted(self._tasks)

    def get_task(self, task: str) -> dict[str, Any]:
        """The task's description dict (raises :class:`InvalidRequestError` for unknown tasks)."""
        self._check_task(task)
        return dict(self._tasks[task])

    def _check_task(self, task: Any) -> str:
        if not isinstance(task, str) or task not in self._tasks:
            raise InvalidRequestError(
                f"Unknown task {task!r}. Known tasks: {', '.join(self.list_tasks())}.", param="task"
            )
        return task

    # -- models -----------------------------------------------------------------------

    def list_models(self, *, task: Optional[str] = None, backend: Optional[str] = None) -> list[str]:
        """Model ids, sorted; optionally only those supporting ``task`` / running on ``backend``."""
        if task is not None:
            self._check_task(task)
        return sorted(
            mid
            for mid, spec in self._models.items()
            if (task is None or task in spec.tasks) and (backend is None or backend in spec.backends)
        )

    def models_for_task(self, task: str) -> list[str]:
        """Model ids that support ``task``, sorted."""
        return self.list_models(task=task)

    def resolve(self, model_id: str) -> str:
        """The canonical id for ``model_id`` or one of its aliases (case-insensitive)."""
        if not isinstance(model_id, str) or not model_id.strip():
            raise InvalidRequestError("model_id must be a non-empty string.", param="model_id")
        if model_id in self._models:
            return model_id
        found = self._aliases.get(model_id.strip().lower())
        if found is None:
            import difflib

            close = difflib.get_close_matches(model_id, list(self._models), n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownModelError(
                f"Unknown vision model id {model_id!r}.{hint} List known ids with "
                "VisionModelCapabilitiesRegistry().list_models(), or add it in a capability override file "
                f"(${CAPABILITIES_ENV_VAR}).",
                model_id=model_id,
            )
        return found

    def get(self, model_id: str) -> VisionModelSpec:
        """The model's spec (raises :class:`UnknownModelError`)."""
        return self._models[self.resolve(model_id)]

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and model_id.strip().lower() in self._aliases

    def supports(self, model_id: str, task: str) -> bool:
        """``True`` when the model is known and lists ``task`` (never raises for unknown models)."""
        if not isinstance(task, str):
            return False
        try:
            return task in self.get(model_id).tasks
        except (UnknownModelError, InvalidRequestError):
            return False

    def require_support(self, model_id: str, task: str) -> VisionTaskSpec:
        """Return the task spec, or raise.

        Raises:
            UnknownModelError: the model is not in the registry.
            InvalidRequestError: ``task`` is not a known task name.
            CapabilityNotSupportedError: the model does not support the task (lists what it does).
        """
        spec = self.get(model_id)
        self._check_task(task)
        if task not in spec.tasks:
            raise CapabilityNotSupportedError(
                f"Model '{spec.model_id}' does not support task '{task}'.",
                task=task,
                supported=sorted(spec.tasks),
            )
        return spec.tasks[task]

    def multi_view_strategy(self, model_id: str) -> str:
        """How ``model_id`` produces multiple views: ``"native"`` or ``"orchestrated"``.

        A model that lists ``multi_view_image`` uses the strategy it declares; any model with
        both ``text_to_image`` and ``image_to_image`` can be orchestrated. Otherwise
        :class:`CapabilityNotSupportedError` lists the model's tasks.
        """
        spec = self.get(model_id)
        listed = spec.tasks.get("multi_view_image")
        if listed is not None:
            return listed.strategy or "native"
        if {"text_to_image", "image_to_image"} <= set(spec.tasks):
            return "orchestrated"
        raise CapabilityNotSupportedError(
            f"Model '{spec.model_id}' cannot produce multiple views: it has no native multi_view_image and "
            "lacks text_to_image + image_to_image for the orchestrated strategy.",
            task="multi_view_image",
            supported=sorted(spec.tasks),
        )

    def task_spec(self, model_id: str, task: str) -> VisionTaskSpec:
        return self.require_support(model_id, task)

    def param_constraints(self, model_id: str, task: str) -> dict[str, ParamSpec]:
        return dict(self.require_support(model_id, task).params)

    def defaults(self, model_id: str, task: str) -> dict[str, Any]:
        """Registry defaults of the model for the task (for example width, height, steps)."""
        return self.require_support(model_id, task).defaults()

    def validate_params(self, model_id: str, task: str, params: Mapping[str, Any]) -> None:
        """Check ``params`` against the registry constraints; raise listing every violation.

        Parameters the registry does not describe are not checked (the registry is not an
        exhaustive list of what an engine accepts). ``None`` values mean "not given".
        """
        spec = self.require_support(model_id, task)
        if params is None:
            return
        if not isinstance(params, Mapping):
            raise InvalidRequestError(
                f"params must be a dict of parameter values, got {type(params).__name__}.", param="params"
            )
        problems: list[tuple[str, str]] = []
        for name, value in params.items():
            constraint = spec.params.get(name)
            if constraint is None or value is None:
                continue
            why = constraint.violation(value)
            if why:
                problems.append((name, why))
        if problems:
            raise ParameterConstraintError(
                f"Invalid parameters for '{self.resolve(model_id)}' ({task}): "
                + "; ".join(w for _, w in problems)
                + ".",
                param=problems[0][0],
            )

    def to_dict(self, model_id: str) -> dict[str, Any]:
        return self.get(model_id).to_dict()
