"""LocalAssetStore, RuntimeArtifactStoreAdapter and artifact refs."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp

import pytest

from abstractvision import LocalAssetStore, RuntimeArtifactStoreAdapter, is_artifact_ref, make_media_ref
from abstractvision.errors import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactStoreError,
    InvalidRequestError,
)


def test_round_trip_sidecar_and_ref(store):
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
    assert store.load_bytes(sha) == data
    assert store.load_bytes(ref) == data
    meta = store.get_metadata(sha)
    assert meta["content_type"] == "image/png" and meta["size_bytes"] == len(data) and meta["sha256"] == sha
    assert meta["tags"] == {"task": "t"} and meta["metadata"] == {"seed": 3} and meta["created_at"]
    assert store.get_content_path(sha).name == f"{sha}.png"
    assert store.get_content_path(sha).parent.parent == store.base_dir


def test_dedup_keeps_one_blob_and_the_first_created_time(store):
    first = store.store_bytes(b"same", content_type="text/plain")
    created = store.get_metadata(first["$artifact"])["created_at"]
    second = store.store_bytes(b"same", content_type="text/plain", tags={"again": "1"})
    assert first["$artifact"] == second["$artifact"]
    assert store.get_metadata(first["$artifact"])["created_at"] == created
    blobs = [p for p in store.base_dir.rglob("*") if p.is_file() and not p.name.endswith(".json")]
    assert len(blobs) == 1
    assert len(store.list()) == 1


def test_list_filters_and_delete(store):
    a = store.store_bytes(b"a", content_type="image/png", tags={"task": "x"})
    b = store.store_bytes(b"b", content_type="video/mp4", tags={"task": "y"})
    assert {m["artifact_id"] for m in store.list()} == {a["$artifact"], b["$artifact"]}
    assert [m["artifact_id"] for m in store.list(tags={"task": "y"})] == [b["$artifact"]]
    assert [m["artifact_id"] for m in store.list(content_type="image/")] == [a["$artifact"]]
    assert len(store.list(limit=1)) == 1
    assert store.delete(a["$artifact"]) is True
    assert store.delete(a["$artifact"]) is False
    assert store.get_metadata(a["$artifact"]) is None
    with pytest.raises(ArtifactNotFoundError):
        store.load_bytes(a["$artifact"])


def test_corrupted_blob_is_detected_and_repaired_by_a_new_write(store):
    ref = store.store_bytes(b"precious bytes", content_type="application/octet-stream")
    path = store.get_content_path(ref["$artifact"])
    path.write_bytes(b"tampered bytes")
    with pytest.raises(ArtifactIntegrityError, match="corrupted"):
        store.load_bytes(ref["$artifact"])
    store.store_bytes(b"precious bytes", content_type="application/octet-stream")
    assert store.load_bytes(ref["$artifact"]) == b"precious bytes"


@pytest.mark.parametrize(
    "bad_id",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        "",
        "a" * 63,
        "A" * 64,
        "g" * 64,
        "0" * 64 + "/x",
        "0" * 63 + "\x00",
        123,
        None,
    ],
)
def test_ids_that_could_escape_the_store_are_rejected(store, bad_id):
    for op in (store.load_bytes, store.get_metadata, store.delete):
        with pytest.raises(InvalidRequestError, match=r"Invalid artifact id|must be a string"):
            op(bad_id)


def test_filename_cannot_place_files_outside(store, tmp_path):
    ref = store.store_bytes(b"x", content_type="image/png", filename="../../evil.png")
    assert ref["filename"] == "evil.png"
    assert not (tmp_path / "evil.png").exists()


def test_bad_arguments(store):
    with pytest.raises(InvalidRequestError):
        store.store_bytes("text", content_type="text/plain")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="MIME"):
        store.store_bytes(b"x", content_type="png")
    with pytest.raises(InvalidRequestError, match="sha256"):
        store.store_bytes(b"x", content_type="text/plain", artifact_id="0" * 64)


def test_env_var_sets_the_default_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("ABSTRACTVISION_STORE_DIR", str(tmp_path / "env-store"))
    store = LocalAssetStore()
    assert store.base_dir == (tmp_path / "env-store").resolve()


def test_metadata_is_made_json_safe(store):
    ref = store.store_bytes(b"x", content_type="text/plain", metadata={"obj": object(), "n": 1})
    json.dumps(ref)
    assert ref["metadata"]["n"] == 1 and isinstance(ref["metadata"]["obj"], str)


def test_no_temporary_files_are_left_behind(store):
    for i in range(20):
        store.store_bytes(f"blob {i}".encode(), content_type="text/plain")
    assert not [p for p in store.base_dir.rglob(".tmp-*")]


def test_disk_errors_become_typed_errors(store):
    sha = hashlib.sha256(b"blocked").hexdigest()
    (store.base_dir / sha[:2]).write_bytes(b"a file where the shard directory should be")
    with pytest.raises(ArtifactStoreError, match="Cannot create"):
        store.store_bytes(b"blocked", content_type="text/plain")
    assert store.list() == []


def _writer(base_dir: str, worker: int, count: int) -> list[str]:
    store = LocalAssetStore(base_dir)
    ids = []
    for i in range(count):
        payload = f"shared-{i % 5}".encode() if i % 3 == 0 else f"w{worker}-{i}".encode()
        ids.append(
            store.store_bytes(payload, content_type="text/plain", tags={"w": str(worker)})["$artifact"]
        )
    return ids


def test_concurrent_writers_in_several_processes_lose_nothing(tmp_path):
    base = str(tmp_path / "shared")
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_writer, [(base, w, 60) for w in range(4)])
    store = LocalAssetStore(base)
    expected = {
        hashlib.sha256(p).hexdigest()
        for w in range(4)
        for p in [f"shared-{i % 5}".encode() if i % 3 == 0 else f"w{w}-{i}".encode() for i in range(60)]
    }
    assert {i for ids in results for i in ids} == expected
    assert {m["artifact_id"] for m in store.list()} == expected
    for aid in expected:
        assert hashlib.sha256(store.load_bytes(aid)).hexdigest() == aid
    assert not list(store.base_dir.rglob(".tmp-*"))


# -- refs and the runtime adapter -------------------------------------------------------


def test_refs():
    ref = make_media_ref("abc", content_type="image/png", size_bytes=3, metadata={"k": "v"})
    assert ref == {"$artifact": "abc", "content_type": "image/png", "size_bytes": 3, "metadata": {"k": "v"}}
    assert is_artifact_ref(ref)
    for value in ({"$artifact": ""}, {"artifact": "x"}, "abc", None, {"$artifact": 3}):
        assert not is_artifact_ref(value)
    with pytest.raises(InvalidRequestError):
        make_media_ref("")


class _ExternalStore:
    """Looks like AbstractRuntime's ArtifactStore: store(content, content_type=, run_id=, tags=, metadata=)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[bytes, dict]] = {}

    def store(self, content, *, content_type, run_id=None, tags=None, metadata=None):
        aid = f"ext-{len(self.items)}"
        self.items[aid] = (content, {"content_type": content_type, "tags": tags, "metadata": metadata})
        return {"artifact_id": aid}

    def load(self, artifact_id):
        item = self.items.get(artifact_id)
        return None if item is None else item[0]

    def get_metadata(self, artifact_id):
        return self.items[artifact_id][1]


