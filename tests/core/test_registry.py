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
        assert reg.get(model_id).source.startswith("https://"), f"{model_id}: must cite a source"
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


# -- issue 17: the registry covers the field, and every claim maps to something that runs ---------

#: Every model id of the peer library's registry (abstractvision 0.3.34 on PyPI), except its
#: Apple-MLX-only entries (prism-ml/bonsai-image-ternary-4B-mlx-2bit and the briaai/FIBO family).
PEER_0_3_34 = [
    "baidu/ERNIE-Image",
    "baidu/ERNIE-Image-Turbo",
    "black-forest-labs/FLUX.1-dev",
    "black-forest-labs/FLUX.1-schnell",
    "black-forest-labs/FLUX.2-dev",
    "black-forest-labs/FLUX.1-Kontext-dev",
    "black-forest-labs/FLUX.1-Canny-dev",
    "black-forest-labs/FLUX.1-Depth-dev",
    "black-forest-labs/FLUX.1-Fill-dev",
    "black-forest-labs/FLUX.1-Krea-dev",
    "black-forest-labs/FLUX.2-klein-4B",
    "black-forest-labs/FLUX.2-klein-base-4B",
    "black-forest-labs/FLUX.2-klein-9B",
    "black-forest-labs/FLUX.2-klein-base-9B",
    "genmo/mochi-1-preview",
    "Lightricks/LTX-2",
    "playgroundai/playground-v2-1024px-aesthetic",
    "playgroundai/playground-v2.5-1024px-aesthetic",
    "Qwen/Qwen-Image",
    "Qwen/Qwen-Image-2512",
    "Qwen/Qwen-Image-Edit",
    "Qwen/Qwen-Image-Edit-2509",
    "Qwen/Qwen-Image-Edit-2511",
    "timbrooks/instruct-pix2pix",
    "diffusers/sdxl-instructpix2pix-768",
    "CompVis/stable-diffusion-v1-4",
    "runwayml/stable-diffusion-v1-5",
    "runwayml/stable-diffusion-inpainting",
    "stabilityai/sd-turbo",
    "stabilityai/sdxl-turbo",
    "stabilityai/stable-cascade",
    "stabilityai/stable-diffusion-x4-upscaler",
    "stabilityai/stable-diffusion-3-medium-diffusers",
    "stabilityai/stable-diffusion-3.5-large",
    "stabilityai/stable-diffusion-3.5-large-turbo",
    "stabilityai/stable-diffusion-3.5-medium",
    "stabilityai/stable-diffusion-xl-base-1.0",
    "stabilityai/stable-diffusion-xl-refiner-1.0",
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
    "tencent/HunyuanImage-3.0",
    "tencent/HunyuanImage-3.0-Instruct",
    "tencent/HunyuanImage-3.0-Instruct-Distil",
    "tencent/HunyuanVideo-1.5",
    "Tongyi-MAI/Z-Image",
    "Tongyi-MAI/Z-Image-Turbo",
    "Wan-AI/Wan2.2-T2V-A14B",
    "Wan-AI/Wan2.2-I2V-A14B",
    "zai-org/GLM-Image",
    "HiDream-ai/HiDream-I1-Full",
    "Kwai-Kolors/Kolors-diffusers",
    "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
    "Alpha-VLLM/Lumina-Image-2.0",
    "HiDream-ai/HiDream-O1-Image",
    "Shitao/OmniGen-v1-diffusers",
    "black-forest-labs/FLUX.2-klein-9b-kv",
    "ByteDance-Seed/SeedVR2-3B",
    "ByteDance-Seed/SeedVR2-7B",
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    "stabilityai/stable-video-diffusion-img2vid-xt-1-1",
    "zai-org/CogVideoX-2b",
    "zai-org/CogVideoX1.5-5B",
    "zai-org/CogVideoX1.5-5B-I2V",
    "zai-org/CogView4-6B",
]

