"""The shared settings resolver (CLI, server, plugin)."""

from __future__ import annotations

import json

import pytest

from abstractvision.config import create_backend, resolve_settings
from abstractvision.errors import InvalidRequestError


def test_precedence_explicit_over_env_over_file(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {"backend": "diffusers", "model": "file-model", "device": "cpu", "options": {"offload": "model"}}
        )
    )
    env = {
        "ABSTRACTVISION_MODEL": "env-model",
        "ABSTRACTVISION_OPT_VAE_TILING": "true",
        "ABSTRACTVISION_ALLOW_DOWNLOAD": "yes",
    }
    s = resolve_settings({"model": "flag-model", "device": None}, env=env, config_path=cfg)
    assert (s.backend, s.model, s.device, s.allow_download) == ("diffusers", "flag-model", "cpu", True)
    assert s.options == {"offload": "model", "vae_tiling": True}
    assert (
        s.sources["model"] == "explicit"
        and s.sources["device"] == "config file"
        and s.sources["allow_download"] == "environment"
    )
    assert s.config_path == str(cfg)


def test_toml_config_and_env_config_path(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('backend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n[options]\nmax_retries = 1\n')
    s = resolve_settings(env={"ABSTRACTVISION_CONFIG": str(cfg)})
    assert s.backend == "openai" and s.base_url == "http://127.0.0.1:9/v1" and s.options == {"max_retries": 1}


def test_base_url_implies_openai_and_aliases():
    assert resolve_settings({"base_url": "http://x/v1"}, env={}).backend == "openai"
    assert resolve_settings({"backend": "sd.cpp"}, env={}).backend == "sdcpp"


@pytest.mark.parametrize(
    ("explicit", "message"),
    [
        ({"backend": "comfy"}, "Unknown backend"),
        ({"allow_download": "maybe"}, "true or false"),
        ({"timeout_s": "-3"}, "positive"),
        ({"colour": "red"}, "Unknown setting"),
    ],
)
def test_bad_settings(explicit, message):
    with pytest.raises(InvalidRequestError, match=message):
        resolve_settings(explicit, env={})


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InvalidRequestError, match="not valid"):
        resolve_settings(env={}, config_path=bad)
    bad.write_text(json.dumps({"modle": "x"}))
    with pytest.raises(InvalidRequestError, match="unknown key"):
        resolve_settings(env={}, config_path=bad)
    with pytest.raises(InvalidRequestError, match="Cannot read"):
        resolve_settings(env={}, config_path=tmp_path / "missing.json")


def test_no_backend_selected_is_a_clear_error():
    with pytest.raises(InvalidRequestError, match="--backend"):
        create_backend(resolve_settings(env={}))


def test_redacted_hides_the_key():
    s = resolve_settings({"api_key": "sk-secret", "base_url": "http://x/v1"}, env={})
    assert "sk-secret" not in json.dumps(s.redacted()) and "sk-secret" not in repr(s)
