"""File permissions: files written for the user follow the umask; the store keeps its files private."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from abstractvision import LocalAssetStore, VisionManager
from fakes import FakeBackend

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: os.PathLike[str] | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=lambda m: f"umask{m:03o}")
def test_generated_asset_save_follows_the_umask(tmp_path, mask):
    asset = VisionManager(backend=FakeBackend()).generate_image("x", seed=1)
    with umask(mask):
        named = asset.save(tmp_path / "out.png")
        in_folder = asset.save(tmp_path)  # a directory: a file named after the content hash
    assert mode(named) == 0o666 & ~mask
    assert mode(in_folder) == 0o666 & ~mask
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]  # no temporary file left


def test_overwriting_a_file_keeps_the_umask_rule(tmp_path):
    asset = VisionManager(backend=FakeBackend()).generate_image("x", seed=1)
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    target.chmod(0o600)
    with umask(0o022):
        asset.save(target)
    assert target.read_bytes() == asset.data and mode(target) == 0o644


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077], ids=lambda m: f"umask{m:03o}")
def test_store_files_are_private_whatever_the_umask(tmp_path, mask):
    with umask(mask):
        store = LocalAssetStore(tmp_path / "store")
        ref = VisionManager(backend=FakeBackend(), store=store).generate_image("x", seed=2)
    blob = store.get_content_path(ref["$artifact"])
    sidecar = blob.with_suffix(".json")
    assert sidecar.is_file()
    assert mode(blob) == LocalAssetStore.FILE_MODE == 0o600
    assert mode(sidecar) == 0o600
    assert mode(blob.parent) == 0o777 & ~mask  # folders follow the umask
