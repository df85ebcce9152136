"""models, store, doctor; and piping into `head`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cli_helpers import REPO, subprocess_env

# -- models -----------------------------------------------------------------------------


def test_models_lists_the_registry(cli) -> None:
    from abstractvision import VisionModelCapabilitiesRegistry

    reg = VisionModelCapabilitiesRegistry()
    result = cli("models")
    assert result.code == 0
    header, *rows = result.out.splitlines()
    assert header.split() == ["MODEL", "TASKS", "BACKENDS"]
    assert [line.split()[0] for line in rows] == reg.list_models()
    # full task names, as every --task takes them (issue 20: no 't2i' that --task refused)
    schnell = next(r.split() for r in rows if r.startswith("black-forest-labs/FLUX.1-schnell "))
    assert schnell[1] == ",".join(reg.get("black-forest-labs/FLUX.1-schnell").tasks)
    assert not any(short in result.out.split() for short in ("t2i", "i2i", "t2v", "i2v"))
    assert header.index("TASKS") == rows[0].index(rows[0].split()[1])  # the columns line up


@pytest.mark.parametrize(("short", "full"), [("t2i", "text_to_image"), ("i2i", "image_to_image"),
                                              ("upscale", "image_upscale"), ("multi-view", "multi_view_image"),
                                              ("t2v", "text_to_video"), ("I2V", "image_to_video")])  # fmt: skip
def test_task_short_names_are_accepted_wherever_a_task_is_typed(cli, short, full) -> None:
    by_short, by_full = cli("models", "--task", short, "--json"), cli("models", "-t", full, "--json")
    assert by_short.code == 0, by_short.err
    assert by_short.json() == by_full.json() and by_full.json()
    local = cli("models", "--local", "--task", short, "--json")
    assert local.code == 0, local.err
    listed = cli("store", "list", "--task", short, "--json")
    assert listed.code == 0, listed.err


def test_models_filtered_by_task_and_backend(cli) -> None:
    from abstractvision import VisionModelCapabilitiesRegistry

    reg = VisionModelCapabilitiesRegistry()
    result = cli("models", "--task", "text_to_video", "--json")
    assert result.code == 0
    assert [m["model_id"] for m in result.json()] == reg.models_for_task("text_to_video")
    result = cli("models", "--backend", "sdcpp", "--json")
    assert all("sdcpp" in m["backends"] for m in result.json())


def test_models_show_one_model(cli) -> None:
    result = cli("models", "black-forest-labs/FLUX.1-schnell")
    assert result.code == 0
    assert result.out.startswith("black-forest-labs/FLUX.1-schnell\n")
    assert "text_to_image" in result.out
    assert "steps" in result.out and "default 4" in result.out
    as_json = cli("models", "black-forest-labs/FLUX.1-schnell", "--json").json()
    assert as_json["model_id"] == "black-forest-labs/FLUX.1-schnell"
    assert "text_to_image" in as_json["tasks"]


def test_models_task_names(cli) -> None:
    result = cli("models", "--tasks", "--json")
    assert set(result.json()) >= {"text_to_image", "image_to_image", "text_to_video"}


def test_models_unknown_model_and_task(cli) -> None:
    result = cli("models", "black-forest-labs/FLUX.1-schnel")
    assert result.code == 2
    assert "Did you mean" in result.err and "abstractvision models" in result.err
    result = cli("models", "--task", "text_to_sound")
    assert result.code == 2
    assert "unknown task 'text_to_sound'; tasks: text_to_image, image_to_image" in result.err
    assert "short names: t2i (text_to_image)" in result.err


# -- store ------------------------------------------------------------------------------


@pytest.fixture
def filled_store(tmp_path):
    from abstractvision import LocalAssetStore
    from fakes import png_bytes

    store = LocalAssetStore(tmp_path / "store")
    refs = [
        store.store_bytes(
            png_bytes(8, 8, (i, 0, 0)),
            content_type="image/png",
            tags={"task": "text_to_image" if i < 2 else "image_to_image"},
            metadata={"task": "text_to_image", "seed": i, "parameters": {"steps": 2}},
        )
        for i in range(3)
    ]
    return store, [r["$artifact"] for r in refs]


def test_store_list_show_export_delete(cli, filled_store, tmp_path) -> None:
    store, ids = filled_store
    where = ["--store-dir", str(store.base_dir)]
    listed = cli("store", "list", *where, "--json")
    assert listed.code == 0
    assert sorted(a["artifact_id"] for a in listed.json()) == sorted(ids)
    assert cli("store", "ls", *where, "--task", "image_to_image", "--json").json()[0]["artifact_id"] == ids[2]
    assert len(cli("store", "list", *where, "--limit", "2").out.splitlines()) == 2

    shown = cli("store", "show", ids[0][:8], *where)
    assert shown.code == 0
    assert ids[0] in shown.out and "seed:" in shown.out
    assert cli("store", "show", ids[0], *where, "--json").json()["artifact_id"] == ids[0]

    exported = cli("store", "export", ids[1][:10], *where, "-o", str(tmp_path / "copy.png"))
    assert exported.code == 0
    assert (tmp_path / "copy.png").read_bytes() == store.load_bytes(ids[1])
    into_dir = cli("store", "export", ids[1], *where, "-o", str(tmp_path / "exports") + "/", "--json")
    assert os.path.isfile(into_dir.json()["path"])

    deleted = cli("store", "rm", ids[0], ids[1][:12], *where)
    assert deleted.code == 0
    assert not store.exists(ids[0]) and not store.exists(ids[1]) and store.exists(ids[2])


def test_store_errors(cli, filled_store) -> None:
    store, _ = filled_store
    where = ["--store-dir", str(store.base_dir)]
    missing = cli("store", "show", "f" * 64, *where)
    assert missing.code == 2 and "store list" in missing.err
    assert cli("store", "show", "abc", *where).code == 2  # too short to be a prefix
    assert "not an artifact id" in cli("store", "show", "../../etc/passwd", *where).err
    gone = cli("store", "delete", "e" * 64, *where, "--json")
    assert gone.code == 2 and gone.json() == {"ok": False, "deleted": [], "missing": ["e" * 64]}


def test_store_uses_the_environment_directory(cli, filled_store, monkeypatch) -> None:
    store, _ = filled_store
    monkeypatch.setenv("ABSTRACTVISION_STORE_DIR", str(store.base_dir))
    assert len(cli("store", "list", "--json").json()) == 3


def test_empty_store(cli, tmp_path) -> None:
    result = cli("store", "list", "--store-dir", str(tmp_path / "empty"))
    assert result.code == 0 and result.out == "" and "no artifacts" in result.err


# -- doctor -----------------------------------------------------------------------------


def test_doctor_json(cli, tmp_path, monkeypatch) -> None:
    config = tmp_path / "av.json"
    config.write_text(
        json.dumps({"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-secret"})
    )
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE")  # set by the test session: HF_HOME/hub is the fallback tested here
    result = cli("doctor", "--config", str(config), "--store-dir", str(tmp_path / "s"), "--json")
    assert result.code == 0, result.err
    doc = result.json()
    assert set(doc["extras"]) == {"base", "diffusers", "sdcpp", "server"}
    assert doc["extras"]["base"]["installed"] is True
    assert doc["device"]["device"] in ("cpu", "cuda", "mps")
    assert doc["settings"]["backend"] == "openai"
    assert doc["settings"]["sources"]["backend"] == "config file"
    assert doc["settings"]["config_path"] == str(config)
    assert doc["store_dir"]["path"] == str(tmp_path / "s")
    assert doc["hf_cache_dir"]["path"] == str(tmp_path / "hf" / "hub")
    assert "sk-secret" not in result.out


def test_doctor_text(cli) -> None:
    result = cli("doctor", "--backend", "diffusers")
    assert result.code == 0
    for section in ("extras", "device", "paths", "settings"):
        assert f"\n{section}" in result.out
    assert "backend        diffusers  [explicit]" in result.out


def test_doctor_reports_a_broken_config_file(cli, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = cli("doctor", "--config", str(bad))
    assert result.code == 2
    assert "not valid" in result.out


# -- pipes ------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_piping_into_head_exits_cleanly() -> None:
    proc = subprocess.run(
        f"'{sys.executable}' -m abstractvision models --json | head -c 10; echo \" rc=${{PIPESTATUS[0]}}\"",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.stdout.rstrip().endswith(("rc=0", "rc=141"))


def test_broken_pipe_is_reported_as_141(cli, monkeypatch) -> None:
    import io

    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    from abstractvision.cli import main

    assert main(["models"]) == 141
