"""The artifact store's own guarantees on every kind of store: a folder, ``file://`` and real S3.

The same tests run against :class:`LocalAssetStore`, :class:`FsspecAssetStore` on ``file://``
and :class:`FsspecAssetStore` on an S3 server (moto, on loopback, reached through s3fs with
the ``AWS_*`` environment exactly as AWS would be): round trip, deduplication, listing and
deletion, tampering detected on read, ids that could escape the store, and 4 processes
writing at once.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from typing import Any

import pytest

from abstractvision import LocalAssetStore
from abstractvision.errors import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactStoreError,
    InvalidRequestError,
)
from abstractvision.stores import FsspecAssetStore, open_store


class Kit:
    """A store plus raw access to the objects behind it (to tamper and count, as an attacker would)."""

    def __init__(self, location: str, env: dict[str, str]) -> None:
        self.location = location
        self.env = env
        self.store = open_store(location, check=location.startswith("s3://"))

    def raw_write(self, path: Any, data: bytes) -> None:
        if isinstance(self.store, FsspecAssetStore):
            self.store.fs.pipe_file(str(path), data)
        else:
            path.write_bytes(data)

    def objects(self) -> list[str]:
        if isinstance(self.store, FsspecAssetStore):
            return [str(p) for p in self.store.fs.find(str(self.store.base_dir))]
        return [str(p) for p in self.store.base_dir.rglob("*") if p.is_file()]


@pytest.fixture(params=["folder", "file", "s3"])
def kit(request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Kit:
    env: dict[str, str] = {}
    if request.param == "folder":
        return Kit(str(tmp_path / "store"), env)
    if request.param == "file":
        return Kit(f"file://{tmp_path}/store", env)
    server = request.getfixturevalue("s3_server")
    env = dict(server.env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Kit(f"s3://{server.bucket()}/artifacts", env)


def test_open_store_picks_the_store_by_location(kit: Kit) -> None:
    expected = LocalAssetStore if "://" not in kit.location else FsspecAssetStore
    assert type(kit.store) is expected


def test_round_trip_sidecar_and_ref(kit: Kit) -> None:
    store = kit.store
    data = b"\x89PNG\r\n\x1a\n" + b"x" * 100
    ref = store.store_bytes(
        data, content_type="image/png", metadata={"seed": 3}, tags={"task": "t"}, filename="a.png"
    )
    sha = hashlib.sha256(data).hexdigest()
    assert ref == {
        "$artifact": sha,
        "content_type": "image/png",
        "filename": "a.png",
        "sha256": sha,
        "size_bytes": len(data),
        "metadata": {"seed": 3},
    }
    assert store.load_bytes(sha) == data and store.load_bytes(ref) == data
    meta = store.get_metadata(sha)
    assert meta["content_type"] == "image/png" and meta["size_bytes"] == len(data) and meta["sha256"] == sha
    assert meta["tags"] == {"task": "t"} and meta["metadata"] == {"seed": 3} and meta["created_at"]
    assert str(store.get_content_path(sha)).endswith(f"/{sha[:2]}/{sha}.png")
    assert store.exists(sha) and not store.exists("0" * 64)


def test_dedup_keeps_one_blob_and_the_first_created_time(kit: Kit) -> None:
    store = kit.store
    first = store.store_bytes(b"same", content_type="text/plain")
    created = store.get_metadata(first["$artifact"])["created_at"]
    second = store.store_bytes(b"same", content_type="text/plain", tags={"again": "1"})
    assert first["$artifact"] == second["$artifact"]
    assert store.get_metadata(first["$artifact"])["created_at"] == created
    assert len([p for p in kit.objects() if not p.endswith(".json")]) == 1
    assert len(store.list()) == 1


def test_list_filters_and_delete(kit: Kit) -> None:
    store = kit.store
    a = store.store_bytes(b"a", content_type="image/png", tags={"task": "x"})
    b = store.store_bytes(b"b", content_type="video/mp4", tags={"task": "y"})
    assert {m["artifact_id"] for m in store.list()} == {a["$artifact"], b["$artifact"]}
    assert [m["artifact_id"] for m in store.list(tags={"task": "y"})] == [b["$artifact"]]
    assert [m["artifact_id"] for m in store.list(content_type="image/")] == [a["$artifact"]]
    assert len(store.list(limit=1)) == 1
    assert store.delete(a["$artifact"]) is True and store.delete(a["$artifact"]) is False
    assert store.get_metadata(a["$artifact"]) is None
    with pytest.raises(ArtifactNotFoundError):
        store.load_bytes(a["$artifact"])


def test_tampered_blob_and_sidecar_are_detected(kit: Kit) -> None:
    store = kit.store
    ref = store.store_bytes(b"precious bytes", content_type="application/octet-stream")
    aid = ref["$artifact"]
    kit.raw_write(store.get_content_path(aid), b"tampered bytes")
    with pytest.raises(ArtifactIntegrityError, match="corrupted"):
        store.load_bytes(aid)
    store.store_bytes(b"precious bytes", content_type="application/octet-stream")  # a new write repairs it
    assert store.load_bytes(aid) == b"precious bytes"
    other = store.store_bytes(b"other", content_type="text/plain")
    kit.raw_write(store._sidecar_path(other["$artifact"]), json.dumps({"artifact_id": aid}).encode())
    assert other["$artifact"] not in {m["artifact_id"] for m in store.list()}  # a sidecar naming another id
    kit.raw_write(store._sidecar_path(aid), b"{not json")
    with pytest.raises(ArtifactIntegrityError, match="not valid JSON"):
        store.get_metadata(aid)


@pytest.mark.parametrize(
    "bad_id",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        "",
        "a" * 63,
        "A" * 64,
        "0" * 64 + "/x",
        "0" * 63 + "\x00",
        None,
    ],
)
def test_ids_that_could_escape_the_store_are_rejected(kit: Kit, bad_id: Any) -> None:
    for op in (kit.store.load_bytes, kit.store.get_metadata, kit.store.delete, kit.store.exists):
        with pytest.raises(InvalidRequestError, match=r"Invalid artifact id|must be a string"):
            op(bad_id)


def test_filenames_and_arguments_are_checked(kit: Kit) -> None:
    store = kit.store
    ref = store.store_bytes(b"x", content_type="image/png", filename="../../evil.png")
    assert ref["filename"] == "evil.png"
    assert all("evil" not in p for p in kit.objects())
    with pytest.raises(InvalidRequestError, match="MIME"):
        store.store_bytes(b"x", content_type="png")
    with pytest.raises(InvalidRequestError, match="sha256"):
        store.store_bytes(b"x", content_type="text/plain", artifact_id="0" * 64)
    ref = store.store_bytes(b"y", content_type="text/plain", metadata={"obj": object(), "n": 1})
    assert ref["metadata"]["n"] == 1 and isinstance(ref["metadata"]["obj"], str)


def _writer(location: str, env: dict[str, str], worker: int, count: int) -> list[str]:
    import os

    os.environ.update(env)
    store = open_store(location)
    ids = []
    for i in range(count):
        ids.append(store.store_bytes(f"w{worker}-{i}".encode(), content_type="text/plain")["$artifact"])
        ids.append(store.store_bytes(b"shared by every writer", content_type="text/plain")["$artifact"])
    return ids


def test_four_processes_writing_at_once_lose_nothing(kit: Kit) -> None:
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_writer, [(kit.location, kit.env, w, 8) for w in range(4)])
    written = {aid for ids in results for aid in ids}
    assert len(written) == 4 * 8 + 1
    listed = {m["artifact_id"] for m in kit.store.list()}
    assert listed == written
    for aid in written:
        kit.store.load_bytes(aid)  # every blob whole and matching its checksum
    assert not [p for p in kit.objects() if "/.tmp-" in p]


def test_unreachable_or_missing_stores_fail_fast(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, s3_server: Any
) -> None:
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(
        ArtifactStoreError, match=r"s3://no-such-bucket-av/p does not exist.*create the bucket"
    ):
        open_store("s3://no-such-bucket-av/p", check=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(ArtifactStoreError, match=r"Cannot reach the store s3://b/p .*AWS_ENDPOINT_URL"):
        open_store(
            "s3://b/p", check=True, config_kwargs={"connect_timeout": 1, "retries": {"max_attempts": 0}}
        )
    with pytest.raises(InvalidRequestError, match="Storage options apply to URL stores"):
        open_store(str(tmp_path), endpoint_url="http://x")


def test_the_cli_keeps_outputs_in_an_s3_store(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: Any
) -> None:
    """``generate --store s3://...`` and ``store list/export --store-dir s3://...``, over a real upstream."""
    from abstractvision.cli import main
    from abstractvision.server import create_app, serve_in_thread
    from fakes import FakeBackend

    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    url = f"s3://{s3_server.bucket()}/cli"
    with serve_in_thread(create_app(FakeBackend())) as upstream:
        code = main(["generate", "a cat", "--base-url", upstream.url + "/v1", "--store", url,
                     "-o", str(tmp_path / "cat.png"), "--json", "-q"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    (item,) = out["outputs"]
    assert (tmp_path / "cat.png").read_bytes() == open_store(url).load_bytes(item["artifact_id"])
    assert main(["store", "list", "--store-dir", url, "--json"]) == 0
    assert [m["artifact_id"] for m in json.loads(capsys.readouterr().out)] == [item["artifact_id"]]
    assert (
        main(["store", "export", item["artifact_id"][:10], "--store-dir", url, "-o", str(tmp_path / "x.png")])
        == 0
    )
    assert (tmp_path / "x.png").read_bytes() == (tmp_path / "cat.png").read_bytes()
    code = main(
        ["generate", "x", "--base-url", "http://127.0.0.1:9/v1", "--store", url, "--store-dir", str(tmp_path)]
    )
    assert code == 2 and "Give the store once" in capsys.readouterr().err
