"""The capability registry: schema validation, content, overrides and constraints."""

from __future__ import annotations

import copy
import json

import pytest

from abstractvision import VisionModelCapabilitiesRegistry
from abstractvision._jsonschema import validate as mini_validate
from abstractvision.errors import (
    CapabilityNotSupportedError,
    CapabilityRegistryError,
    InvalidRequestError,
    ParameterConstraintError,
    UnknownModelError,
)
from abstractvision.model_capabilities import _read_asset, load_schema

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def doc():
    return _read_asset("vision_model_capabilities.json")


def test_packaged_registry_is_valid_for_the_real_jsonschema_validator(doc):
    jsonschema.Draft202012Validator.check_schema(load_schema())
    jsonschema.validate(doc, load_schema())
    assert mini_validate(doc, load_schema()) == []


def _mutations(doc):
    model = "runwayml/stable-diffusion-v1-5"
    cases = []

    def mutate(fn):
        d = copy.deepcopy(doc)
        fn(d)
        cases.append(d)

    mutate(lambda d: d.pop("models"))
    mutate(lambda d: d["models"][model].pop("license"))
    mutate(lambda d: d["models"][model].update(provider=""))
    mutate(lambda d: d["models"][model].update(colour="red"))
    mutate(lambda d: d["models"][model]["tasks"]["text_to_image"].update(outputs=["sound"]))
    mutate(lambda d: d["models"][model]["tasks"]["text_to_image"]["params"]["steps"].update(required="yes"))
    mutate(lambda d: d["models"][model]["tasks"]["text_to_image"]["params"]["steps"].update(multiple_of=0))
    mutate(lambda d: d["models"][model]["tasks"]["text_to_image"]["params"]["steps"].update(min="1"))
    mutate(lambda d: d.update(schema_version=2))
    mutate(lambda d: d["tasks"].update({"Bad Name": {"description": "x"}}))
    mutate(lambda d: d["models"][model].update(backends=["comfy"]))
    return cases


def test_mini_validator_agrees_with_jsonschema_on_broken_documents(doc):
    validator = jsonschema.Draft202012Validator(load_schema())
    for broken in _mutations(doc):
        assert list(validator.iter_errors(broken)), "jsonschema should reject the mutation"
        assert mini_validate(broken, load_schema()), "the built-in validator should reject it too"


