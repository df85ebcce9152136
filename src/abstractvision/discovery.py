"""What models this machine has, found without any configuration and without loading weights.

:func:`discover_local_models` looks in two places:

- the Hugging Face cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
  ``~/.cache/huggingface/hub``): each ``models--ORG--NAME`` repo's current snapshot
  (``refs/main``), as the hub writes it (snapshot files are symlinks into ``blobs/``);
- a models folder (``models_dir=``, the ``models_dir`` setting or ``ABSTRACTVISION_MODELS_DIR``):
  Diffusers folders (with ``model_index.json``), single checkpoint files (``.gguf``,
  ``.safetensors``, ``.sft``, ``.ckpt``) and folders of stable-diffusion.cpp component files
  (a diffusion model next to its VAE/TAESD and text encoders).

Only ``model_index.json`` and the tensor-name headers of GGUF/safetensors files are read. Each
model gets its backend, tasks, size on disk and, where it can be matched (hub id, the
``_name_or_path`` of ``model_index.json``, the pipeline class), its capability-registry id.
Entries that cannot be used (a component file on its own, an incomplete download, an
unreadable or corrupt file) are listed in :attr:`Discovery.skipped` with the reason; nothing
here raises for a bad entry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

__all__ = [
    "Discovery",
    "LocalModel",
    "SkippedEntry",
    "discover_local_models",
    "hf_hub_cache_dir",
    "served_models_from_discovery",
]

MODELS_DIR_ENV = "ABSTRACTVISION_MODELS_DIR"
WEIGHT_SUFFIXES = (".gguf", ".safetensors", ".sft", ".ckpt")
#: roles of single weight files, read from their tensor names
_TEXT_ENCODERS = ("clip_l", "clip_g", "t5xxl", "llm")
_DECODERS = ("vae", "taesd")


@dataclass(frozen=True)
class LocalModel:
    """One usable model found on this machine.

    Attributes:
        name: the name it is served under (hub id, else folder/file basename).
        path: the folder or main file (never shown by a server).
        source: ``"hf_cache"`` or ``"models_dir"``.
        format: ``"diffusers"``, ``"checkpoint"`` (single file with every part) or
            ``"components"`` (a diffusion model with separate VAE and text encoders).
        backend: the built-in backend that runs it (``"diffusers"`` or ``"sdcpp"``).
        tasks: the tasks that backend runs with it.
        size_bytes: bytes on disk (blobs counted once).
        servable: everything it needs is there (see ``notes`` otherwise).
        hub_id: the Hugging Face repo id (cache entries).
        pipeline_class: ``model_index.json``'s ``_class_name`` (Diffusers).
        architecture: what the tensor names say (``flux``, ``sdxl``, ``sd1``...) for sd.cpp files.
        registry_id: the matching capability-registry model, when one matches unambiguously.
        registry_candidates: registry models with the same pipeline class.
        components: sd.cpp files by role (``diffusion_model``, ``vae``, ``clip_l``...).
        notes: what is missing or worth knowing.
    """

    name: str
    path: str
    source: str
    format: str
    backend: str
    tasks: tuple[str, ...]
    size_bytes: int
    servable: bool = True
    hub_id: Optional[str] = None
    pipeline_class: Optional[str] = None
    architecture: Optional[str] = None
    registry_id: Optional[str] = None
    registry_candidates: tuple[str, ...] = ()
    components: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """Backend settings that run this model (``backend``, ``model``, ``options``)."""
        if self.backend == "diffusers":
            return {"backend": "diffusers", "model": self.hub_id or self.path}
        if self.format == "checkpoint":
            return {"backend": "sdcpp", "model": self.path}
        return {"backend": "sdcpp", "options": dict(self.components)}

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["tasks"] = list(self.tasks)
        out["registry_candidates"] = list(self.registry_candidates)
        out["components"] = dict(self.components)
        out["notes"] = list(self.notes)
        return out


@dataclass(frozen=True)
class SkippedEntry:
    """Something that looked like a model but cannot be used, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class Discovery:
    """The result of :func:`discover_local_models`."""

    models: list[LocalModel] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)

    def for_task(self, task: str) -> list[LocalModel]:
        return [m for m in self.models if task in m.tasks]

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": [m.to_dict() for m in self.models],
            "skipped": [s.to_dict() for s in self.skipped],
            "searched": list(self.searched),
        }


# -- where to look -------------------------------------------------------------------------


def hf_hub_cache_dir(env: Optional[Mapping[str, str]] = None) -> Path:
    """The Hugging Face hub cache, as ``huggingface_hub`` resolves it."""
    env = os.environ if env is None else env
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path("~/.cache").expanduser()
    return base / "huggingface" / "hub"


