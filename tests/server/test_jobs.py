"""The job API: lifecycle, server-sent events, cancel, expiry, inputs and coalescing (fake backend)."""

from __future__ import annotations

import time

import pytest
from server_helpers import GatedBackend, data_url, png, sse_events

from fakes import FakeBackend

pytestmark = pytest.mark.server


def wait_status(c, job_id: str, *states: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.02)


def test_job_runs_and_streams_progress_as_sse(serve, client):
    server = serve(FakeBackend(steps_delay_s=0.005))
    c = client(server)
    r = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "a red cube", "steps": 4, "seed": 7})
    assert r.status_code == 202
    job = r.json()
    assert job["status"] in ("queued", "in_progress") and job["object"] == "job"
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"

    with c.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = sse_events(stream)
    names = [name for name, _ in events]
    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses[0] == "queued" and statuses[-1] == "completed" and "in_progress" in statuses
    steps = [d for n, d in events if n == "progress" and d["phase"] == "step"]
    assert [d["step"] for d in steps] == [1, 2, 3, 4] and steps[-1]["total_steps"] == 4
    assert {"task", "phase", "step", "total_steps", "progress", "message", "elapsed_s", "raw"} <= set(
        steps[0]
    )
    assert names[-1] == "status"
    final = events[-1][1]
    assert len(final["results"]) == 1
    ref = final["results"][0]
    assert ref["$artifact"] and ref["url"].endswith(f"/v1/artifacts/{ref['$artifact']}")
    assert ref["metadata"]["seed"] == 7

    done = c.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "completed" and done["progress"] == 1.0
    assert done["expires_at"] >= done["completed_at"]
    art = c.get(ref["url"])
    assert art.status_code == 200 and art.headers["content-type"] == "image/png"
    assert art.content.startswith(b"\x89PNG")


def test_sse_resumes_after_last_event_id(serve, client):
    server = serve(FakeBackend())
    c = client(server)
    job = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "x", "steps": 3}).json()
    wait_status(c, job["id"], "completed")
    with c.stream("GET", f"/v1/jobs/{job['id']}/events") as s:
        everything = s.read().decode()
    last_ids = [int(line[3:]) for line in everything.splitlines() if line.startswith("id:")]
    with c.stream("GET", f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(last_ids[-2])}) as s:
        tail = sse_events(s)
    assert len(tail) == 1 and tail[0][1]["status"] == "completed"


def test_unknown_pending_and_expired_jobs_are_distinguishable(serve, client):
    backend = GatedBackend()
    server = serve(backend, job_ttl_s=0.3)
    c = client(server)
    unknown = c.get("/v1/jobs/job_0123456789abcdef01234567")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "job_not_found"

    backend.gate.clear()
    job = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "x"}).json()
    pending = c.get(f"/v1/jobs/{job['id']}")
    assert pending.status_code == 200 and pending.json()["status"] in ("queued", "in_progress")
    backend.gate.set()
    wait_status(c, job["id"], "completed")
    time.sleep(0.45)
    expired = c.get(f"/v1/jobs/{job['id']}")
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "job_expired"


def test_cancel_running_job_stops_the_engine(serve, client):
    backend = FakeBackend(steps_delay_s=0.02)
    server = serve(backend)
    c = client(server)
    job = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "slow", "steps": 500}).json()
    assert backend.started.wait(5)
    with c.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        r = c.post(f"/v1/jobs/{job['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["cancel_requested"]
        events = sse_events(stream)
    assert events[-1][1]["status"] == "cancelled"
    again = c.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    # the worker is free again: the engine saw the cancel token and stopped
    nxt = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "next", "steps": 1}).json()
    assert wait_status(c, nxt["id"], "completed", timeout=5)["status"] == "completed"
    steps_run = [1 for name, req in backend.calls if name == "generate_image" and req.prompt == "slow"]
    assert steps_run  # it did start


def test_cancel_queued_job_and_delete(serve, client):
    backend = GatedBackend()
    backend.gate.clear()
    server = serve(backend, coalesce=False)
    c = client(server)
    first = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "a"}).json()
    second = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "b"}).json()
    assert backend.started.wait(5)
    r = c.post(f"/v1/jobs/{second['id']}/cancel")
    assert r.json()["status"] == "cancelled"
    backend.gate.set()
    assert wait_status(c, first["id"], "completed")["status"] == "completed"
    assert [req.prompt for _, req in backend.calls] == ["a"]  # the cancelled one never ran
    finished = c.post(f"/v1/jobs/{first['id']}/cancel")
    assert finished.status_code == 409 and finished.json()["error"]["code"] == "job_finished"
    d = c.delete(f"/v1/jobs/{first['id']}")
    assert d.json() == {"id": first["id"], "object": "job.deleted", "deleted": True}
    assert c.get(f"/v1/jobs/{first['id']}").status_code == 410


def test_list_jobs_filters_by_status(serve, client):
    server = serve(FakeBackend())
    c = client(server)
    ids = [
        c.post("/v1/jobs", json={"task": "text_to_image", "prompt": f"p{i}"}).json()["id"] for i in range(3)
    ]
    for job_id in ids:
        wait_status(c, job_id, "completed")
    listed = c.get("/v1/jobs", params={"status": "completed"}).json()
    assert {j["id"] for j in listed["data"]} == set(ids)
    assert c.get("/v1/jobs", params={"status": "queued"}).json()["data"] == []
    assert c.get("/v1/jobs", params={"status": "weird"}).status_code == 400


