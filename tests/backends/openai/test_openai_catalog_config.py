"""Model catalogs (``GET /models``), configuration, API-key sources and client ownership."""

from __future__ import annotations

import httpx
import pytest
from openai_fake_server import Reply

from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend
from abstractvision.errors import InvalidRequestError, ProviderResponseError
from conftest import API_KEY


def test_seed_example_constructs_without_network():
    backend = OpenAICompatibleVisionBackend(
        config=OpenAICompatibleBackendConfig(base_url="http://localhost:1234/v1")
    )
    assert backend.describe() == {
        "backend": "openai",
        "model": None,
        "base_url": "http://localhost:1234/v1",
        "profile": "generic",
    }
    backend.close()


def test_list_provider_models_filters_by_task_where_declared(runner, make_backend, server):
    backend = make_backend(model_id="tiny-sd")
    models = runner.call(backend, "list_provider_models", task="text_to_image")
    by_id = {m.id: m for m in models}
    # tiny-wan declares text_to_video only; mystery-model declares nothing and is kept
    assert list(by_id) == ["tiny-sd", "gpt-image-1", "mystery-model"]
    assert by_id["tiny-sd"].capabilities == ("image_to_image", "text_to_image")
    assert by_id["tiny-sd"].created == 1700000000 and by_id["tiny-sd"].owned_by == "local"
    assert "text_to_image" in by_id["gpt-image-1"].capabilities  # from the registry
    assert by_id["mystery-model"].capabilities == ()
    assert by_id["tiny-sd"].to_dict()["raw"]["capabilities"] == ["text-to-image", "img2img"]
    assert [m.id for m in runner.call(backend, "list_provider_models", task="text_to_video")] == [
        "tiny-wan",
        "mystery-model",
    ]
    assert len(runner.call(backend, "list_provider_models")) == 4
    assert backend.describe()["model"] == "tiny-sd" and backend.config.model_id == "tiny-sd"  # never changed
    assert server.calls("GET", "/models")[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_manager_lists_provider_models(runner, vm):
    assert [m.id for m in vm.list_provider_models(task="image_to_image")] == [
        "tiny-sd",
        "gpt-image-1",
        "mystery-model",
    ]
    with pytest.raises(InvalidRequestError, match="Unknown task"):
        vm.list_provider_models(task="painting")


@pytest.mark.parametrize("payload", [{"data": "nope"}, {"data": [{"object": "model"}]}, ["not", "objects"]])
def test_malformed_catalogs_are_response_errors(runner, make_backend, server, payload):
    server.script("GET", "/models", Reply(json=payload))
    with pytest.raises(ProviderResponseError):
        runner.call(make_backend(), "list_provider_models")


def _openai_catalog(seen):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        ids = ["gpt-4o", "dall-e-3", "gpt-image-1", "gpt-image-2-preview", "sora-2", "whisper-1"]
        return httpx.Response(
            200, json={"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}
        )

    return handler


def test_openai_catalog_uses_the_registry_and_openai_api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0000")
    seen: list[httpx.Request] = []
    client = httpx.Client(transport=httpx.MockTransport(_openai_catalog(seen)))
    backend = OpenAICompatibleVisionBackend(base_url="https://api.openai.com/v1", http_client=client)
    assert [m.id for m in backend.list_provider_models(task="text_to_image")] == [
        "dall-e-3",
        "gpt-image-1",
        "gpt-image-2-preview",
    ]
    assert [m.id for m in backend.list_provider_models(task="image_to_video")] == ["sora-2"]
    assert seen[0].headers["authorization"] == "Bearer sk-from-env-0000"
    assert str(seen[0].url) == "https://api.openai.com/v1/models"
    backend.close()
    assert not client.is_closed  # injected clients belong to the caller
    client.close()


def test_openai_api_key_env_is_not_sent_elsewhere(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0000")
    seen: list[httpx.Request] = []
    client = httpx.Client(transport=httpx.MockTransport(_openai_catalog(seen)))
    backend = OpenAICompatibleVisionBackend(base_url="http://localhost:1234/v1", http_client=client)
    backend.list_provider_models()
    assert "authorization" not in seen[0].headers
    client.close()


def test_injected_async_client_is_used_and_left_open():
    import asyncio

    seen: list[httpx.Request] = []
    aclient = httpx.AsyncClient(transport=httpx.MockTransport(_openai_catalog(seen)))
    backend = OpenAICompatibleVisionBackend(base_url="http://localhost:1234/v1", async_http_client=aclient)

    async def scenario():
        models = await backend.alist_provider_models()
        await backend.aclose()
        assert not aclient.is_closed
        await aclient.aclose()
        return models

    assert len(asyncio.run(scenario())) == 6 and len(seen) == 1


def test_owned_clients_are_closed(runner, make_backend):
    backend = make_backend()
    runner.call(backend, "list_provider_models")
    if not runner.is_async:
        # the sync path sends on its own connections (no httpx.Client; plain http:// on
        # http.client): closed by close()
        transport = backend._direct
        kept = [c for idle in transport._stdlib._idle.values() for c in idle]
        assert kept and all(c.sock is not None for c in kept)  # the kept-alive connection
        backend.close()
        assert all(c.sock is None for c in kept) and not transport._stdlib._idle
        assert len(backend.list_provider_models()) > 0  # a closed backend opens a new pool
        backend.close()
        return
    client = backend._aclient
    assert client is not None and not client.is_closed
    runner.run(backend.aclose())
    assert client.is_closed


def test_config_repr_redacts_secrets():
    config = OpenAICompatibleBackendConfig(
        base_url="https://user:hunter2-pass@example.com/v1",
        api_key="sk-very-secret",
        headers={"X-Api-Key": "azure-secret", "X-Trace": "visible"},
    )
    text = repr(config) + repr(OpenAICompatibleVisionBackend(config))
    for secret in ("sk-very-secret", "hunter2-pass", "azure-secret"):
        assert secret not in text
    assert "api_key='***'" in text and "'X-Trace': 'visible'" in text


@pytest.mark.parametrize(
    "overrides, param",
    [
        ({"base_url": "localhost:1234/v1"}, "base_url"),
        ({"video_mode": "poll"}, "video_mode"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_batch": 0}, "max_batch"),
    ],
)
def test_config_validation(overrides, param):
    with pytest.raises(InvalidRequestError) as info:
        OpenAICompatibleBackendConfig(**overrides)
    assert info.value.param == param


def test_keyword_overrides_build_or_update_the_config():
    base = OpenAICompatibleBackendConfig(base_url="http://localhost:1234/v1", model_id="a")
    backend = OpenAICompatibleVisionBackend(base, model_id="b")
    assert backend.config.model_id == "b" and base.model_id == "a"
    assert OpenAICompatibleVisionBackend(base_url="http://h:1/v1").config.base_url == "http://h:1/v1"