#: Current families issue 17 names, each by one model id of the family.
CURRENT_FAMILIES = {
    "black-forest-labs/FLUX.1-Fill-dev": "flux-1-fill",
    "black-forest-labs/FLUX.1-Kontext-dev": "flux-1-kontext",
    "black-forest-labs/FLUX.1-Krea-dev": "flux-1",
    "lodestones/Chroma1-HD": "chroma",
    "HiDream-ai/HiDream-I1-Full": "hidream",
    "Efficient-Large-Model/Sana_1600M_1024px_diffusers": "sana",
    "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS": "pixart",
    "Alpha-VLLM/Lumina-Image-2.0": "lumina",
    "zai-org/CogView4-6B": "cogview",
    "Kwai-Kolors/Kolors-diffusers": "kolors",
    "playgroundai/playground-v2.5-1024px-aesthetic": "playground",
    "stabilityai/sdxl-turbo": "stable-diffusion-xl",
    "stabilityai/sd-turbo": "stable-diffusion-2",
    "stabilityai/stable-diffusion-3-medium-diffusers": "stable-diffusion-3",
    "hunyuanvideo-community/HunyuanVideo": "hunyuan-video",
    "genmo/mochi-1-preview": "mochi",
    "Lightricks/LTX-Video": "ltx-video",
    "stabilityai/stable-video-diffusion-img2vid-xt-1-1": "stable-video-diffusion",
    "ByteDance-Seed/SeedVR2-3B": "seedvr2",
    "sora-2": "sora",
    "sora-2-pro": "sora",
    "gpt-image-1": "gpt-image",
}


def test_registry_covers_the_peer_registry_and_the_current_families():
    reg = VisionModelCapabilitiesRegistry()
    assert len(PEER_0_3_34) == 63  # 68 entries less 5 MLX-only ones
    missing = [model_id for model_id in PEER_0_3_34 if model_id not in reg]
    assert not missing, f"peer models missing from the registry: {missing}"
    for model_id, family in CURRENT_FAMILIES.items():
        assert reg.get(model_id).family == family, model_id


def test_every_entry_cites_a_source_and_has_license_tasks_and_defaults():
    reg = VisionModelCapabilitiesRegistry()
    for model_id in reg.list_models():
        spec = reg.get(model_id)
        assert spec.source.startswith("https://"), model_id
        assert spec.license and spec.tasks and spec.notes, model_id
        for task, tspec in spec.tasks.items():
            if spec.provider == "huggingface" and task != "multi_view_image":
                assert tspec.defaults(), f"{model_id} {task}: no defaults"
        assert spec.backends or spec.runs_with, f"{model_id}: says neither which backend nor what runs it"


def test_each_diffusers_entry_maps_to_a_pipeline_class_and_its_tasks_run():
    """Each Diffusers entry names a class diffusers has, and the backend's family table gives
    that class (at least) the tasks and mask handling the registry claims."""
    diffusers = pytest.importorskip("diffusers")
    from abstractvision.backends._diffusers.families import classify_pipeline

    reg = VisionModelCapabilitiesRegistry()
    checked = 0
    for model_id in reg.list_models(backend="diffusers"):
        spec = reg.get(model_id)
        assert spec.diffusers_pipeline and hasattr(diffusers, spec.diffusers_pipeline), model_id
        # the published model_index.json of Wan 2.2 TI2V sets expand_timesteps
        index = {"expand_timesteps": True} if "TI2V" in model_id else {}
        family = classify_pipeline(spec.diffusers_pipeline, index=index)
        assert set(spec.tasks) <= set(family.tasks or ()), (model_id, family.tasks)
        for tspec in spec.tasks.values():
            if "mask" in tspec.inputs:
                assert family.supports_mask, model_id
            mask = tspec.params.get("mask")
            if mask is not None and mask.required:
                assert family.mask_required or "Inpaint" in spec.diffusers_pipeline, model_id
        checked += 1
    assert checked >= 60


