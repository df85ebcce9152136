"""Model file checks and the tiny model writers (no native library needed)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from abstractvision.backends._sdcpp.files import check_model_file
from abstractvision.errors import ModelLoadError
from abstractvision.testing.tiny_sdcpp import (
    esrgan_shapes,
    flux_shapes,
    random_tensors,
    taesd_shapes,
    write_gguf,
    write_safetensors,
)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("sdcpp-files")
    shapes = flux_shapes()
    st = write_safetensors(folder / "flux.safetensors", random_tensors(shapes), shapes=shapes)
    gg = write_gguf(folder / "flux.gguf", random_tensors(shapes), shapes=shapes)
    return {"safetensors": st, "gguf": gg}


def test_valid_files_are_recognised(small_files: dict[str, str]) -> None:
    st = check_model_file(small_files["safetensors"], role="diffusion_model")
    gg = check_model_file(small_files["gguf"], role="diffusion_model")
    assert (st.format, gg.format) == ("safetensors", "gguf")
    assert st.size == os.path.getsize(small_files["safetensors"])
    assert os.path.isabs(st.path)


def test_checkpoint_formats_are_recognised(tmp_path: Any) -> None:
    (tmp_path / "a.ckpt").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    (tmp_path / "b.pt").write_bytes(b"\x80\x02" + b"\x00" * 64)
    assert check_model_file(tmp_path / "a.ckpt", role="model").format == "pytorch-zip"
    assert check_model_file(tmp_path / "b.pt", role="model").format == "pytorch-pickle"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"hello, I am a text file pretending to be weights", "not a GGUF, safetensors"),
        (b"<!DOCTYPE html><html>404 Not Found</html>", "not a GGUF, safetensors"),
        (struct.pack("<Q", 10**9) + b"{}", "header length"),
        (struct.pack("<Q", 12) + b"{not json!!}", "does not parse"),
        (b"GGUF" + struct.pack("<I", 99) + b"\x00" * 16, "unsupported GGUF version"),
        (b"GGUF" + struct.pack("<I", 3), "ends early"),
    ],
)
def test_bad_files_raise_model_load_error(tmp_path: Any, content: bytes, message: str) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as info:
        check_model_file(path, role="vae")
    assert str(info.value).startswith("vae:")


def test_truncated_files_are_detected(small_files: dict[str, str], tmp_path: Any) -> None:
    for fmt, source in small_files.items():
        data = Path(source).read_bytes()
        cut = tmp_path / f"cut.{fmt}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ModelLoadError, match="truncated"):
            check_model_file(cut, role="diffusion_model")


def test_safetensors_with_bad_offsets(tmp_path: Any) -> None:
    header = json.dumps({"w": {"dtype": "F16", "shape": [2], "data_offsets": "nope"}}).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 4)
    with pytest.raises(ModelLoadError, match="data_offsets"):
        check_model_file(path, role="model")


def test_missing_directory_and_wrong_type(tmp_path: Any) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        check_model_file(tmp_path / "nope.gguf", role="clip_l")
    with pytest.raises(ModelLoadError, match="not a regular file"):
        check_model_file(tmp_path, role="clip_l")
    with pytest.raises(ModelLoadError, match="expected a file path"):
        check_model_file(42, role="clip_l")


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() == 0, reason="root can read anything")
def test_unreadable_file(small_files: dict[str, str], tmp_path: Any) -> None:
    path = tmp_path / "locked.safetensors"
    path.write_bytes(Path(small_files["safetensors"]).read_bytes())
    path.chmod(0)
    with pytest.raises(ModelLoadError, match="cannot read"):
        check_model_file(path, role="vae")


def test_tiny_writers_are_deterministic_and_sized(tmp_path: Any) -> None:
    shapes = taesd_shapes()
    a = write_safetensors(tmp_path / "a.safetensors", random_tensors(shapes, seed=3), shapes=shapes)
    b = write_safetensors(tmp_path / "b.safetensors", random_tensors(shapes, seed=3), shapes=shapes)
    c = write_safetensors(tmp_path / "c.safetensors", random_tensors(shapes, seed=4), shapes=shapes)
    assert Path(a).read_bytes() == Path(b).read_bytes() != Path(c).read_bytes()
    n = sum(1 for _ in esrgan_shapes())
    assert n == 2 * (1 + 15 + 4)  # conv_first, one RRDB (3 x 5 convs), body, up1, hr, last
    values = struct.unpack("<64e", next(random_tensors({"w": (64, 128)}))[2][:128])
    assert all(abs(v) < 0.2 for v in values) and len({round(v, 4) for v in values}) > 32