def _write(tmp_path, data, name="reg.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_bad_registry_files_are_rejected_with_useful_messages(tmp_path, doc):
    d = copy.deepcopy(doc)
    d["models"]["runwayml/stable-diffusion-v1-5"].pop("license")
    with pytest.raises(
        CapabilityRegistryError, match=r"\['runwayml/stable-diffusion-v1-5'\]: missing required key 'license'"
    ):
        VisionModelCapabilitiesRegistry(asset_path=_write(tmp_path, d))

    d = copy.deepcopy(doc)
    d["models"]["dall-e-3"]["tasks"]["text_to_sound"] = d["models"]["dall-e-3"]["tasks"]["text_to_image"]
    with pytest.raises(CapabilityRegistryError, match="unknown task 'text_to_sound'"):
        VisionModelCapabilitiesRegistry(asset_path=_write(tmp_path, d))

    d = copy.deepcopy(doc)
    d["models"]["black-forest-labs/FLUX.1-schnell"]["tasks"]["text_to_image"]["params"]["steps"][
        "default"
    ] = 50
    with pytest.raises(CapabilityRegistryError, match="default breaks its own constraint"):
        VisionModelCapabilitiesRegistry(asset_path=_write(tmp_path, d))

    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(CapabilityRegistryError, match="not valid JSON"):
        VisionModelCapabilitiesRegistry(asset_path=bad)
    with pytest.raises(CapabilityRegistryError, match="not found"):
        VisionModelCapabilitiesRegistry(asset_path=tmp_path / "missing.json")


REQUIRED_FAMILIES = {
    "runwayml/stable-diffusion-v1-5": {"text_to_image", "image_to_image"},
    "stabilityai/stable-diffusion-xl-base-1.0": {"text_to_image"},
    "stabilityai/stable-diffusion-3.5-large": {"text_to_image"},
    "black-forest-labs/FLUX.1-schnell": {"text_to_image"},
    "black-forest-labs/FLUX.1-dev": {"text_to_image"},
    "black-forest-labs/FLUX.2-dev": {"text_to_image", "image_to_image"},
    "Qwen/Qwen-Image": {"text_to_image"},
    "Qwen/Qwen-Image-Edit": {"image_to_image"},
    "stabilityai/stable-diffusion-x4-upscaler": {"image_upscale"},
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": {"text_to_video"},
    "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers": {"image_to_video"},
    "Wan-AI/Wan2.2-T2V-A14B-Diffusers": {"text_to_video"},
    "Wan-AI/Wan2.2-I2V-A14B-Diffusers": {"image_to_video"},
    "Lightricks/LTX-Video": {"text_to_video", "image_to_video"},
    "THUDM/CogVideoX-2b": {"text_to_video"},
    "gpt-image-1": {"text_to_image", "image_to_image"},
    "gpt-image-1.5": {"text_to_image", "image_to_image"},
    "dall-e-2": {"text_to_image", "image_to_image"},
    "dall-e-3": {"text_to_image"},
}


def test_registry_content_covers_the_real_model_families():
    reg = VisionModelCapabilitiesRegistry()
    for model_id, tasks in REQUIRED_FAMILIES.items():
        assert tasks <= set(reg.get(model_id).tasks), model_id
    assert reg.models_for_task("multi_view_image"), "at least one multi-view model"
    for model_id in reg.list_models():
        assert "http" in reg.get(model_id).notes, f"{model_id}: notes must cite a source"
    assert "dall-e-3" not in reg.models_for_task("image_to_image")
    assert reg.defaults("runwayml/stable-diffusion-v1-5", "text_to_image")["width"] == 512
    assert reg.defaults("black-forest-labs/FLUX.1-schnell", "text_to_image")["steps"] == 4


def test_seed_registry_example():
    reg = VisionModelCapabilitiesRegistry()
    assert reg.list_tasks() == sorted(
        [
            "text_to_image",
            "image_to_image",
            "image_upscale",
            "multi_view_image",
            "text_to_video",
            "image_to_video",
        ]
    )
    assert "runwayml/stable-diffusion-v1-5" in reg.models_for_task("text_to_image")
    reg.require_support("runwayml/stable-diffusion-v1-5", "text_to_image")


def test_require_support_errors():
    reg = VisionModelCapabilitiesRegistry()
    with pytest.raises(UnknownModelError, match="Did you mean: dall-e-3"):
        reg.require_support("dall-e-33", "text_to_image")
    with pytest.raises(CapabilityNotSupportedError) as info:
        reg.require_support("dall-e-3", "image_to_image")
    assert info.value.supported == ["text_to_image"]
    with pytest.raises(InvalidRequestError, match="Unknown task"):
        reg.require_support("dall-e-3", "text_to_sound")
    with pytest.raises(InvalidRequestError, match="Unknown task"):
        reg.models_for_task("paint")
    assert reg.supports("dall-e-3", "text_to_image") and not reg.supports("nope", "text_to_image")
    assert reg.get("SD15").model_id == "runwayml/stable-diffusion-v1-5"  # alias, case-insensitive


def test_constraints():
    reg = VisionModelCapabilitiesRegistry()
    reg.validate_params("dall-e-3", "text_to_image", {"size": "1792x1024", "n": 1, "quality": "hd"})
    with pytest.raises(ParameterConstraintError, match="not one of") as info:
        reg.validate_params("dall-e-3", "text_to_image", {"size": "512x512"})
    assert info.value.param == "size"
    with pytest.raises(ParameterConstraintError, match="above the maximum 1"):
        reg.validate_params("dall-e-3", "text_to_image", {"n": 2})
    with pytest.raises(ParameterConstraintError, match="multiple of 8"):
        reg.validate_params("runwayml/stable-diffusion-v1-5", "text_to_image", {"width": 500})
    with pytest.raises(ParameterConstraintError, match="must be a number"):
        reg.validate_params("runwayml/stable-diffusion-v1-5", "text_to_image", {"steps": "ten"})
    reg.validate_params(
        "runwayml/stable-diffusion-v1-5", "text_to_image", {"unlisted_param": 1, "width": None}
    )


def test_override_file_is_merged_on_top(tmp_path, monkeypatch):
    override = {
        "models": {
            "my-org/my-model": {
                "provider": "huggingface",
                "license": "mit",
                "notes": "local finetune, see https://example.invalid/card",
                "tasks": {
                    "text_to_image": {
                        "inputs": ["text"],
                        "outputs": ["image"],
                        "params": {"steps": {"required": False, "max": 10}},
                    }
                },
            },
            "dall-e-2": None,
            "dall-e-3": {"license": "custom"},
        }
    }
    monkeypatch.setenv("ABSTRACTVISION_CAPABILITIES_PATH", str(_write(tmp_path, override)))
    reg = VisionModelCapabilitiesRegistry()
    assert reg.supports("my-org/my-model", "text_to_image")
    assert "dall-e-2" not in reg.list_models()
    assert reg.get("dall-e-3").license == "custom" and reg.supports("dall-e-3", "text_to_image")
    with pytest.raises(ParameterConstraintError):
        reg.validate_params("my-org/my-model", "text_to_image", {"steps": 11})
    assert VisionModelCapabilitiesRegistry(use_env=False).supports("dall-e-2", "text_to_image")


def test_invalid_override_is_rejected(tmp_path):
    with pytest.raises(CapabilityRegistryError, match="unknown top-level key"):
        VisionModelCapabilitiesRegistry(override_path=_write(tmp_path, {"modles": {}}))
    bad = {
        "models": {
            "x": {"provider": "p", "license": "l", "notes": "n", "tasks": {"text_to_image": {"inputs": []}}}
        }
    }
    with pytest.raises(CapabilityRegistryError, match="missing required key 'outputs'"):
        VisionModelCapabilitiesRegistry(override_path=_write(tmp_path, bad))


def test_to_dict_is_json_safe():
    reg = VisionModelCapabilitiesRegistry()
    for model_id in reg.list_models():
        json.dumps(reg.to_dict(model_id))