def test_image_inputs_as_data_url_and_artifact_ref(serve, client):
    backend = FakeBackend()
    server = serve(backend)
    c = client(server)
    src = png(24, 16)
    job = c.post(
        "/v1/jobs",
        json={
            "task": "image_to_image",
            "prompt": "edit",
            "image": data_url(src),
            "mask": data_url(png(24, 16, (255, 255, 255))),
        },
    ).json()
    done = wait_status(c, job["id"], "completed", "failed")
    assert done["status"] == "completed", done
    request = backend.calls[-1][1]
    assert request.image == src and request.mask is not None
    artifact = done["results"][0]["$artifact"]
    # a result of this server can be the input of the next job
    job2 = c.post(
        "/v1/jobs", json={"task": "image_upscale", "image": {"$artifact": artifact}, "scale": 2}
    ).json()
    done2 = wait_status(c, job2["id"], "completed", "failed")
    assert done2["status"] == "completed", done2
    listed = c.get("/v1/artifacts").json()["data"]
    assert {a["id"] for a in listed} >= {artifact, done2["results"][0]["$artifact"]}
    assert all(a["url"].endswith(a["id"]) for a in listed)


def test_multi_view_and_video_jobs(serve, client):
    server = serve(FakeBackend())
    c = client(server)
    mv = c.post(
        "/v1/jobs", json={"task": "multi_view_image", "prompt": "chair", "angles": ["front", "back"]}
    ).json()
    done = wait_status(c, mv["id"], "completed", "failed")
    assert [r["metadata"]["angle"] for r in done["results"]] == ["front", "back"]
    vid = c.post(
        "/v1/jobs", json={"task": "text_to_video", "prompt": "waves", "num_frames": 3, "n": 2}
    ).json()
    done = wait_status(c, vid["id"], "completed", "failed")
    assert len(done["results"]) == 2 and done["results"][0]["content_type"] == "image/gif"


def test_same_parameters_are_coalesced_into_one_batched_call(serve, client):
    backend = GatedBackend()
    backend.gate.clear()
    server = serve(backend, coalesce=True)
    c = client(server)
    blocker = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "blocker"}).json()
    assert backend.started.wait(5)
    same = {"task": "text_to_image", "prompt": "same", "steps": 2, "width": 16, "height": 16}
    jobs = [
        c.post("/v1/jobs", json={**same, "seed": 10}).json(),
        c.post("/v1/jobs", json={**same, "n": 2}).json(),
        c.post("/v1/jobs", json={**same, "seed": 30}).json(),
        c.post("/v1/jobs", json={**same, "steps": 3}).json(),  # different parameters: not merged
    ]
    backend.gate.set()
    done = [wait_status(c, j["id"], "completed", "failed") for j in [blocker, *jobs]]
    assert all(d["status"] == "completed" for d in done), done
    batch_calls = [req for name, req in backend.calls if name == "generate_image_batch"]
    assert len(batch_calls) == 1 and batch_calls[0].n == 4
    assert [len(d["results"]) for d in done[1:]] == [1, 2, 1, 1]
    assert done[1]["results"][0]["metadata"]["seed"] == 10
    assert done[3]["results"][0]["metadata"]["seed"] == 30
    assert len({r["$artifact"] for d in done[1:4] for r in d["results"]}) == 4


def test_failed_job_reports_an_openai_style_error(serve, client):
    class Broken(FakeBackend):
        def generate_image(self, request):
            raise RuntimeError("engine exploded")

    server = serve(Broken())
    c = client(server)
    job = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "x"}).json()
    done = wait_status(c, job["id"], "failed")
    assert done["error"]["type"] == "server_error" and "engine exploded" in done["error"]["message"]
    sync = c.post("/v1/images/generations", json={"prompt": "x"})
    assert sync.status_code == 500 and sync.json()["error"]["code"] == "engine_error"


def test_openai_style_masks_are_converted_to_white_means_repaint(serve, client):
    """OpenAI marks the edit area with transparency; the library paints where the mask is white."""
    import io

    from PIL import Image

    backend = FakeBackend()
    c = client(serve(backend))
    mask = Image.new("RGBA", (16, 16), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (4, 4, 12, 12))  # transparent square = edit here
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    files = {"image": ("a.png", png(16, 16), "image/png"), "mask": ("m.png", buf.getvalue(), "image/png")}
    assert c.post("/v1/images/edits", data={"prompt": "x"}, files=files).status_code == 200
    received = Image.open(io.BytesIO(backend.calls[-1][1].mask))
    assert received.mode == "L"
    assert received.getpixel((8, 8)) == 255 and received.getpixel((0, 0)) == 0
    plain = png(16, 16, (255, 255, 255))  # no alpha: already white = repaint, passed through
    files = {"image": ("a.png", png(16, 16), "image/png"), "mask": ("m.png", plain, "image/png")}
    assert c.post("/v1/images/edits", data={"prompt": "x"}, files=files).status_code == 200
    assert backend.calls[-1][1].mask == plain
