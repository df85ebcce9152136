"""Local model discovery: a Hugging Face cache laid out as the hub writes it, and a models folder.

Real files only: tiny Diffusers pipelines saved with ``save_pretrained`` and tiny sd.cpp
weights (safetensors and GGUF), arranged the way the hub cache (``snapshots/``, ``refs/``,
``blobs/`` symlinks) and people's model folders arrange them. Discovery reads headers only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from abstractvision.discovery import (
    classify_tensor_names,
    discover_local_models,
    hf_hub_cache_dir,
    served_models_from_discovery,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from abstractvision.testing.tiny_diffusers import build_tiny_sd

    return Path(build_tiny_sd(str(tmp_path_factory.mktemp("disc") / "tiny-sd")))


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from abstractvision.testing.tiny_sdcpp import build_tiny_flux_sdcpp

    return build_tiny_flux_sdcpp(tmp_path_factory.mktemp("disc-flux"))


def hub_repo(cache: Path, repo_id: str, source: Path, *, commit: str = COMMIT, ref: bool = True) -> Path:
    """Lay ``source``'s files out as ``huggingface_hub`` caches a repo: content blobs + snapshot symlinks."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
    return repo


def test_hub_cache_location_follows_the_environment(tmp_path: Path) -> None:
    assert hf_hub_cache_dir({"HF_HUB_CACHE": str(tmp_path / "a")}) == tmp_path / "a"
    assert hf_hub_cache_dir({"HF_HOME": str(tmp_path / "home")}) == tmp_path / "home" / "hub"
    assert hf_hub_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "huggingface" / "hub"
    assert hf_hub_cache_dir({}) == Path("~/.cache/huggingface/hub").expanduser()


def test_hf_cache_repos_found_matched_sized_and_broken_ones_skipped(tmp_path: Path, tiny_sd: Path) -> None:
    cache = tmp_path / "hub"
    hub_repo(cache, "runwayml/stable-diffusion-v1-5", tiny_sd)
    hub_repo(cache, "someone/custom-sd", tiny_sd, ref=False)  # no refs/main: the newest snapshot
    broken = hub_repo(cache, "someone/half-downloaded", tiny_sd)
    next((broken / "blobs").iterdir()).unlink()
    (cache / "models--someone--no-snapshot" / "blobs").mkdir(parents=True)
    text_only = tmp_path / "text-encoder"
    text_only.mkdir()
    (text_only / "config.json").write_text("{}")
    hub_repo(cache, "someone/text-encoder", text_only)
    (cache / "datasets--x--y").mkdir()  # not a model repo: ignored

    found = discover_local_models(env={"HF_HUB_CACHE": str(cache)})
    assert found.searched == [str(cache)]
    by_name = {m.name: m for m in found.models}
    assert sorted(by_name) == ["runwayml/stable-diffusion-v1-5", "someone/custom-sd"]
    sd = by_name["runwayml/stable-diffusion-v1-5"]
    assert (sd.backend, sd.format, sd.source, sd.hub_id) == ("diffusers", "diffusers", "hf_cache", sd.name)
    assert sd.pipeline_class == "StableDiffusionPipeline"
    assert {"text_to_image", "image_to_image"} <= set(sd.tasks) and sd.servable
    assert sd.registry_id == "runwayml/stable-diffusion-v1-5"
    blobs = sum(
        p.stat().st_size for p in (cache / "models--runwayml--stable-diffusion-v1-5" / "blobs").iterdir()
    )
    assert sd.size_bytes == blobs
    custom = by_name["someone/custom-sd"]  # no hub id match: by pipeline class, only when unambiguous
    assert custom.registry_id is None or custom.registry_candidates == (custom.registry_id,)
    skipped = {Path(s.path).name: s.reason for s in found.skipped}
    assert skipped["models--someone--half-downloaded"].startswith("incomplete download: 1 file(s) missing")
    assert "huggingface-cli download someone/half-downloaded" in skipped["models--someone--half-downloaded"]
    assert skipped["models--someone--no-snapshot"] == "no snapshot: the download never finished"
    assert "no model_index.json and no weight file" in skipped["models--someone--text-encoder"]
    json.dumps(found.to_dict())  # JSON-safe