def test_sdcpp_entries_name_their_components_as_config_fields():
    from dataclasses import fields

    from abstractvision.backends.stable_diffusion_cpp import StableDiffusionCppBackendConfig

    names = {f.name for f in fields(StableDiffusionCppBackendConfig)}
    reg = VisionModelCapabilitiesRegistry()
    sdcpp = reg.list_models(backend="sdcpp")
    assert len(sdcpp) >= 25
    for model_id in sdcpp:
        components = reg.get(model_id).sdcpp_components
        assert components and set(components) <= names, model_id
        assert {"model", "diffusion_model"} & set(components), f"{model_id}: no weights file"


def test_models_no_builtin_backend_runs_say_what_does():
    reg = VisionModelCapabilitiesRegistry()
    for model_id in ("sudo-ai/zero123plus-v1.2", "huanngzh/mv-adapter", "ByteDance-Seed/SeedVR2-7B"):
        spec = reg.get(model_id)
        assert spec.backends == () and spec.runs_with, model_id
    assert "custom VisionBackend" in reg.get("sudo-ai/zero123plus-v1.2").runs_with
    assert not set(reg.list_models(backend="diffusers")) & set(reg.models_for_task("multi_view_image"))


def test_frame_rules_and_other_constraints():
    reg = VisionModelCapabilitiesRegistry()
    reg.validate_params("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "text_to_video", {"num_frames": 81})
    with pytest.raises(ParameterConstraintError, match="must be 4k\\+1"):
        reg.validate_params("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "text_to_video", {"num_frames": 80})
    with pytest.raises(ParameterConstraintError, match="must be 8k\\+1"):
        reg.validate_params("Lightricks/LTX-Video", "text_to_video", {"num_frames": 160})
    with pytest.raises(ParameterConstraintError, match="must be 6k\\+1"):
        reg.validate_params("genmo/mochi-1-preview", "text_to_video", {"num_frames": 84})
    with pytest.raises(ParameterConstraintError, match="multiple of 32"):
        reg.validate_params(
            "Efficient-Large-Model/Sana_1600M_1024px_diffusers", "text_to_image", {"width": 1000}
        )
    reg.validate_params("Efficient-Large-Model/Sana_1600M_1024px_diffusers", "text_to_image", {"width": 288})
    assert reg.get("Wan-AI/Wan2.2-T2V-A14B").model_id == "Wan-AI/Wan2.2-T2V-A14B-Diffusers"  # alias
    assert reg.defaults("black-forest-labs/FLUX.1-Fill-dev", "image_to_image")["guidance_scale"] == 30.0
    assert reg.get("black-forest-labs/FLUX.1-Fill-dev").tasks["image_to_image"].params["mask"].required


def test_strict_validation_of_the_packaged_registry_rejects_incomplete_entries(doc):
    from abstractvision.model_capabilities import validate_capabilities_document

    for mutate, message in (
        (lambda m: m.pop("source"), "no 'source'"),
        (lambda m: m.pop("diffusers_pipeline"), "names no 'diffusers_pipeline'"),
        (lambda m: m.pop("sdcpp"), "lists no 'sdcpp' components"),
        (lambda m: m.update(backends=[]), "must say what does"),
    ):
        d = copy.deepcopy(doc)
        mutate(d["models"]["runwayml/stable-diffusion-v1-5"])
        validate_capabilities_document(d)  # a user override file may be less complete
        with pytest.raises(CapabilityRegistryError, match=message):
            validate_capabilities_document(d, strict=True)
    d = copy.deepcopy(doc)
    d["models"]["genmo/mochi-1-preview"]["tasks"]["text_to_video"]["params"]["num_frames"].pop("multiple_of")
    with pytest.raises(CapabilityRegistryError, match="'offset' needs 'multiple_of'"):
        validate_capabilities_document(d)


def test_quality_step_presets_explicit_or_by_the_documented_rule(doc, tmp_path):
    from abstractvision._quality import quality_steps

    reg = VisionModelCapabilitiesRegistry()
    # the rule: a quarter, half and all of the default steps, rounded up
    assert quality_steps(reg, "runwayml/stable-diffusion-v1-5", "text_to_image") == {
        "low": 13,
        "medium": 25,
        "high": 50,
    }
    assert quality_steps(reg, "black-forest-labs/FLUX.1-dev", "image_to_image") == {
        "low": 7,
        "medium": 14,
        "high": 28,
    }
    assert quality_steps(reg, "black-forest-labs/FLUX.1-schnell", "text_to_image") == {
        "low": 1,
        "medium": 2,
        "high": 4,
    }
    # explicit presets where the rule makes no sense (a 1-step default)
    assert quality_steps(reg, "stabilityai/sd-turbo", "text_to_image") == {"low": 1, "medium": 2, "high": 4}
    assert reg.to_dict("stabilityai/sdxl-turbo")["tasks"]["image_to_image"]["quality_steps"]["low"] == 2
    assert quality_steps(reg, "gpt-image-1", "text_to_image") is None  # no default steps: no presets
    assert quality_steps(reg, None, "text_to_image") is None
    for tasks in (m["tasks"] for m in doc["models"].values()):  # every preset is a valid steps value
        for spec in tasks.values():
            if "quality_steps" in spec:
                steps = spec["params"]["steps"]
                assert all(steps["min"] <= v <= steps["max"] for v in spec["quality_steps"].values())

    for presets, message in (
        ({"low": 4, "medium": 2, "high": 4}, "low <= medium <= high"),
        ({"low": 1, "medium": 2, "high": 8}, "above the maximum 4"),
        ({"low": 1, "medium": 2}, "missing required key 'high'"),
    ):
        d = copy.deepcopy(doc)
        d["models"]["stabilityai/sd-turbo"]["tasks"]["text_to_image"]["quality_steps"] = presets
        with pytest.raises(CapabilityRegistryError, match=message):
            VisionModelCapabilitiesRegistry(asset_path=_write(tmp_path, d))


def test_frame_rule_maps_seconds_to_counts_the_model_accepts():
    from abstractvision._frames import FrameRule, frame_rule
    from abstractvision.errors import InvalidRequestError
    from abstractvision.types import VisionBackendCapabilities

    reg = VisionModelCapabilitiesRegistry()
    wan = frame_rule(reg, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "text_to_video", None)
    assert wan is not None and (wan.multiple_of, wan.offset, wan.fps, wan.max) == (4, 1, 16, 1025)
    assert [wan.frames_for(s, 16) for s in (1, 4, 5)] == [17, 65, 81]
    ltx = frame_rule(reg, "Lightricks/LTX-Video", "text_to_video", None)
    assert ltx is not None and ltx.describe() == "8k+1" and ltx.frames_for(4, 24) == 97
    cog = frame_rule(reg, "THUDM/CogVideoX-2b", "text_to_video", None)
    assert cog is not None and cog.frames_for(6, 8) == 49
    with pytest.raises(InvalidRequestError, match="at most 49 frames") as info:
        cog.frames_for(8, 8)
    assert info.value.param == "seconds"
    # a backend's declaration alone (a folder the registry does not know)
    caps = VisionBackendCapabilities(
        max_frames=100, raw={"video": {"num_frames": {"multiple_of": 6, "offset": 1}, "fps": 30}}
    )
    mochi = frame_rule(None, None, "text_to_video", caps)
    assert mochi == FrameRule(multiple_of=6, offset=1, max=100, fps=30, source="the backend's declaration")
    assert mochi.frames_for(2, 30) == 61 and mochi.frames_for(3.3, 30) == 97  # 99 is past the maximum
    assert mochi.valid_near(10) == [7, 13]
    with pytest.raises(
        InvalidRequestError, match="num_frames = 6k\\+1 \\(for example 7 or 13\\), from 1 to 100"
    ):
        mochi.check(10)
    assert frame_rule(None, None, "text_to_video", VisionBackendCapabilities()) is None