class _MinimalStore:
    def __init__(self) -> None:
        self.blob = b""

    def store(self, content, *, content_type):
        self.blob = content

        class Meta:
            artifact_id = "only"

        return Meta()

    def load(self, artifact_id):
        class Artifact:
            content = self.blob

        return Artifact()


def test_runtime_adapter_forwards_metadata():
    ext = _ExternalStore()
    adapter = RuntimeArtifactStoreAdapter(ext)
    ref = adapter.store_bytes(
        b"data", content_type="image/png", metadata={"seed": 1}, tags={"task": "t"}, run_id="r1"
    )
    assert ref["$artifact"] == "ext-0" and ref["metadata"] == {"seed": 1}
    assert ref["sha256"] == hashlib.sha256(b"data").hexdigest()
    assert ext.items["ext-0"][1]["metadata"] == {"seed": 1}
    assert ext.items["ext-0"][1]["tags"]["task"] == "t"
    assert adapter.load_bytes(ref) == b"data"
    assert adapter.get_metadata("ext-0")["content_type"] == "image/png"
    with pytest.raises(ArtifactNotFoundError):
        adapter.load_bytes("missing")


def test_runtime_adapter_only_passes_accepted_kwargs():
    ext = _MinimalStore()
    adapter = RuntimeArtifactStoreAdapter(ext)
    ref = adapter.store_bytes(b"abc", content_type="image/png", metadata={"x": 1}, run_id="r")
    assert ref["$artifact"] == "only"
    assert adapter.load_bytes("only") == b"abc"
    assert adapter.get_metadata("only") is None
    with pytest.raises(InvalidRequestError):
        RuntimeArtifactStoreAdapter(object())
