"""Served model names, ``--model [NAME=]SPEC`` and the models file (TOML and JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from abstractvision.config import BackendSettings, resolve_settings
from abstractvision.errors import InvalidRequestError
from abstractvision.served_models import (
    ServedModel,
    default_served_name,
    load_models_file,
    parse_model_arg,
    served_models_from_args,
)

needs_toml = pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")


def test_default_names(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "sdxl"
    folder.mkdir(parents=True)
    gguf = tmp_path / "flux1-schnell-Q4_0.gguf"
    gguf.write_bytes(b"GGUF")
    assert default_served_name(str(folder)) == "sdxl"
    assert default_served_name(str(folder) + "/") == "sdxl"
    assert default_served_name(str(gguf)) == "flux1-schnell-Q4_0.gguf"
    assert default_served_name("stabilityai/sdxl-turbo") == "stabilityai/sdxl-turbo"  # a hub id as given
    assert default_served_name("/data/not here/my model") == "my-model"  # spaces cannot be in a name


def test_parse_model_arg(tmp_path: Path) -> None:
    assert parse_model_arg("sd=/m/sd-turbo") == ("sd", "/m/sd-turbo")
    assert parse_model_arg("/m/sd-turbo") == (None, "/m/sd-turbo")
    assert parse_model_arg("stabilityai/sdxl-turbo") == (None, "stabilityai/sdxl-turbo")
    assert parse_model_arg("turbo=stabilityai/sdxl-turbo") == ("turbo", "stabilityai/sdxl-turbo")
    odd = tmp_path / "a=b"
    odd.mkdir()
    assert parse_model_arg(str(odd)) == (None, str(odd))  # an existing path may contain '='
    with pytest.raises(InvalidRequestError, match="nothing after '='"):
        parse_model_arg("sd=")
    with pytest.raises(InvalidRequestError, match="needs a value"):
        parse_model_arg(" ")


def test_served_models_from_flags(tmp_path: Path) -> None:
    base = resolve_settings({"backend": "diffusers", "device": "cpu"}, env={})
    models = served_models_from_args(base, models=["sd=/m/sd", str(tmp_path), "org/repo"])
    assert [m.name for m in models] == ["sd", tmp_path.name, "org/repo"]
    assert all(m.settings.backend == "diffusers" and m.settings.device == "cpu" for m in models)
    assert models[0].settings.model == "/m/sd" and models[0].settings.sources["model"] == "--model"
    (single,) = served_models_from_args(base, models=["/m/sd"], served_model_name="public")
    assert single.name == "public"
    (fallback,) = served_models_from_args(
        resolve_settings({"backend": "openai", "base_url": "http://x/v1"}, env={})
    )
    assert fallback.name == "openai"
    with pytest.raises(InvalidRequestError, match="names a single model"):
        served_models_from_args(base, models=["/a", "/b"], served_model_name="x")
    with pytest.raises(InvalidRequestError, match="Two served models are named 'sd'"):
        served_models_from_args(base, models=["sd=/a", "sd=/b"])
    with pytest.raises(InvalidRequestError, match="not a valid served model name"):
        ServedModel("has space", base)
    with pytest.raises(InvalidRequestError, match="workers must be a positive integer"):
        ServedModel("ok", base, workers=0)


@needs_toml
def test_models_file_tables_defaults_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "models" / "sd").mkdir(parents=True)
    (tmp_path / "models" / "flux.gguf").write_bytes(b"GGUF")
    file = tmp_path / "serve.toml"
    file.write_text(
        """
[defaults]
backend = "diffusers"
device = "cuda:1"
options = { offload = "model" }

[models.sd]
model = "models/sd"
workers = 2
queue_size = 3

[models."stabilityai/sdxl-turbo"]
model = "stabilityai/sdxl-turbo"
registry_id = "stabilityai/stable-diffusion-xl-base-1.0"
options = { offload = "none" }

