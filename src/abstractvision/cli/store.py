"""``store list | show | export | delete``: the local artifact store kept by ``--store``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from .common import open_store, resolve_artifact_id
from .output import human_size, is_directory_target, print_json


def dispatch(args: argparse.Namespace) -> int:
    action = {"ls": "list", "rm": "delete"}.get(args.store_action, args.store_action)
    store = open_store(args.store_dir)
    result: int = {"list": _list, "show": _show, "export": _export, "delete": _delete}[action](args, store)
    return result


def _list(args: argparse.Namespace, store: Any) -> int:
    tags = {"task": args.task} if args.task else None
    entries = store.list(tags=tags, content_type=args.content_type, limit=args.limit)
    if args.json:
        print_json(
            [
                {k: entry.get(k) for k in ("artifact_id", "content_type", "size_bytes", "created_at", "tags")}
                | {"path": str(store.get_content_path(entry["artifact_id"]))}
                for entry in entries
            ]
        )
        return 0
    if not entries:
        if not args.quiet:
            sys.stderr.write(f"no artifacts in {store.base_dir}\n")
        return 0
    for entry in entries:
        meta = entry.get("metadata") or {}
        created = str(entry.get("created_at", ""))[:19].replace("T", " ")
        task = (entry.get("tags") or {}).get("task") or meta.get("task") or ""
        size = human_size(int(entry.get("size_bytes") or 0))
        sys.stdout.write(
            f"{entry['artifact_id'][:12]}  {created}  {entry.get('content_type', ''):10} {size:>9}  {task}\n"
        )
    return 0


def _show(args: argparse.Namespace, store: Any) -> int:
    aid = resolve_artifact_id(store, args.artifact_id)
    meta = store.get_metadata(aid)
    if meta is None:
        from ..errors import ArtifactNotFoundError

        raise ArtifactNotFoundError(f"No artifact {aid} in {store.base_dir}.")
    record = {**meta, "path": str(store.get_content_path(aid))}
    if args.json:
        print_json(record)
        return 0
    out = sys.stdout
    info = record.get("metadata") or {}
    for key in ("artifact_id", "content_type", "size_bytes", "created_at", "path"):
        out.write(f"{key + ':':14}{record.get(key)}\n")
    for key in ("task", "backend", "model", "seed"):
        if info.get(key) is not None:
            out.write(f"{key + ':':14}{info[key]}\n")
    params = info.get("parameters") or {}
    if params:
        out.write("parameters:\n")
        for key, value in params.items():
            out.write(f"  {key}: {value}\n")
    timings = info.get("timings") or {}
    if timings:
        out.write("timings:      " + ", ".join(f"{k}={v}" for k, v in timings.items()) + "\n")
    return 0


def _export(args: argparse.Namespace, store: Any) -> int:
    from .._fileio import atomic_write_bytes, extension_for_mime

    aid = resolve_artifact_id(store, args.artifact_id)
    source = store.get_content_path(aid)
    data = store.load_bytes(aid)  # verified against its checksum before anything is written
    meta = store.get_metadata(aid) or {}
    if args.output is None or is_directory_target(args.output):
        folder = Path(args.output).expanduser() if args.output else Path.cwd()
        target = folder / f"{aid[:16]}{extension_for_mime(str(meta.get('content_type', '')))}"
    else:
        target = Path(args.output).expanduser()
    if isinstance(source, Path) and target.resolve() == source.resolve():
        raise InvalidRequestError("--output is the stored file itself.", param="output")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    if args.json:
        print_json({"artifact_id": aid, "path": str(target)})
    else:
        sys.stdout.write(f"{target}\n")
    return 0


def _delete(args: argparse.Namespace, store: Any) -> int:
    ids = [resolve_artifact_id(store, text) for text in args.artifact_ids]
    deleted = {aid: bool(store.delete(aid)) for aid in ids}
    missing = [aid for aid, ok in deleted.items() if not ok]
    if args.json:
        print_json({"ok": not missing, "deleted": [a for a, ok in deleted.items() if ok], "missing": missing})
    elif not args.quiet:
        for aid, ok in deleted.items():
            if ok:
                sys.stdout.write(f"deleted {aid}\n")
    if missing:
        sys.stderr.write(f"abstractvision: error: no artifact {', '.join(missing)} in {store.base_dir}.\n")
        return 2
    return 0
