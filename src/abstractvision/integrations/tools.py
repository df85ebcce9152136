"""Agent tools over the vision capability: every tool returns artifact refs, never bytes.

:func:`make_vision_tools` builds one :class:`VisionTool` per task (text-to-image,
image-to-image, upscale, text-to-video, image-to-video, multi-view). A tool's parameter
defaults come from the capability registry for the configured model (for example FLUX.1
schnell: 4 steps, guidance 0); the model's omitted arguments get those defaults at call
time. Image arguments are artifact ids or refs (or data URLs / base64); filesystem paths are
always refused, because tool arguments are written by a model.

Example::

    tools = make_vision_tools(capability)              # AbstractVisionCapability
    ref = tools[0](prompt="a red bicycle")             # {"$artifact": "...", ...}
    defs = [t.to_abstractcore() for t in tools]        # AbstractCore ToolDefinitions

The AbstractCore plugin registers these tools through
``CapabilityRegistry.register_capability_tools("vision", ...)``; hosts still decide whether
to give them to an agent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from .. import _params
from ..artifacts import is_artifact_ref
from ..errors import InvalidRequestError
from . import _inputs

__all__ = ["TOOL_TASKS", "VisionTool", "make_vision_tools"]

_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,256}$")

#: what an agent may set (from the table's rows for each task); the rest is the host's
_TOOL_PARAMS = (
    "prompt",
    "image",
    "mask",
    "reference_image",
    "angles",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "guidance_scale",
    "strength",
    "scale",
    "seed",
    "num_frames",
    "fps",
)
#: how a tool words what the table says (image inputs are artifact ids in a tool call)
_TOOL_DOCS = {
    "prompt": "What to generate, in detail.",
    "image": "Input image: an artifact id (or ref) from an earlier call.",
    "mask": "Optional inpainting mask artifact id (white = repaint).",
    "reference_image": "Optional reference image artifact id.",
    "steps": "Denoising steps (more: slower, finer).",
    "seed": "Seed for a reproducible result.",
}


def parameter_schema(name: str) -> dict[str, Any]:
    """A tool parameter's schema, from the parameter table row ``name`` (read now)."""
    row = _params.PARAMS[name]
    description: str = _TOOL_DOCS.get(name) or row["doc"]
    if row["type"] in ("text", "image"):
        return {"type": "string", "description": description}
    if row["type"] == "angles":
        return {
            "type": "array",
            "items": {"type": "string"},
            "maxItems": row["max_items"],
            "description": description,
        }
    return _params.json_schema(name, description=description)


@dataclass(frozen=True)
class _Spec:
    name: str
    task: str
    method: str
    description: str
    when_to_use: str
    many: bool = False

    @property
    def required(self) -> tuple[str, ...]:
        takes = _params.task_params(self.task)
        prompt = ("prompt",) if self.task in _params.PROMPT_REQUIRED else ()
        return (*prompt, *(("image",) if "image" in takes else ()))

    @property
    def optional(self) -> tuple[str, ...]:
        takes = _params.task_params(self.task)
        return tuple(n for n in takes if n in _TOOL_PARAMS and n not in self.required)

    @property
    def images(self) -> tuple[str, ...]:
        return tuple(n for n in (*self.required, *self.optional) if _params.PARAMS[n]["type"] == "image")


_SIZE = ("width", "height")
_BOUNDS = {"min": "minimum", "max": "maximum", "enum": "enum", "multiple_of": "multipleOf"}
_SPECS = (
    _Spec(
        "vision_generate_image", "text_to_image", "t2i",
        "Generate an image from a text prompt; returns an artifact ref.",
        "When the user asks for a new picture, illustration or photo from a description.",
    ),
    _Spec(
        "vision_edit_image", "image_to_image", "i2i",
        "Edit an existing image artifact from a text instruction (optional mask); returns an artifact ref.",
        "When the user wants changes to an image they already have (style, content, inpainting).",
    ),
    _Spec(
        "vision_upscale_image", "image_upscale", "upscale_image",
        "Upscale an image artifact to a higher resolution; returns an artifact ref.",
        "When an image must be larger or sharper without changing its content.",
    ),
    _Spec(
        "vision_generate_video", "text_to_video", "t2v",
        "Generate a short video from a text prompt; returns an artifact ref.",
        "When the user asks for an animation or video clip from a description.",
    ),
    _Spec(
        "vision_image_to_video", "image_to_video", "i2v",
        "Animate an image artifact into a short video; returns an artifact ref.",
        "When the user wants an existing image to move or become a video clip.",
    ),
    _Spec(
        "vision_multi_view_image", "multi_view_image", "multi_view_image",
        "Render one subject from several camera angles; returns a list of artifact refs.",
        "When consistent views of one object or character are needed (turnarounds, 3D references).",
        many=True,
    ),
)  # fmt: skip

#: Task names the tools cover, in order.
TOOL_TASKS: tuple[str, ...] = tuple(s.task for s in _SPECS)