[models.flux]
backend = "sdcpp"
options = { diffusion_model = "models/flux.gguf", clip_l = "./models/clip_l.safetensors", n_threads = 2 }
"""
    )
    base = resolve_settings({"dtype": "float16", "timeout_s": 30}, env={})
    sd, turbo, flux = load_models_file(file, base)
    assert (sd.name, sd.settings.backend, sd.settings.model) == (
        "sd",
        "diffusers",
        str(tmp_path / "models" / "sd"),
    )
    assert (sd.workers, sd.queue_size, sd.settings.device, sd.settings.dtype) == (2, 3, "cuda:1", "float16")
    assert sd.settings.options == {"offload": "model"}
    assert turbo.name == "stabilityai/sdxl-turbo" and turbo.settings.model == "stabilityai/sdxl-turbo"
    assert turbo.registry_id == "stabilityai/stable-diffusion-xl-base-1.0"
    assert turbo.settings.options == {"offload": "none"}
    assert flux.settings.backend == "sdcpp"
    # device and dtype (shared) do not reach sd.cpp, which takes neither; timeout_s does
    assert (flux.settings.device, flux.settings.dtype, flux.settings.timeout_s) == (None, None, 30.0)
    assert flux.settings.options["diffusion_model"] == str(tmp_path / "models" / "flux.gguf")
    assert flux.settings.options["clip_l"] == str(tmp_path / "models" / "clip_l.safetensors")
    assert flux.settings.options["offload"] == "model"  # [defaults] options apply to every model


def test_models_file_as_json_and_with_flags(tmp_path: Path) -> None:
    file = tmp_path / "serve.json"
    file.write_text(
        json.dumps({"models": {"remote": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}}})
    )
    base = resolve_settings({"backend": "diffusers"}, env={})
    models = served_models_from_args(base, models=["sd=/m/sd"], models_file=str(file))
    assert [(m.name, m.settings.backend) for m in models] == [("sd", "diffusers"), ("remote", "openai")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"models": {}}', "lists no models"),
        ('{"model": {"a": {}}}', "unknown top-level key(s) ['model']"),
        ('{"models": {"a": {"model": "x"}}}', "[models.a] needs a backend"),
        ('{"models": {"a": {"backend": "nope"}}}', "Unknown backend 'nope'"),
        ('{"models": {"a": {"backend": "diffusers", "colour": "red"}}}', "Unknown setting(s) [\"'colour'\"]"),
        ('{"models": {"a": {"backend": "diffusers", "workers": "2"}}}', "workers must be a positive integer"),
        ('{"models": {"a b": {"backend": "diffusers"}}}', "not a valid served model name"),
        ('{"models": {"a": 3}}', "[models.a] must be a table"),
        ("{not json", "is not valid"),
        ('{"models": {"a": {"backend": "diffusers", "request_defaults": {"stepz": 4}}}}',
         "request_defaults has an unknown parameter 'stepz'"),
        ('{"models": {"a": {"backend": "diffusers", "request_defaults": {"prompt": "x"}}}}',
         "request_defaults has an unknown parameter 'prompt'"),
        ('{"models": {"a": {"backend": "diffusers", "request_defaults": {"width": [64]}}}}',
         "request_defaults.width must be a number"),
        ('{"models": {"a": {"backend": "diffusers", "request_defaults": 4}}}', "must be a table"),
        ('{"models": {"a": {"backend": "diffusers", "description": 4}}}', "description must be a string"),
    ],
)  # fmt: skip
def test_models_file_errors_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "serve.json"
    file.write_text(text)
    with pytest.raises(InvalidRequestError) as info:
        load_models_file(file, BackendSettings())
    assert message in str(info.value)


def test_models_file_missing(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="Cannot read the models file"):
        load_models_file(tmp_path / "nope.toml")


def test_local_paths_are_what_a_server_hides(tmp_path: Path) -> None:
    (tmp_path / "sd").mkdir()
    model = ServedModel(
        "sd", resolve_settings({"backend": "diffusers", "model": str(tmp_path / "sd")}, env={})
    )
    assert str(tmp_path / "sd") in model.local_paths


def test_models_file_description_and_request_defaults(tmp_path: Path) -> None:
    file = tmp_path / "serve.json"
    file.write_text(
        json.dumps(
            {
                "models": {
                    "wan": {
                        "backend": "diffusers",
                        "model": "/m/wan",
                        "description": "Wan 2.1, 1.3B: short clips",
                        "request_defaults": {"num_frames": 17, "steps": 20, "width": 480},
                    }
                }
            }
        )
    )
    (wan,) = load_models_file(file, BackendSettings())
    assert wan.description == "Wan 2.1, 1.3B: short clips"
    assert wan.request_defaults == {"num_frames": 17, "steps": 20, "width": 480}