def discover_local_models(
    *,
    models_dir: Optional[str] = None,
    hf_cache: Optional[str] = None,
    include_hf_cache: bool = True,
    registry: Any = None,
    env: Optional[Mapping[str, str]] = None,
) -> Discovery:
    """Every model usable on this machine (see the module docstring); never raises for a bad entry.

    Args:
        models_dir: the models folder (default: ``ABSTRACTVISION_MODELS_DIR``).
        hf_cache: the hub cache (default: :func:`hf_hub_cache_dir`).
        include_hf_cache: look in the hub cache at all.
        registry: the :class:`~abstractvision.VisionModelCapabilitiesRegistry` to match against.
        env: environment mapping (default ``os.environ``).
    """
    env = os.environ if env is None else env
    found = Discovery()
    matcher = _RegistryMatcher(registry)
    if include_hf_cache:
        cache = Path(hf_cache).expanduser() if hf_cache else hf_hub_cache_dir(env)
        if cache.is_dir():
            found.searched.append(str(cache))
            for item in _scan_hf_cache(cache, matcher):
                _add(found, item)
    folder = models_dir or env.get(MODELS_DIR_ENV)
    if folder:
        root = Path(folder).expanduser()
        found.searched.append(str(root))
        if not root.is_dir():
            found.skipped.append(SkippedEntry(str(root), "the models folder does not exist"))
        else:
            for item in _scan_models_dir(root, matcher):
                _add(found, item)
    return found


def _add(found: Discovery, item: Any) -> None:
    (found.models if isinstance(item, LocalModel) else found.skipped).append(item)


def served_models_from_discovery(found: Discovery, base: Any = None) -> list[Any]:
    """:class:`~abstractvision.served_models.ServedModel` s for the servable discovered models.

    ``base`` (resolved settings) contributes its machine-wide settings (device, dtype...).
    Two models with the same name: the first one found keeps it.
    """
    from .config import BackendSettings, override_settings
    from .served_models import ServedModel

    start = BackendSettings()
    if base is not None:
        for key in ("device", "dtype", "allow_download", "timeout_s"):
            setattr(start, key, getattr(base, key))
    out: dict[str, ServedModel] = {}
    for model in found.models:
        if model.servable and model.name not in out:
            settings = override_settings(start, model.settings(), source="discovery")
            out[model.name] = ServedModel(model.name, settings, registry_id=None)
    return list(out.values())


# -- the Hugging Face cache --------------------------------------------------------------------


def _scan_hf_cache(cache: Path, matcher: _RegistryMatcher) -> Iterator[Any]:
    for repo in sorted(_safe_listdir(cache)):
        if not repo.startswith("models--"):
            continue
        folder = cache / repo
        org_name = repo[len("models--") :]
        if "--" not in org_name:
            yield SkippedEntry(str(folder), "not a models--ORG--NAME repo folder")
            continue
        org, _, name = org_name.partition("--")
        hub_id = f"{org}/{name}"
        snapshot, why = _current_snapshot(folder)
        if snapshot is None:
            yield SkippedEntry(str(folder), why)
            continue
        missing = [p.name for p in _walk_files(snapshot) if p.is_symlink() and not p.exists()]
        if missing:
            yield SkippedEntry(
                str(folder),
                f"incomplete download: {len(missing)} file(s) missing ({', '.join(sorted(missing)[:3])}); "
                f"run `huggingface-cli download {hub_id}` again",
            )
            continue
        if (snapshot / "model_index.json").is_file():
            yield _diffusers_folder(snapshot, hub_id, hub_id, "hf_cache", matcher)
            continue
        files = [p for p in sorted(snapshot.iterdir()) if p.suffix.lower() in WEIGHT_SUFFIXES]
        if not files:
            yield SkippedEntry(
                str(folder), "no model_index.json and no weight file: not an image/video model"
            )
            continue
        yield from _files_model(snapshot, files, name_prefix=hub_id, source="hf_cache", hub_id=hub_id)


def _current_snapshot(repo: Path) -> tuple[Optional[Path], str]:
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    try:
        if ref.is_file():
            commit = ref.read_text(encoding="utf-8").strip()
            if commit and (snapshots / commit).is_dir():
                return snapshots / commit, ""
        candidates = [p for p in snapshots.iterdir() if p.is_dir()] if snapshots.is_dir() else []
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if not candidates:
        return None, "no snapshot: the download never finished"
    return max(candidates, key=lambda p: p.stat().st_mtime), ""


# -- a models folder ---------------------------------------------------------------------------


