"""LocalAssetStore under stress and faults.

- 8 processes x 500 concurrent writes (a quarter of them identical across processes),
  reading back while writing: nothing lost, nothing corrupted, every blob verifies.
- Writers killed with SIGKILL mid-write (at random times and at known points inside the
  atomic write): no partial blob or sidecar is ever visible; the temporary files left
  behind are invisible and removed by ``cleanup_temporary_files``.
- A full disk, for real (a 64 KiB tmpfs, when this process may mount one) and by fault
  injection at every step of the write path: a typed ``ArtifactStoreError``, a consistent
  store, earlier artifacts intact.
- Tampered blobs are detected on read; tampered sidecars never crash ``list()``.

``ABSTRACTVISION_FUZZ=long`` raises the counts (see ``docs/reliability.md``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from abstractvision import LocalAssetStore, VisionManager
from abstractvision.errors import (
    AbstractVisionError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactStoreError,
    InvalidRequestError,
)
from fakes import FakeBackend, png_bytes
from reliability import _store_workers as workers
from reliability._support import STATS, is_long

pytestmark = pytest.mark.timeout(900)

PROCESSES = 8
WRITES = 2000 if is_long() else 500
RANDOM_KILLS = 40 if is_long() else 6


def audit(store: LocalAssetStore) -> dict[str, int]:
    """Everything a reader can see is whole: listed artifacts load and verify, their sidecar
    matches the bytes, every blob file under its final name holds the bytes of its name."""
    listed = 0
    for meta in store.list():
        aid = meta["artifact_id"]
        data = store.load_bytes(aid)  # verifies the sha256
        assert meta["sha256"] == aid and meta["size_bytes"] == len(data), meta
        assert (store.base_dir / aid[:2] / meta["content_file"]).is_file()
        listed += 1
    blobs = temporary = 0
    for path in store.base_dir.rglob("*"):
        if not path.is_file():
            continue
        if path.name.startswith(".tmp-"):
            assert path.name.endswith(".part")
            temporary += 1
            continue
        stem, _, ext = path.name.partition(".")
        assert len(stem) == 64 and path.parent.name == stem[:2], path
        if ext == "json":
            json.loads(path.read_bytes())  # a sidecar is never half written
        else:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == stem, f"partial blob {path}"
            blobs += 1
    return {"listed": listed, "blobs": blobs, "temporary": temporary}


# -- concurrency ----------------------------------------------------------------------------


def test_concurrent_writers_lose_and_corrupt_nothing(tmp_path):
    base = str(tmp_path / "store")
    LocalAssetStore(base)
    ctx = mp.get_context("spawn")
    started = time.perf_counter()
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(PROCESSES) as pool:
            pending = pool.starmap_async(
                workers.concurrent_writer, [(base, w, WRITES, start) for w in range(PROCESSES)]
            )
            time.sleep(0.5)  # let every worker reach the start line
            start.set()
            results = pending.get(timeout=600)
    wall = time.perf_counter() - started

    expected: dict[str, bytes] = {}
    identical = 0
    for w in range(PROCESSES):
        for i in range(WRITES):
            data, _ = workers.payload(w, i)
            aid = hashlib.sha256(data).hexdigest()
            identical += aid in expected
            expected[aid] = data
    returned = {aid for r in results for aid in r["ids"]}
    assert returned == set(expected)
    assert sum(r["bad_reads"] for r in results) == 0

    store = LocalAssetStore(base)
    seen = audit(store)
    listed = {m["artifact_id"] for m in store.list()}
    assert listed == set(expected), f"lost: {len(set(expected) - listed)}"
    for aid, data in expected.items():
        assert store.load_bytes(aid) == data
    assert seen["temporary"] == 0 and seen["blobs"] == len(expected)
    STATS.figure(
        "concurrent_writes",
        processes=PROCESSES,
        writes=PROCESSES * WRITES,
        identical_writes=identical,
        distinct_artifacts=len(expected),
        reads_during_writes=sum(r["reads"] for r in results),
        lists_during_writes=sum(r["lists"] for r in results),
        lost=len(set(expected) - listed),
        corrupted=0,
        wall_s=round(wall, 2),
    )


# -- SIGKILL mid-write ----------------------------------------------------------------------


@contextlib.contextmanager
def child(target: Any, *args: Any) -> Iterator[mp.process.BaseProcess]:
    proc = mp.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    try:
        yield proc
    finally:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)


def test_writers_killed_at_random_times_leave_nothing_partial_visible(tmp_path):
    base = str(tmp_path / "store")
    rng = random.Random(1234)
    ctx = mp.get_context("spawn")
    interrupted = 0
    for _ in range(RANDOM_KILLS):
        ready = ctx.Event()
        with child(workers.endless_writer, base, 4 << 20, ready) as proc:
            assert ready.wait(60), "the writer did not start"
            time.sleep(rng.uniform(0.02, 0.6))
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(30)
            assert proc.exitcode == -signal.SIGKILL
        seen = audit(LocalAssetStore(base))
        interrupted += seen["temporary"] > 0
        store = LocalAssetStore(base)
        assert store.cleanup_temporary_files(older_than_s=0) == seen["temporary"]
        assert audit(store)["temporary"] == 0
    STATS.figure("sigkill_random", kills=RANDOM_KILLS, kills_leaving_a_temporary_file=interrupted)


@pytest.mark.parametrize(("stall_on", "what"), [(1, "blob"), (2, "sidecar")])
def test_writer_killed_inside_the_atomic_write(tmp_path, stall_on, what):
    """Killed after the bytes reached the temporary file, before the rename: invisible."""
    base = str(tmp_path / "store")
    earlier = LocalAssetStore(base).store_bytes(b"written before", content_type="text/plain")
    stalled = mp.get_context("spawn").Event()
    with child(workers.writer_stalled_in_fsync, base, stall_on, stalled) as proc:
        assert stalled.wait(60), "the writer never reached fsync"
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
    store = LocalAssetStore(base)
    seen = audit(store)
    assert seen["temporary"] == 1
    aid = hashlib.sha256(b"stalled write " * 1000).hexdigest()
    assert [m["artifact_id"] for m in store.list()] == [earlier["$artifact"]]
    if what == "blob":
        assert not store.exists(aid)
        with pytest.raises(ArtifactNotFoundError):
            store.load_bytes(aid)
    else:  # the blob was complete; without its sidecar it is not listed, and reads verify
        assert store.load_bytes(aid) == b"stalled write " * 1000
    assert store.cleanup_temporary_files(older_than_s=0) == 1
    assert audit(store)["temporary"] == 0
    store.store_bytes(b"stalled write " * 1000, content_type="image/png")  # the retry succeeds
    assert len(store.list()) == 2
    STATS.figure("sigkill_inside_atomic_write", **{f"killed_before_{what}_rename": 1})


# -- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB filesystem (needs root and mount permission; skipped otherwise)."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def test_a_really_full_disk_is_a_typed_error_and_the_store_stays_consistent(tiny_tmpfs):
    store = LocalAssetStore(tiny_tmpfs / "store")
    kept: dict[str, bytes] = {}
    failures = 0
    for i in range(200):
        data = os.urandom(1500 + i * 37)
        try:
            ref = store.store_bytes(data, content_type="application/octet-stream")
        except ArtifactStoreError as exc:
            assert "disk is full" in str(exc) or "No space" in str(exc), exc
            failures += 1
            if failures >= 5:
                break
            continue
        kept[ref["$artifact"]] = data
    assert failures, "the 64 KiB filesystem never filled up"
    audit(store)
    assert audit(store)["temporary"] == 0
    listed = {m["artifact_id"] for m in store.list()}
    assert set(kept) <= listed
    for aid, data in kept.items():
        assert store.load_bytes(aid) == data
    with pytest.raises(ArtifactStoreError, match="disk is full"):
        store.store_bytes(os.urandom(200_000), content_type="image/png")  # larger than the disk
    assert audit(store)["temporary"] == 0
    # deleting frees space: writing works again
    for aid in list(kept)[:3]:
        store.delete(aid)
    store.store_bytes(b"after cleanup", content_type="text/plain")
    STATS.figure("enospc_real_tmpfs", artifacts_before_full=len(kept), enospc_errors=failures + 1)


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullDiskFile:
    """A file object whose write() stores half the bytes, then fails with ENOSPC."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh

    def write(self, data: bytes) -> int:
        self._fh.write(bytes(data[: len(data) // 2]))
        self._fh.flush()
        raise _enospc()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> _FullDiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


FAULT_POINTS = ["create", "write", "fsync", "replace"]


@contextlib.contextmanager
def disk_full_at(monkeypatch: pytest.MonkeyPatch, point: str, nth: int) -> Iterator[list[int]]:
    """Make the ``nth`` call (1-based, per store_bytes: 1 = blob, 2 = sidecar) of ``point`` fail."""
    calls = [0]

    def hit() -> bool:
        calls[0] += 1
        return calls[0] == nth

    if point == "create":  # the temporary file: os.open(..., O_CREAT | O_EXCL, mode)
        real_open = os.open

        def os_open(path: Any, flags: int, *a: Any, **kw: Any) -> Any:
            if flags & os.O_CREAT and hit():
                raise _enospc()
            return real_open(path, flags, *a, **kw)

        monkeypatch.setattr(os, "open", os_open)
    elif point == "write":
        real_fdopen = os.fdopen

        def fdopen(fd: int, *a: Any, **kw: Any) -> Any:
            fh = real_fdopen(fd, *a, **kw)
            return _FullDiskFile(fh) if hit() else fh

        monkeypatch.setattr(os, "fdopen", fdopen)
    elif point == "fsync":
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            if hit():
                raise _enospc()
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
    else:
        real_replace = os.replace

        def replace(src: Any, dst: Any, **kw: Any) -> None:
            if hit():
                raise _enospc()
            real_replace(src, dst, **kw)

        monkeypatch.setattr(os, "replace", replace)
    try:
        yield calls
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("point", FAULT_POINTS)
@pytest.mark.parametrize("target", ["blob", "sidecar"])
def test_disk_full_injected_at_every_step_of_the_write_path(tmp_path, monkeypatch, point, target):
    store = LocalAssetStore(tmp_path / "store")
    before = {}
    for i in range(5):
        data = f"kept {i}".encode() * 100
        before[store.store_bytes(data, content_type="text/plain")["$artifact"]] = data
    data = os.urandom(50_000)
    aid = hashlib.sha256(data).hexdigest()
    with disk_full_at(monkeypatch, point, 1 if target == "blob" else 2) as calls:
        with pytest.raises(ArtifactStoreError, match="disk is full") as info:
            store.store_bytes(data, content_type="image/png", metadata={"big": True})
        assert calls[0] >= 1
    assert info.value.__cause__ is not None and info.value.__cause__.errno == errno.ENOSPC
    seen = audit(store)
    assert seen["temporary"] == 0, "the failed write left its temporary file"
    assert {m["artifact_id"] for m in store.list()} == set(before)
    for kept_id, kept in before.items():
        assert store.load_bytes(kept_id) == kept
    if target == "blob":
        assert not store.exists(aid)
    else:  # the blob is complete and verifies; only its sidecar is missing, so it is not listed
        assert store.load_bytes(aid) == data
    ref = store.store_bytes(data, content_type="image/png")  # once space is back, the retry works
    assert store.load_bytes(ref) == data and len(store.list()) == len(before) + 1
    STATS.figure("enospc_injected", faults=1, **{f"{point}_{target}": "ArtifactStoreError"})


def test_disk_full_while_the_manager_stores_a_result(tmp_path, monkeypatch):
    """Through VisionManager: the generation's error is typed and the store stays clean."""
    store = LocalAssetStore(tmp_path / "store")
    vm = VisionManager(backend=FakeBackend(), store=store)
    first = vm.generate_image("kept")
    with disk_full_at(monkeypatch, "write", 1), pytest.raises(ArtifactStoreError, match="disk is full"):
        vm.generate_image("lost to a full disk")
    assert [m["artifact_id"] for m in store.list()] == [first["$artifact"]]
    assert audit(store)["temporary"] == 0
    STATS.figure("enospc_injected", faults=1, manager_generate_image="ArtifactStoreError")


# -- tampering ------------------------------------------------------------------------------

TAMPERINGS = {
    "flip_one_byte": lambda b: b[:10] + bytes([b[10] ^ 0x01]) + b[11:],
    "truncate": lambda b: b[: len(b) // 2],
    "append": lambda b: b + b"\x00",
    "empty": lambda b: b"",
    "other_content": lambda b: png_bytes(3, 3),
}


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
def test_a_tampered_blob_is_detected_on_read(tmp_path, how):
    store = LocalAssetStore(tmp_path / "store")
    ref = store.store_bytes(png_bytes(16, 16), content_type="image/png")
    path = store.get_content_path(ref)
    path.write_bytes(TAMPERINGS[how](path.read_bytes()))
    with pytest.raises(ArtifactIntegrityError, match="corrupted"):
        store.load_bytes(ref)
    # a manager given the ref refuses the input, naming it
    vm = VisionManager(backend=FakeBackend(), store=store)
    with pytest.raises(InvalidRequestError, match=r"image: .*corrupted") as info:
        vm.edit_image("edit", ref)
    assert info.value.param == "image"
    # storing the same bytes again repairs the blob
    store.store_bytes(png_bytes(16, 16), content_type="image/png")
    assert store.load_bytes(ref) == png_bytes(16, 16)
    STATS.figure("tampered_blobs", **{how: "ArtifactIntegrityError"})


SIDECARS = {
    "not_json": b"{not json",
    "empty": b"",
    "binary": bytes(range(256)),
    "deeply_nested": b"[" * 50_000,
    "a_list": b"[1, 2, 3]",
    "wrong_types": b'{"artifact_id": "%(aid)s", "tags": 5, "content_type": [], "created_at": {}}',
    "names_another_artifact": b'{"artifact_id": "' + b"0" * 64 + b'", "content_type": "image/png"}',
}


@pytest.mark.parametrize("how", sorted(SIDECARS))
def test_a_tampered_sidecar_gives_typed_errors_never_a_crash(tmp_path, how):
    store = LocalAssetStore(tmp_path / "store")
    good = store.store_bytes(b"good", content_type="text/plain", tags={"k": "v"})
    ref = store.store_bytes(b"victim", content_type="text/plain", tags={"k": "v"})
    aid = ref["$artifact"]
    (store.base_dir / aid[:2] / f"{aid}.json").write_bytes(SIDECARS[how].replace(b"%(aid)s", aid.encode()))
    listed = store.list()
    assert good["$artifact"] in {m["artifact_id"] for m in listed}
    store.list(tags={"k": "v"})
    store.list(content_type="text/")
    outcomes = {}
    for name in ("load_bytes", "get_metadata", "exists", "get_content_path", "delete"):
        try:
            getattr(store, name)(aid)
            outcomes[name] = "ok"
        except AbstractVisionError as exc:
            outcomes[name] = type(exc).__name__
    assert store.load_bytes(good) == b"good"
    STATS.figure("tampered_sidecars", **{how: outcomes["load_bytes"]})
