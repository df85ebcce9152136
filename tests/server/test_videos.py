"""The OpenAI video job protocol with the fake backend: image to video, listing, paging, deletion."""

from __future__ import annotations

import time

import pytest
from server_helpers import data_url, png

from fakes import FakeBackend

pytestmark = pytest.mark.server

openai = pytest.importorskip("openai")


def wait_video(sdk, video_id: str):
    deadline = time.monotonic() + 10
    while True:
        video = sdk.videos.retrieve(video_id)
        if video.status in ("completed", "failed", "cancelled"):
            return video
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_image_to_video_with_an_uploaded_reference(serve):
    backend = FakeBackend()
    server = serve(backend)
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    ref = png(24, 24, (1, 2, 3))
    video = sdk.videos.create(
        prompt="it moves",
        input_reference=("first.png", ref, "image/png"),
        size="24x24",
        extra_body={"num_frames": 4},
    )
    done = wait_video(sdk, video.id)
    assert done.status == "completed" and done.size == "24x24"
    name, request = backend.calls[-1]
    assert name == "image_to_video" and request.image == ref and request.num_frames == 4
    assert sdk.videos.download_content(video.id).read().startswith(b"GIF")


def test_json_reference_and_seconds(serve, client):
    backend = FakeBackend()
    server = serve(backend)
    c = client(server)
    r = c.post(
        "/v1/videos", json={"prompt": "go", "seconds": "2", "input_reference": {"image_url": data_url(png())}}
    )
    assert r.status_code == 200, r.text
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    done = wait_video(sdk, r.json()["id"])
    assert done.status == "completed" and done.seconds == "2"
    request = backend.calls[-1][1]
    assert request.num_frames == 16 and request.fps == 8  # seconds x default fps
    again = c.post("/v1/videos", json={"prompt": "go", "input_reference": {"file_id": done.id}})
    assert again.status_code == 400  # a job id is not an artifact id
    assert again.json()["error"]["param"] == "input_reference.file_id"


def test_listing_pages_and_deleting(serve):
    server = serve(FakeBackend())
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    ids = [sdk.videos.create(prompt=f"clip {i}", extra_body={"num_frames": 2}).id for i in range(5)]
    for video_id in ids:
        wait_video(sdk, video_id)
    first = sdk.videos.list(limit=2)
    assert [v.id for v in first.data] == ids[::-1][:2] and first.has_more
    walked = [v.id for v in sdk.videos.list(limit=2)]  # auto-pagination follows `after`
    assert walked == ids[::-1]
    oldest_first = [v.id for v in sdk.videos.list(order="asc", limit=100).data]
    assert oldest_first == ids
    assert sdk.videos.delete(ids[0]).deleted
    assert ids[0] not in [v.id for v in sdk.videos.list()]
    with pytest.raises(openai.APIStatusError) as info:
        sdk.videos.download_content(ids[0])
    assert info.value.status_code == 410


def test_a_job_of_the_job_api_is_not_a_video(serve, client):
    c = client(serve(FakeBackend()))
    job = c.post("/v1/jobs", json={"task": "text_to_video", "prompt": "x", "num_frames": 2}).json()
    r = c.get(f"/v1/videos/{job['id']}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "video_not_found"