def _scan_models_dir(root: Path, matcher: _RegistryMatcher) -> Iterator[Any]:
    for entry in sorted(_safe_listdir(root)):
        path = root / entry
        if entry.startswith("."):
            continue
        try:
            if path.is_dir():
                if (path / "model_index.json").is_file():
                    yield _diffusers_folder(path, entry, None, "models_dir", matcher)
                    continue
                files = [p for p in sorted(path.iterdir()) if p.suffix.lower() in WEIGHT_SUFFIXES]
                if not files:
                    yield SkippedEntry(str(path), "no model_index.json and no weight file")
                    continue
                yield from _files_model(path, files, name_prefix=None, source="models_dir", folder_name=entry)
            elif path.suffix.lower() in WEIGHT_SUFFIXES:
                yield from _files_model(root, [path], name_prefix=None, source="models_dir")
        except OSError as exc:
            yield SkippedEntry(str(path), f"unreadable: {exc.strerror or exc}")


# -- Diffusers folders -------------------------------------------------------------------------


def _diffusers_folder(
    folder: Path, name: str, hub_id: Optional[str], source: str, matcher: _RegistryMatcher
) -> Any:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return SkippedEntry(str(folder), f"model_index.json does not parse: {exc}")
    class_name = index.get("_class_name") if isinstance(index, dict) else None
    if not isinstance(class_name, str) or not class_name:
        return SkippedEntry(str(folder), "model_index.json names no pipeline class (_class_name)")
    tasks, note = _pipeline_tasks(folder)
    origin = index.get("_name_or_path") if isinstance(index.get("_name_or_path"), str) else None
    registry_id, candidates = matcher.match(hub_id, origin, name, class_name)
    return LocalModel(
        name=name,
        path=str(folder),
        source=source,
        format="diffusers",
        backend="diffusers",
        tasks=tasks,
        size_bytes=_size(folder),
        servable=bool(tasks),
        hub_id=hub_id,
        pipeline_class=class_name,
        registry_id=registry_id,
        registry_candidates=candidates,
        notes=(note,) if note else (),
    )


def _pipeline_tasks(folder: Path) -> tuple[tuple[str, ...], str]:
    """The tasks the Diffusers backend runs with the pipeline in ``folder`` (the backend's own rule,
    from ``model_index.json`` and the denoiser's config)."""
    import importlib.util

    if importlib.util.find_spec("diffusers") is None:
        return (), 'install the diffusers extra (pip install "abstractvision[diffusers]") to run it'
    from .backends._diffusers.models import folder_family

    family = folder_family(str(folder))
    return tuple(family.tasks or ()), ""


# -- single files and sd.cpp component folders -------------------------------------------------


def _files_model(
    folder: Path,
    files: list[Path],
    *,
    name_prefix: Optional[str],
    source: str,
    hub_id: Optional[str] = None,
    folder_name: Optional[str] = None,
) -> Iterator[Any]:
    roles: dict[str, list[tuple[Path, Optional[str]]]] = {}
    for path in files:
        role, arch, why = _file_role(path)
        if role is None:
            yield SkippedEntry(str(path), why)
            continue
        roles.setdefault(role, []).append((path, arch))
    mains = roles.get("checkpoint", []) + roles.get("diffusion_model", [])
    if not mains:
        for role, items in roles.items():
            for path, _ in items:
                yield SkippedEntry(str(path), f"a {role} file, not a model on its own")
        return
    shared = {
        r: str(items[0][0]) for r, items in roles.items() if r in (*_DECODERS, *_TEXT_ENCODERS, "upscaler")
    }
    for path, arch in mains:
        if folder_name is not None and len(mains) == 1:
            name = folder_name
        elif name_prefix is not None:
            name = f"{name_prefix}/{path.name}"
        else:
            name = path.name
        is_checkpoint = (path, arch) in roles.get("checkpoint", [])
        components = {} if is_checkpoint else {"diffusion_model": str(path), **shared}
        notes: list[str] = []
        servable = True
        if not is_checkpoint:
            if not any(r in components for r in _DECODERS):
                servable = False
                notes.append("needs a VAE (or TAESD) file next to it")
            if not any(r in components for r in _TEXT_ENCODERS):
                servable = False
                notes.append("needs its text encoder files (clip_l, t5xxl...) next to it")
        size = sum(_file_size(Path(p)) for p in components.values()) if components else _file_size(path)
        yield LocalModel(
            name=name,
            path=str(path),
            source=source,
            format="checkpoint" if is_checkpoint else "components",
            backend="sdcpp",
            tasks=(
                "text_to_image",
                "image_to_image",
                *(("image_upscale",) if "upscaler" in components else ()),
            ),
            size_bytes=size,
            servable=servable,
            hub_id=hub_id,
            architecture=arch,
            components=components,
            notes=tuple(notes),
        )


