"""The public surface: exact exports, lazy backends, a light import path."""

from __future__ import annotations

import json
import subprocess
import sys

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