def test_models_dir_diffusers_gguf_components_and_bad_files(
    tmp_path: Path, tiny_sd: Path, tiny_flux: Any
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(tiny_sd, root / "my-sd")
    flux = root / "flux-schnell-q8"  # a diffusion model with its VAE and text encoder beside it
    flux.mkdir()
    for src in (tiny_flux.diffusion_model_gguf, tiny_flux.taesd, tiny_flux.clip_l, tiny_flux.upscaler):
        os.symlink(src, flux / os.path.basename(src))
    shutil.copy(tiny_flux.diffusion_model, root / "lonely-dit.safetensors")
    shutil.copy(tiny_flux.taesd, root / "taef1.safetensors")
    (root / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}....")
    data = Path(tiny_flux.diffusion_model_gguf).read_bytes()
    (root / "truncated.gguf").write_bytes(data[: len(data) // 3])
    (root / "empty.gguf").write_bytes(b"")
    bad_index = root / "bad-index"
    bad_index.mkdir()
    (bad_index / "model_index.json").write_text("{ nope")
    no_class = root / "no-class"
    no_class.mkdir()
    (no_class / "model_index.json").write_text(json.dumps({"_diffusers_version": "0.30.0"}))
    (root / "notes.txt").write_text("not a model")
    (root / "empty-folder").mkdir()
    os.symlink(root / "loop-b.gguf", root / "loop-a.gguf")
    os.symlink(root / "loop-a.gguf", root / "loop-b.gguf")
    os.symlink(tmp_path / "gone.safetensors", root / "dangling.safetensors")

    found = discover_local_models(models_dir=str(root), include_hf_cache=False)
    by_name = {m.name: m for m in found.models}
    assert sorted(by_name) == ["flux-schnell-q8", "lonely-dit.safetensors", "my-sd"]
    sd = by_name["my-sd"]
    assert (sd.backend, sd.format, sd.path, sd.hub_id) == (
        "diffusers",
        "diffusers",
        str(root / "my-sd"),
        None,
    )
    flux_model = by_name["flux-schnell-q8"]
    assert (flux_model.backend, flux_model.format, flux_model.architecture) == ("sdcpp", "components", "flux")
    assert set(flux_model.components) == {"diffusion_model", "taesd", "clip_l", "upscaler"}
    assert flux_model.components["diffusion_model"].endswith(".gguf")
    assert flux_model.tasks == ("text_to_image", "image_to_image", "image_upscale") and flux_model.servable
    lonely = by_name["lonely-dit.safetensors"]
    assert not lonely.servable and any("VAE" in n for n in lonely.notes)
    skipped = {Path(s.path).name: s.reason for s in found.skipped}
    assert skipped["taef1.safetensors"] == "a taesd file, not a model on its own"
    assert "is corrupt or truncated" in skipped["corrupt.safetensors"]
    assert "is corrupt or truncated" in skipped["truncated.gguf"]
    assert "is empty (0 bytes)" in skipped["empty.gguf"]
    assert skipped["bad-index"].startswith("model_index.json does not parse")
    assert "names no pipeline class" in skipped["no-class"]
    assert skipped["empty-folder"] == "no model_index.json and no weight file"
    assert "no such file" in skipped["dangling.safetensors"]
    assert "loop-a.gguf" in skipped and "loop-b.gguf" in skipped
    assert "notes.txt" not in skipped

    served = {m.name: m.settings for m in served_models_from_discovery(found)}
    assert sorted(served) == ["flux-schnell-q8", "my-sd"]  # the lonely DiT cannot run
    assert (served["my-sd"].backend, served["my-sd"].model) == ("diffusers", str(root / "my-sd"))
    assert served["flux-schnell-q8"].backend == "sdcpp"
    assert served["flux-schnell-q8"].options["clip_l"].endswith("clip_l-random-s0-f16.safetensors")


def test_a_missing_models_dir_is_reported_not_raised(tmp_path: Path) -> None:
    found = discover_local_models(models_dir=str(tmp_path / "nope"), include_hf_cache=False)
    assert found.models == [] and found.skipped[0].reason == "the models folder does not exist"
    found = discover_local_models(
        env={"ABSTRACTVISION_MODELS_DIR": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "x")}
    )
    assert found.searched == [str(tmp_path)] and found.models == []


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight"], ("diffusion_model", "flux")),
        (["model.diffusion_model.double_blocks.0.x", "model.diffusion_model.single_blocks.0.x"], ("diffusion_model", "flux")),
        (
            ["model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.output_blocks.0.0.weight",
             "first_stage_model.decoder.conv_in.weight", "cond_stage_model.transformer.text_model.x"],
            ("checkpoint", "sd1"),
        ),
        (
            ["model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.output_blocks.0.0.weight",
             "model.diffusion_model.label_emb.0.0.weight", "first_stage_model.decoder.x", "conditioner.embedders.1.x"],
            ("checkpoint", "sdxl"),
        ),
        (["joint_blocks.0.x_block.attn.qkv.weight"], ("diffusion_model", "sd3")),
        (["encoder.down.0.block.0.conv1.weight", "decoder.up.0.block.0.conv1.weight"], ("vae", None)),
        (["text_model.encoder.layers.0.mlp.fc1.weight"], ("clip_l", None)),
        (["text_model.encoder.layers.31.mlp.fc1.weight"], ("clip_g", None)),
        (["encoder.block.0.layer.0.SelfAttention.q.weight", "shared.weight"], ("t5xxl", None)),
        (["lora_unet_down_blocks_0.lora_down.weight"], ("lora", None)),
        (["conv_first.weight", "body.0.rdb1.conv1.weight"], ("upscaler", None)),
        (["something.else"], (None, None)),
    ],
)  # fmt: skip
def test_tensor_names_classify_weight_files(names: list[str], expected: tuple[Any, Any]) -> None:
    assert classify_tensor_names(names) == expected


def test_models_local_command(
    tmp_path: Path, tiny_sd: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from abstractvision.cli import main

    shutil.copytree(tiny_sd, tmp_path / "my-sd")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    assert main(["models", "--local", "--models-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "BACKEND", "TASKS", "SIZE", "REGISTRY", "SERVABLE", "PATH"]
    assert row.split()[:2] == ["my-sd", "diffusers"] and row.endswith(str(tmp_path / "my-sd"))
    assert "junk.safetensors: not a usable weight file" in err
    monkeypatch.setenv("ABSTRACTVISION_MODELS_DIR", str(tmp_path))
    assert main(["models", "--local", "--json", "--task", "text_to_video"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["models"] == [] and doc["searched"] == [str(tmp_path)]
