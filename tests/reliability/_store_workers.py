"""Child-process entry points for the store stress tests (importable under the spawn start method)."""

from __future__ import annotations

import hashlib
import os
import random
import time
from typing import Any


def payload(worker: int, i: int, *, shared_every: int = 4, shared_pool: int = 40) -> tuple[bytes, str]:
    """The i-th write of ``worker``: every ``shared_every``-th is shared by all workers."""
    if i % shared_every == 0:
        key = i // shared_every % shared_pool
        return (f"shared-{key}-".encode() * (1 + key % 7)), "image/png"
    size = 64 + (worker * 7919 + i * 104729) % 4096
    seed = hashlib.sha256(f"w{worker}-{i}".encode()).digest()
    return (seed * (size // 32 + 1))[:size], "application/octet-stream"


def concurrent_writer(base_dir: str, worker: int, count: int, start: Any) -> dict[str, Any]:
    """Write ``count`` artifacts (some identical across workers), reading back as it goes."""
    from abstractvision import LocalAssetStore
    from abstractvision.errors import ArtifactError

    store = LocalAssetStore(base_dir)
    rng = random.Random(worker)
    ids: list[str] = []
    reads = bad_reads = lists = 0
    start.wait(timeout=60)
    for i in range(count):
        data, mime = payload(worker, i)
        ref = store.store_bytes(data, content_type=mime, tags={"worker": str(worker)}, metadata={"i": i})
        if ref["$artifact"] != hashlib.sha256(data).hexdigest():
            bad_reads += 1
        ids.append(ref["$artifact"])
        if i % 5 == 0:  # read back something written earlier (by anyone)
            aid = rng.choice(ids)
            try:
                if hashlib.sha256(store.load_bytes(aid)).hexdigest() != aid:
                    bad_reads += 1
            except ArtifactError:
                bad_reads += 1
            reads += 1
        if i % 100 == 99:
            for meta in store.list(limit=20):
                if not isinstance(meta.get("artifact_id"), str):
                    bad_reads += 1
            lists += 1
    return {"ids": ids, "reads": reads, "bad_reads": bad_reads, "lists": lists}


def endless_writer(base_dir: str, blob_bytes: int, ready: Any) -> None:
    """Write unique large blobs until killed."""
    from abstractvision import LocalAssetStore

    store = LocalAssetStore(base_dir)
    i = 0
    block = os.urandom(1 << 16)
    while True:
        head = f"{os.getpid()}-{i}-{time.time_ns()}".encode()
        data = head + block * (blob_bytes // len(block))
        ready.set()
        store.store_bytes(data, content_type="image/png", metadata={"i": i})
        i += 1


def writer_stalled_in_fsync(base_dir: str, stall_on_call: int, stalled: Any) -> None:
    """Store one artifact; the ``stall_on_call``-th fsync (1: blob, 2: sidecar) never returns.

    Stands in for a slow disk, so the parent can SIGKILL the writer at a known point:
    data written to the temporary file, not yet renamed into place.
    """
    from abstractvision import LocalAssetStore

    real_fsync = os.fsync
    calls = [0]

    def slow_fsync(fd: int) -> None:
        calls[0] += 1
        if calls[0] == stall_on_call:
            stalled.set()
            time.sleep(3600)
        real_fsync(fd)

    os.fsync = slow_fsync  # type: ignore[assignment]
    store = LocalAssetStore(base_dir)
    store.store_bytes(b"stalled write " * 1000, content_type="image/png")
