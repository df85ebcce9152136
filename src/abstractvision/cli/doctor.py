"""``doctor``: what is installed and where things live, to paste into a bug report.

Extras are checked through installed distribution metadata (nothing heavy is imported for
that); torch is imported, when present, to report the devices.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from .._version import __version__
from ..errors import AbstractVisionError
from .common import settings_from_args
from .output import print_json

#: extra -> distributions it brings (the import-free check reads their metadata)
EXTRAS: dict[str, tuple[str, ...]] = {
    "base": ("httpx", "Pillow"),
    "diffusers": ("torch", "diffusers", "transformers", "accelerate", "safetensors", "av", "peft", "numpy"),
    "sdcpp": ("stable-diffusion-cpp-python",),
    "server": ("starlette", "uvicorn", "python-multipart"),
}


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def extras_report() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for extra, dists in EXTRAS.items():
        versions = {d: _version(d) for d in dists}
        out[extra] = {"installed": all(versions.values()), "packages": versions}
    return out


def device_report() -> dict[str, Any]:
    """torch version and the devices it sees (imports torch when it is installed)."""
    if _version("torch") is None:
        return {"torch": None, "device": "cpu", "note": "torch is not installed (extra 'diffusers')"}
    try:
        import torch
    except Exception as exc:  # a broken install should be reported, not crash doctor
        return {"torch": _version("torch"), "device": None, "error": f"import torch failed: {exc}"}
    cuda = bool(torch.cuda.is_available())
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "mps_available": mps,
        "device": "cuda" if cuda else "mps" if mps else "cpu",
        "cpu_threads": torch.get_num_threads(),
    }
    if cuda:
        gpus = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append({"index": i, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)})
        info["gpus"] = gpus
    return info


def _dir_report(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"path": str(path), "exists": path.is_dir()}
    if path.is_dir():
        out["writable"] = os.access(path, os.W_OK)
    return out


def doctor(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "abstractvision": __version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
    }
    code = 0
    try:
        settings = settings_from_args(args)
        report["settings"] = settings.redacted()
    except AbstractVisionError as exc:
        settings = None
        report["settings"] = {"error": str(exc)}
        code = 2
    report["extras"] = extras_report()
    report["device"] = device_report()
    from ..artifacts import STORE_DIR_ENV_VAR

    store_dir = (settings.store_dir if settings else None) or os.environ.get(STORE_DIR_ENV_VAR)
    store_path = Path(store_dir).expanduser() if store_dir else Path.home() / ".abstractvision" / "assets"
    report["store_dir"] = _dir_report(store_path)
    from ..discovery import hf_hub_cache_dir

    cache = hf_hub_cache_dir()
    report["hf_cache_dir"] = _dir_report(cache)
    if cache.is_dir():
        report["hf_cache_dir"]["models"] = sorted(
            p.name[len("models--") :].replace("--", "/")
            for p in cache.iterdir()
            if p.name.startswith("models--")
        )
    report["capabilities_override"] = os.environ.get("ABSTRACTVISION_CAPABILITIES_PATH") or None
    if args.json:
        print_json(report)
        return code
    _print_report(report)
    return code


def _print_report(report: dict[str, Any]) -> None:
    w = sys.stdout.write
    w(f"abstractvision {report['abstractvision']}  (Python {report['python']}, {report['platform']})\n")
    w(f"  executable     {report['executable']}\n\nextras\n")
    for extra, info in report["extras"].items():
        mark = "ok     " if info["installed"] else "missing"
        pkgs = ", ".join(f"{d} {v}" if v else f"{d} (missing)" for d, v in info["packages"].items())
        hint = "" if info["installed"] or extra == "base" else f'   -> pip install "abstractvision[{extra}]"'
        w(f"  {extra:10} {mark}  {pkgs}{hint}\n")
    dev = report["device"]
    w("\ndevice\n")
    if dev.get("torch") is None or dev.get("error"):
        w(f"  {dev.get('error') or dev.get('note')}\n")
    else:
        w(f"  torch          {dev['torch']} (CUDA build: {dev['cuda_version'] or 'none'})\n")
        w(f"  selected       {dev['device']}  (cuda: {dev['cuda_available']}, mps: {dev['mps_available']})\n")
        for gpu in dev.get("gpus", []):
            w(f"  gpu {gpu['index']}          {gpu['name']}, {gpu['memory_gib']} GiB\n")
    w("\npaths\n")
    for label, key in (("store dir", "store_dir"), ("HF cache", "hf_cache_dir")):
        info = report[key]
        state = "" if info["exists"] else "  (not created yet)"
        w(f"  {label:14} {info['path']}{state}\n")
    cached = report["hf_cache_dir"].get("models")
    if cached:
        w(f"  cached models  {', '.join(cached)}\n")
    if report["capabilities_override"]:
        w(f"  registry file  {report['capabilities_override']}\n")
    w("\nsettings (flags > ABSTRACTVISION_* > config file)\n")
    settings = report["settings"]
    if "error" in settings:
        w(f"  error: {settings['error']}\n")
        return
    w(
        f"  config file    {settings.get('config_path') or 'none (searched ~/.config/abstractvision/config.toml, .json)'}\n"
    )
    sources = settings.get("sources") or {}
    from ..config import SETTING_KEYS

    for key in SETTING_KEYS:
        if settings.get(key) is not None:
            w(f"  {key:14} {settings[key]}  [{sources.get(key, '?')}]\n")
    for key, value in (settings.get("options") or {}).items():
        w(f"  option         {key}={value}  [{sources.get('options.' + key, '?')}]\n")
    if settings.get("backend") is None:
        w("  backend        (none: pass --backend or set ABSTRACTVISION_BACKEND)\n")
