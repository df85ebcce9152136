"""The public surface: exact exports, lazy backends, a light import path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import abstractvision

SEED_EXPORTS = {
    "VisionManager",
    "ProviderModelInfo",
    "VisionModelCapabilitiesRegistry",
    "LocalAssetStore",
    "RuntimeArtifactStoreAdapter",
    "is_artifact_ref",
    "__version__",
}
OUR_ADDITIONS = {
    "AsyncVisionManager",
    "GeneratedAsset",
    "PreviewEvent",
    "ProgressEvent",
    "make_media_ref",
    "AbstractVisionError",
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "BackendNotConfiguredError",
    "CapabilityNotSupportedError",
    "GenerationCancelledError",
    "GenerationTimeoutError",
    "InvalidRequestError",
    "OptionalDependencyMissingError",
    "ProviderError",
    "UnknownModelError",
}


def test_all_is_exact_and_sorted():
    assert set(abstractvision.__all__) == SEED_EXPORTS | OUR_ADDITIONS
    assert abstractvision.__all__ == sorted(abstractvision.__all__)


def test_every_export_resolves_and_comes_from_its_module():
    import abstractvision.artifacts as artifacts
    import abstractvision.errors as errors
    import abstractvision.types as types

    for name in abstractvision.__all__:
        assert getattr(abstractvision, name) is not None, name
    # the version the package says is the one it was installed as (pyproject.toml's)
    import importlib.metadata
    import re
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    declared = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert declared and abstractvision.__version__ == declared.group(1)
    assert importlib.metadata.version("abstractvision") == abstractvision.__version__
    assert abstractvision.LocalAssetStore is artifacts.LocalAssetStore
    assert abstractvision.make_media_ref is artifacts.make_media_ref
    assert abstractvision.GeneratedAsset is types.GeneratedAsset
    assert abstractvision.UnknownModelError is errors.UnknownModelError
    assert set(dir(abstractvision)) >= set(abstractvision.__all__)


def test_unknown_attribute_raises_attribute_error():
    import pytest

    with pytest.raises(AttributeError):
        abstractvision.DoesNotExist  # noqa: B018


def test_errors_module_exports_a_single_tree():
    import abstractvision.errors as errors

    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, errors.AbstractVisionError), name
    assert issubclass(errors.InvalidRequestError, ValueError)
    assert issubclass(errors.OptionalDependencyMissingError, ImportError)
    for cls in (
        "BackendNotConfiguredError",
        "CapabilityNotSupportedError",
        "UnknownModelError",
        "OptionalDependencyMissingError",
    ):
        assert cls in errors.__doc__


def test_backends_module_lazily_exposes_the_three_backends():
    import abstractvision.backends as backends

    assert set(backends.__all__) >= {
        "VisionBackend",
        "OpenAICompatibleBackendConfig",
        "OpenAICompatibleVisionBackend",
        "HuggingFaceDiffusersBackendConfig",
        "HuggingFaceDiffusersVisionBackend",
        "StableDiffusionCppBackendConfig",
        "StableDiffusionCppVisionBackend",
    }
    for name in backends.__all__:
        assert getattr(backends, name) is not None


def _modules_after(code: str) -> list[str]:
    probe = (
        code
        + "\nimport sys, json\n"
        + "print(json.dumps(sorted(m for m in ('torch','diffusers','transformers','PIL','numpy','httpx','asyncio','stable_diffusion_cpp') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_abstractvision_is_light():
    assert _modules_after("import abstractvision") == []


def test_using_the_core_api_stays_free_of_engines():
    loaded = _modules_after(
        "import abstractvision as av\n"
        "av.VisionManager; av.LocalAssetStore; av.VisionModelCapabilitiesRegistry().list_tasks()\n"
        "import abstractvision.backends"
    )
    assert loaded == []


def _loaded(code: str, names: tuple[str, ...]) -> list[str]:
    probe = code + f"\nimport sys, json\nprint(json.dumps(sorted(m for m in {names!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


_ENGINES = ("torch", "diffusers", "transformers", "PIL", "numpy", "httpx", "httpcore", "stable_diffusion_cpp")


def test_first_real_use_imports_no_engine_no_http_no_asyncio():
    """`from abstractvision import VisionManager, LocalAssetStore` (issue 18): the manager and
    the store, without engines, HTTP, asyncio, or what only a call needs (the registry's
    importlib.resources with tempfile/shutil, inspect via dataclasses, hashlib...)."""
    heavy = (*_ENGINES, "asyncio", "inspect", "dataclasses", "importlib.resources", "tempfile", "shutil")
    assert _loaded("from abstractvision import VisionManager, LocalAssetStore", heavy) == []


def test_importing_the_openai_backend_defers_httpx_and_asyncio():
    """Importing the backend and its config loads no HTTP stack: httpx (with its CLI extras),
    httpcore and asyncio are imported when a backend is built or a request is sent."""
    code = (
        "from abstractvision import VisionManager, LocalAssetStore\n"
        "from abstractvision.backends import OpenAICompatibleVisionBackend, OpenAICompatibleBackendConfig"
    )
    assert _loaded(code, (*_ENGINES, "asyncio", "importlib.resources")) == []


def test_the_lazy_default_embed_policy_matches_validation():
    """ManagerCore spells the default embed policy as a literal (so that _validation loads on
    first use); it must stay the validation module's default."""
    import inspect

    from abstractvision import _validation
    from abstractvision._core import ManagerCore

    default = inspect.signature(ManagerCore.__init__).parameters["embed_metadata"].default
    assert default == _validation.DEFAULT_EMBED_METADATA


def test_lazily_defined_request_types_are_real_dataclasses():
    """types.py builds its classes with _dataclass (cheaper to define); dataclasses' API works."""
    import dataclasses

    from abstractvision.types import GeneratedAsset, ImageGenerationRequest, LoRAAdapterSpec, ProgressEvent

    req = ImageGenerationRequest(prompt="a cat", width=64, lora_adapters=(LoRAAdapterSpec("x"),))
    assert dataclasses.is_dataclass(req)
    assert [f.name for f in dataclasses.fields(req)][:3] == ["prompt", "negative_prompt", "width"]
    assert dataclasses.replace(req, width=32).width == 32
    assert dataclasses.replace(req, width=32).prompt == "a cat"
    assert req == ImageGenerationRequest(prompt="a cat", width=64, lora_adapters=(LoRAAdapterSpec("x"),))
    assert req != dataclasses.replace(req, seed=1)
    # compare=False fields do not count; repr=False fields are not shown
    assert req == dataclasses.replace(req, on_progress=print)
    assert "on_progress" not in repr(req) and repr(req).startswith("ImageGenerationRequest(prompt='a cat'")
    assert repr(GeneratedAsset("image", b"x", "image/png")) == (
        "GeneratedAsset(media_type='image', mime_type='image/png', metadata={})"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.width = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del req.width  # type: ignore[misc]
    assert hash(LoRAAdapterSpec("x", 0.5)) == hash(LoRAAdapterSpec("x", 0.5))
    assert ImageGenerationRequest(prompt="a").extra is not ImageGenerationRequest(prompt="a").extra
    assert dataclasses.asdict(ProgressEvent("text_to_image", "step", raw={"a": 1}))["raw"] == {"a": 1}
    with pytest.raises(TypeError):
        ImageGenerationRequest()  # type: ignore[call-arg]