def _file_role(path: Path) -> tuple[Optional[str], Optional[str], str]:
    """``(role, architecture, why-not)`` of one weight file, from its header."""
    from .backends._sdcpp.files import read_tensor_names
    from .errors import ModelLoadError

    try:
        info, names = read_tensor_names(path)
    except ModelLoadError as exc:
        return None, None, f"not a usable weight file: {exc}"
    if info.format not in ("gguf", "safetensors"):
        # a pickle would have to be executed to be read: treat a .ckpt as a full checkpoint
        return "checkpoint", None, ""
    role, arch = classify_tensor_names(names)
    if role is None:
        return None, None, "unrecognised tensor layout (not a diffusion model, VAE or text encoder)"
    return role, arch, ""


def classify_tensor_names(names: Iterable[str]) -> tuple[Optional[str], Optional[str]]:
    """``(role, architecture)`` of a weight file from its tensor names.

    Roles: ``checkpoint`` (diffusion model + VAE + text encoder in one file),
    ``diffusion_model``, ``vae``, ``taesd``, ``clip_l``, ``clip_g``, ``t5xxl``, ``llm``,
    ``lora``, ``upscaler``; ``None`` when nothing matches.
    """
    keys = list(names)
    text = "\n".join(keys)

    def has(*parts: str) -> bool:
        return all(p in text for p in parts)

    if any("lora_" in k or ".lora_A." in k or ".lora_down." in k for k in keys):
        return "lora", None
    dit = text.replace("model.diffusion_model.", "")
    arch = None
    if "double_blocks." in dit and "single_blocks." in dit:
        arch = "flux"
    elif "joint_blocks." in dit:
        arch = "sd3"
    elif "input_blocks." in dit and "output_blocks." in dit:
        arch = "sdxl" if has("conditioner.embedders.1") or "label_emb." in dit else "sd1"
    elif "patch_embedding." in dit and "blocks.0.self_attn" in dit:
        arch = "wan"
    elif "transformer_blocks." in dit and ("img_in." in dit or "x_embedder." in dit):
        arch = "dit"
    if arch is not None:
        full = has("first_stage_model.") and (
            has("cond_stage_model.") or has("conditioner.") or has("text_encoders.")
        )
        return ("checkpoint" if full else "diffusion_model"), arch
    if (has("encoder.down.") and has("decoder.up.")) or has("encoder.down_blocks.", "decoder.up_blocks."):
        return "vae", None
    if has("decoder.layers.") or (has("encoder.layers.") and not has("text_model.")):
        return "taesd", None
    if has("text_model.encoder.layers."):
        return ("clip_g" if "text_model.encoder.layers.31." in text else "clip_l"), None
    if has("encoder.block.") and ("shared.weight" in keys or has("encoder.final_layer_norm")):
        return "t5xxl", None
    if has("model.layers.") and has("embed_tokens"):
        return "llm", None
    if (has("conv_first.") and has("body.")) or has("model.0.weight"):
        return "upscaler", None
    return None, None


# -- the registry --------------------------------------------------------------------------------


class _RegistryMatcher:
    """Finds a discovered model's registry entry: by hub id, by ``_name_or_path``, by pipeline class."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry
        self._by_class: Optional[dict[str, list[str]]] = None

    def _reg(self) -> Any:
        if self._registry is None:
            from .model_capabilities import VisionModelCapabilitiesRegistry

            self._registry = VisionModelCapabilitiesRegistry()
        return self._registry

    def _resolve(self, candidate: Optional[str]) -> Optional[str]:
        if not candidate:
            return None
        try:
            return str(self._reg().resolve(candidate))
        except Exception:
            return None

    def _classes(self) -> dict[str, list[str]]:
        if self._by_class is None:
            reg = self._reg()
            table: dict[str, list[str]] = {}
            for model_id in reg.list_models():
                raw = reg.to_dict(model_id)
                pipeline = raw.get("diffusers_pipeline")
                if isinstance(pipeline, str):
                    table.setdefault(pipeline, []).append(model_id)
            self._by_class = table
        return self._by_class

    def match(
        self, hub_id: Optional[str], origin: Optional[str], name: str, class_name: str
    ) -> tuple[Optional[str], tuple[str, ...]]:
        candidates = tuple(self._classes().get(class_name, ()))
        for candidate in (hub_id, origin, name):
            found = self._resolve(candidate)
            if found is not None:
                return found, candidates
        return (candidates[0] if len(candidates) == 1 else None), candidates


# -- small helpers ---------------------------------------------------------------------------


def _safe_listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _walk_files(folder: Path) -> Iterator[Path]:
    for base, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            yield Path(base) / name


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _size(folder: Path) -> int:
    """Bytes on disk under ``folder``, following hub symlinks and counting each blob once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in _walk_files(folder):
        try:
            st = path.stat()
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            total += st.st_size
    return total
