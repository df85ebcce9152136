"""Several models in one server: names, routing by task, lazy loading, ``max_loaded`` swaps.

Fake backends registered through the real ``VisionBackend`` contract stand in for engines
here (they count ``preload``/``unload`` calls and can be slow or fail to load); the real
engines run in ``test_multi_model_engines.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from abstractvision.types import VisionBackendCapabilities
from fakes import FakeBackend

pytestmark = pytest.mark.server


class ResidentBackend(FakeBackend):
    """A fake engine with weights: ``preload`` loads, ``unload`` frees; both are counted."""

    def __init__(
        self, tasks: tuple[str, ...] = ("text_to_image",), *, load_s: float = 0.0, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.tasks = tasks
        self.load_s = load_s
        self.loads = 0
        self.unloads = 0
        self.resident = False
        self.fail_load: str | None = None
        self.log: list[str] = []

    def get_capabilities(self) -> VisionBackendCapabilities:
        return VisionBackendCapabilities(supported_tasks=self.tasks, supports_native_batch=True)

    def preload(self) -> None:
        if self.fail_load:
            raise RuntimeError(self.fail_load)
        time.sleep(self.load_s)
        self.loads += 1
        self.resident = True
        self.log.append("load")

    def unload(self) -> None:
        self.unloads += 1
        self.resident = False
        self.log.append("unload")

    def generate_image(self, request: Any) -> Any:
        assert self.resident, "called while not loaded"
        return super().generate_image(request)

    def generate_video(self, request: Any) -> Any:
        assert self.resident, "called while not loaded"
        return super().generate_video(request)


def _models(c: Any) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in c.get("/v1/models").json()["data"]}


def test_routing_by_name_and_by_task(serve, client) -> None:
    image, video = ResidentBackend(("text_to_image", "image_to_image")), ResidentBackend(("text_to_video",))
    c = client(serve({"pics": image, "clips": video}))
    models = _models(c)
    assert list(models) == ["pics", "clips"]
    assert models["pics"]["tasks"] == ["text_to_image", "image_to_image"]
    assert models["clips"]["tasks"] == ["text_to_video"] and models["clips"]["loaded"] is False
    # no model: the first served model that runs the task
    r = c.post("/v1/images/generations", json={"prompt": "a cat", "size": "16x16"})
    assert r.status_code == 200 and c.get(f"/v1/jobs/{r.headers['x-job-id']}").json()["model"] == "pics"
    video_job = c.post("/v1/videos", json={"prompt": "waves", "num_frames": 3}).json()
    assert video_job["model"] == "clips"
    # a model that cannot run the task: 400 naming the ones that can
    r = c.post("/v1/images/generations", json={"prompt": "a cat", "model": "clips"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "unsupported_task" and error["param"] == "model"
    assert "'clips' does not run text_to_image" in error["message"] and "pics" in error["message"]
    r = c.post("/v1/videos", json={"prompt": "waves", "model": "pics"})
    assert r.status_code == 400 and "clips" in r.json()["error"]["message"]
    r = c.post("/v1/images/generations", json={"prompt": "x", "model": "nope"})
    assert r.status_code == 404 and "pics (text_to_image, image_to_image)" in r.json()["error"]["message"]


def test_no_served_model_runs_the_task(serve, client) -> None:
    c = client(serve({"pics": ResidentBackend(("text_to_image",))}))
    r = c.post("/v1/videos", json={"prompt": "waves"})
    assert r.status_code == 400 and "No served model runs text_to_video" in r.json()["error"]["message"]


def test_lazy_loading_shows_as_a_job_stage(serve, client) -> None:
    backend = ResidentBackend(load_s=0.05)
    c = client(serve({"m": backend}))
    assert backend.loads == 0  # nothing loads before the first request
    job = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "x", "steps": 2}).json()
    with c.stream("GET", f"/v1/jobs/{job['id']}/events") as events:
        text = "".join(events.iter_text())
    assert '"phase":"loading","step":null,"total_steps":null,"progress":null,"message":"loading m"' in text
    assert '"message":"loaded m in' in text
    assert text.index("loading m") < text.index('"phase":"step"')
    assert backend.loads == 1 and _models(c)["m"]["loaded"] is True
    c.post("/v1/images/generations", json={"prompt": "y"})
    assert backend.loads == 1  # loaded once, then kept


def test_max_loaded_swaps_least_recently_used_idle_engine(serve, client) -> None:
    a, b, v = ResidentBackend(), ResidentBackend(), ResidentBackend(("text_to_video",))
    c = client(serve({"a": a, "b": b, "v": v}, max_loaded=2))
    for name in ("a", "b", "a", "v", "b", "a"):
        if name == "v":
            job = c.post("/v1/videos", json={"prompt": "p", "model": "v", "num_frames": 2}).json()
            for _ in range(200):
                if c.get(f"/v1/videos/{job['id']}").json()["status"] == "completed":
                    break
                time.sleep(0.02)
        else:
            assert c.post("/v1/images/generations", json={"prompt": "p", "model": name}).status_code == 200
    # a b (both loaded) | a | v evicts b (LRU) | b evicts a | a evicts v
    assert (a.loads, a.unloads) == (2, 1)
    assert (b.loads, b.unloads) == (2, 1)
    assert (v.loads, v.unloads) == (1, 1)
    models = _models(c)
    assert [m for m in ("a", "b", "v") if models[m]["loaded"]] == ["a", "b"]
    assert models["a"]["residency"] == {"loaded": True, "loads": 2, "unloads": 1, "running": 0}
    assert c.get("/healthz").json()["max_loaded"] == 2


def test_waiting_for_room_is_fair_and_never_unloads_a_running_engine(serve, client) -> None:
    slow, other = ResidentBackend(steps_delay_s=0.05), ResidentBackend()
    c = client(serve({"slow": slow, "other": other}, max_loaded=1, queue_size=8))
    first = c.post(
        "/v1/jobs", json={"task": "text_to_image", "prompt": "x", "steps": 6, "model": "slow"}
    ).json()
    deadline = time.monotonic() + 10
    while not slow.started.is_set():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "y", "model": "other"}).json()
    third = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "z", "model": "slow"}).json()
    for job in (first, second, third):
        for _ in range(500):
            view = c.get(f"/v1/jobs/{job['id']}").json()
            if view["status"] in ("completed", "failed"):
                break
            time.sleep(0.02)
        assert view["status"] == "completed", view
    # slow ran to the end before being unloaded; the waiting "other" went before the later "slow" job
    assert slow.log == ["load", "unload", "load"]
    assert other.log == ["load", "unload"]


def test_a_model_that_fails_to_load_fails_its_job_and_stays_unloaded(serve, client, tmp_path) -> None:
    broken = ResidentBackend()
    broken.fail_load = f"weights at {tmp_path}/secret-models/broken/unet are corrupt"
    fine = ResidentBackend()
    c = client(serve({"broken": broken, "fine": fine}, max_loaded=1))
    r = c.post("/v1/images/generations", json={"prompt": "x", "model": "broken"})
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "model_load_failed"
    assert error["message"] == "Loading broken failed: RuntimeError: weights at …/unet are corrupt"
    assert _models(c)["broken"]["loaded"] is False
    assert c.post("/v1/images/generations", json={"prompt": "x", "model": "fine"}).status_code == 200
    assert fine.loads == 1 and broken.unloads == 0


def test_preload_loads_up_to_max_loaded_before_serving(serve, client) -> None:
    a, b, v = ResidentBackend(), ResidentBackend(), ResidentBackend(("text_to_video",))
    c = client(serve({"a": a, "b": b, "v": v}, max_loaded=2, preload=True))
    assert (a.loads, b.loads, v.loads) == (1, 1, 0)
    assert [m["loaded"] for m in _models(c).values()] == [True, True, False]


def test_remote_backends_do_not_count_against_max_loaded(serve, client) -> None:
    from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend

    upstream = serve(FakeBackend())
    remote = OpenAICompatibleVisionBackend(
        config=OpenAICompatibleBackendConfig(base_url=upstream.url + "/v1", model_id="fake-model")
    )
    local = ResidentBackend()
    c = client(serve({"remote": remote, "local": local}, max_loaded=1))
    for name in ("local", "remote", "local"):
        assert c.post("/v1/images/generations", json={"prompt": "p", "model": name}).status_code == 200
    assert (local.loads, local.unloads) == (1, 0)
    assert _models(c)["remote"]["loaded"] is None  # no weights here: neither loaded nor not
    remote.close()


def test_default_name_of_a_single_backend_is_a_basename_or_hub_id(serve, client, tmp_path) -> None:
    folder = tmp_path / "my-models" / "sdxl"
    folder.mkdir(parents=True)

    class PathBackend(FakeBackend):
        def __init__(self, model: str) -> None:
            super().__init__()
            self.model = model

        def describe(self) -> dict[str, Any]:
            return {"backend": "fake", "model": self.model}

    c = client(serve(PathBackend(str(folder))))
    assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["sdxl"]
    r = c.post("/v1/images/generations", json={"prompt": "x", "model": "sdxl", "response_format": "url"})
    assert r.status_code == 200
    job = c.get(f"/v1/jobs/{r.headers['x-job-id']}").json()
    assert job["results"][0]["metadata"]["model"] == "sdxl"
    assert str(tmp_path) not in c.get(f"/v1/jobs/{job['id']}").text
    hub = client(serve(PathBackend("stabilityai/sdxl-turbo")))
    assert [m["id"] for m in hub.get("/v1/models").json()["data"]] == ["stabilityai/sdxl-turbo"]


def test_concurrent_requests_for_two_models_with_one_slot(serve, client) -> None:
    a, b = ResidentBackend(steps_delay_s=0.01), ResidentBackend(steps_delay_s=0.01)
    server = serve({"a": a, "b": b}, max_loaded=1, queue_size=32)
    errors: list[str] = []

    def hit(name: str) -> None:
        c = client(server)
        for _ in range(4):
            r = c.post("/v1/images/generations", json={"prompt": "p", "model": name, "steps": 2})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=hit, args=(n,)) for n in ("a", "b", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    # never both resident: every load of one followed the other's unload
    assert abs(a.loads - b.loads) <= 1 and a.loads >= 1 and b.loads >= 1
    assert a.loads - a.unloads + b.loads - b.unloads == 1


def test_request_defaults_and_description_of_a_served_model(serve, client, monkeypatch) -> None:
    """A served model's request_defaults fill what a request leaves out; the request's values win."""
    import abstractvision.server.state as state_module
    from abstractvision.config import BackendSettings
    from abstractvision.served_models import ServedModel

    backend = FakeBackend()
    monkeypatch.setattr(state_module, "create_backend", lambda settings: backend)
    model = ServedModel(
        "small",
        BackendSettings(backend="diffusers", model="small"),
        description="makes small images",
        request_defaults={"width": 24, "height": 16, "steps": 3, "num_frames": 5},
    )
    c = client(serve([model]))
    entry = c.get("/v1/models/small").json()
    assert entry["description"] == "makes small images"
    assert c.post("/v1/images/generations", json={"prompt": "a"}).status_code == 200
    request = backend.calls[-1][1]
    assert (request.width, request.height, request.steps) == (24, 16, 3)
    assert c.post("/v1/images/generations", json={"prompt": "b", "size": "32x32", "steps": 2}).status_code == 200
    request = backend.calls[-1][1]
    assert (request.width, request.height, request.steps) == (32, 32, 2)  # the request's own values
    # num_frames is no image parameter: the image request is not given it
    assert not hasattr(request, "num_frames")