@dataclass(frozen=True)
class VisionTool:
    """One agent tool: a callable plus the metadata a tool-calling host needs.

    ``parameters`` uses AbstractCore's ``ToolDefinition`` shape (``{name: {"type",
    "description", "default"?}}``; a parameter without ``default`` is required).
    """

    name: str
    description: str
    when_to_use: str
    task: str
    parameters: dict[str, dict[str, Any]]
    function: Callable[..., Any] = field(repr=False, compare=False)
    tags: tuple[str, ...] = ("vision", "generation")

    def __call__(self, **arguments: Any) -> Any:
        return self.function(**arguments)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (name, description, when_to_use, parameters, required_args)."""
        required = sorted(k for k, v in self.parameters.items() if "default" not in v)
        return {
            "name": self.name,
            "description": self.description,
            "when_to_use": self.when_to_use,
            "parameters": {k: dict(v) for k, v in self.parameters.items()},
            "required_args": required,
            "tags": list(self.tags),
        }

    def to_abstractcore(self) -> Any:
        """An ``abstractcore.tools.core.ToolDefinition`` (imports AbstractCore, only now)."""
        from abstractcore.tools.core import ToolDefinition

        return ToolDefinition(
            name=self.name,
            description=self.description,
            parameters={k: dict(v) for k, v in self.parameters.items()},
            function=self.function,
            tags=list(self.tags),
            when_to_use=self.when_to_use,
        )


def _image_argument(value: Any, *, name: str, store: Any) -> Union[bytes, dict[str, Any]]:
    """A tool's image argument: an artifact id/ref, or inline data; never a path."""
    if is_artifact_ref(value):
        return dict(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") or _inputs.decode_base64_image(text) is not None:
            return _inputs.resolve_image_input(text, name=name, store=store, allow_local_paths=False)
        if _ID_RE.match(text):
            return {"$artifact": text}
    raise InvalidRequestError(
        f"{name}: expected an artifact id or ref from an earlier vision call (or a data URL); "
        "file paths are not accepted in tool calls.",
        param=name,
    )


def make_vision_tools(
    capability: Any,
    *,
    artifact_store: Any = None,
    tasks: Optional[Any] = None,
    defaults: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> list[VisionTool]:
    """Build the vision agent tools.

    Args:
        capability: an :class:`~abstractvision.integrations.capability.AbstractVisionCapability`
            (or any object with the same task methods), or a zero-argument callable returning
            one (resolved at each call; the AbstractCore plugin passes ``registry.get_vision``).
        artifact_store: where outputs are written (a MediaStore or an AbstractRuntime
            ``ArtifactStore``); default: the capability's ``default_store()``.
        tasks: restrict to these task names; default: every task the capability's backend
            runs (all tools when ``capability`` is a callable).
        defaults: per-task parameter defaults overriding the registry's.
    """
    lazy = callable(capability) and not hasattr(capability, "t2i")

    def resolve() -> Any:
        return capability() if lazy else capability

    if tasks is None:
        supported = getattr(capability, "supported_tasks", None)
        tasks = supported() if not lazy and callable(supported) else TOOL_TASKS
    wanted = set(tasks)

    def registry_defaults(cap: Any, task: str) -> dict[str, Any]:
        getter = getattr(cap, "task_defaults", None)
        found = dict(getter(task)) if callable(getter) else {}
        found.update((defaults or {}).get(task, {}))
        return found

    tools = []
    for spec in _SPECS:
        if spec.task not in wanted:
            continue
        known = {} if lazy else registry_defaults(capability, spec.task)
        if "image" in spec.required:
            known = {k: v for k, v in known.items() if k not in _SIZE}
        limits = {} if lazy else _limits(capability, spec.task)
        parameters = {name: parameter_schema(name) for name in spec.required}
        for name in spec.optional:
            parameters[name] = {**parameter_schema(name), **limits.get(name, {}), "default": known.get(name)}
        tools.append(
            VisionTool(
                name=spec.name,
                description=spec.description,
                when_to_use=spec.when_to_use,
                task=spec.task,
                parameters=parameters,
                function=_tool_function(spec, resolve, artifact_store, registry_defaults),
            )
        )
    return tools


def _limits(capability: Any, task: str) -> dict[str, dict[str, Any]]:
    """JSON Schema bounds (``minimum``, ``maximum``, ``enum``) from the registry constraints."""
    getter = getattr(capability, "task_constraints", None)
    out: dict[str, dict[str, Any]] = {}
    for name, spec in (getter(task) if callable(getter) else {}).items():
        bounds = {key: spec[src] for src, key in _BOUNDS.items() if spec.get(src) is not None}
        if bounds:
            out[name] = bounds
    return out


def _tool_function(
    spec: _Spec,
    resolve: Callable[[], Any],
    artifact_store: Any,
    registry_defaults: Callable[[Any, str], dict[str, Any]],
) -> Callable[..., Any]:
    allowed = set(spec.required) | set(spec.optional)

    def run(**arguments: Any) -> Any:
        unknown = sorted(set(arguments) - allowed)
        if unknown:
            raise InvalidRequestError(
                f"{spec.name}: unknown argument(s) {unknown}; accepted: {sorted(allowed)}.", param=unknown[0]
            )
        missing = [name for name in spec.required if arguments.get(name) in (None, "")]
        if missing:
            raise InvalidRequestError(
                f"{spec.name}: missing required argument(s) {missing}.", param=missing[0]
            )
        cap = resolve()
        store = artifact_store if artifact_store is not None else cap.default_store()
        media_store = _inputs.as_media_store(store)
        call = {k: v for k, v in arguments.items() if v is not None}
        for name, value in registry_defaults(cap, spec.task).items():
            if name in _SIZE and "image" in spec.required:
                continue  # the input image decides the size unless the model asks for one
            if name in spec.optional and call.get(name) is None and value is not None:
                call[name] = value
        for name in spec.images:
            if name in call:
                call[name] = _image_argument(call[name], name=name, store=media_store)
        if isinstance(call.get("angles"), str):
            call["angles"] = [a.strip() for a in call["angles"].split(",") if a.strip()]
        method = getattr(cap, spec.method, None)
        if not callable(method):
            raise InvalidRequestError(f"The vision capability in use has no {spec.method}() for {spec.task}.")
        positional = [call.pop(name) for name in spec.required]
        out = method(
            *positional, artifact_store=store, tags={"source": "agent_tool", "tool": spec.name}, **call
        )
        return list(out) if spec.many else out

    run.__name__ = spec.name
    run.__doc__ = spec.description
    return run
