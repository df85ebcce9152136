"""The Redis layout of the distributed mode: keys, Lua scripts and record encoding (no I/O here).

Everything one deployment keeps in Redis lives under one prefix (``av`` by default):

=============================  ===============  ===================================================
key                            type             what
=============================  ===============  ===================================================
``{p}:job:{id}``               hash             the job record (the fields of :data:`RECORD_FIELDS`)
``{p}:job:{id}:events``        stream           its events; entry ids ``0-N`` are the SSE ids
``{p}:job:{id}:seq``           string           the last event number N
``{p}:job:{id}:cancel``        string           set when a cancel was requested (workers poll it)
``{p}:job:{id}:previews``      list             event numbers of the previews still in the stream
``{p}:job:{id}:lease``         string (TTL)     the worker running it; expires if that worker dies
``{p}:jobs``                   sorted set       job ids by creation time (listing)
``{p}:queued:{model}``         set              jobs waiting for a worker of ``model`` (queue depth)
``{p}:running``                set              jobs a worker claimed (the stale-job sweep reads it)
``{p}:tomb:{id}``              string (TTL)     an expired job (410 instead of 404)
``{p}:workers``                hash             worker id -> its last heartbeat (JSON)
``{p}:avg:{model}``            string           recent seconds per job (Retry-After estimates)
=============================  ===============  ===================================================

Finished jobs expire after the server's ``job_ttl_s``, like in one process. State changes that
must not race (finish once, claim once, cancel) are single Lua scripts.
"""

from __future__ import annotations

import base64
import json
from typing import Any

__all__ = [
    "CLAIM",
    "FINISH",
    "PREVIEW",
    "PROGRESS",
    "PUBLISH",
    "RECORD_FIELDS",
    "REQUEUE",
    "TERMINAL",
    "Keys",
    "decode_params",
    "decode_record",
    "encode_params",
    "encode_record",
]

TERMINAL = ("completed", "failed", "cancelled")
#: hash fields holding JSON (the others are plain strings or numbers)
_JSON_FIELDS = ("summary", "last_event", "results", "error", "error_headers", "spec")
RECORD_FIELDS = (
    "id",
    "kind",
    "task",
    "model",
    "status",
    "progress",
    "created_at",
    "started_at",
    "completed_at",
    "expires_at",
    "cancel_requested",
    "url_base",
    "attempt",
    "worker",
    "error_status",
    *_JSON_FIELDS,
)
_FLOATS = ("progress", "created_at", "started_at", "completed_at", "expires_at")
_INTS = ("attempt", "error_status")


class Keys:
    """Key names under one deployment prefix."""

    def __init__(self, prefix: str = "av") -> None:
        self.prefix = prefix

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def seq(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:seq"

    def cancel(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:cancel"

    def lease(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:lease"

    def tomb(self, job_id: str) -> str:
        return f"{self.prefix}:tomb:{job_id}"

    def queued(self, model: str) -> str:
        return f"{self.prefix}:queued:{model}"

    def avg(self, model: str) -> str:
        return f"{self.prefix}:avg:{model}"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def running(self) -> str:
        return f"{self.prefix}:running"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def previews(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:previews"

    def job_keys(self, job_id: str) -> list[str]:
        return [
            self.job(job_id),
            self.events(job_id),
            self.seq(job_id),
            self.cancel(job_id),
            self.previews(job_id),
        ]


# -- encoding -------------------------------------------------------------------------------


def _tag_bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple):
        return {"$tuple": [_tag_bytes(v) for v in value]}
    if isinstance(value, list):
        return [_tag_bytes(v) for v in value]
    if isinstance(value, dict):
        return {k: _tag_bytes(v) for k, v in value.items()}
    return value


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        if set(value) == {"$tuple"}:
            return tuple(_untag(v) for v in value["$tuple"])
        return {k: _untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag(v) for v in value]
    return value


def encode_params(params: dict[str, Any]) -> Any:
    """Manager keyword arguments (image bytes included) as JSON-safe data."""
    return _tag_bytes(params)


def decode_params(data: Any) -> dict[str, Any]:
    out = _untag(data)
    return dict(out) if isinstance(out, dict) else {}


def encode_record(record: dict[str, Any]) -> dict[str, str]:
    """A job record as Redis hash fields (``None`` values are left out)."""
    out: dict[str, str] = {}
    for key, value in record.items():
        if value is None:
            continue
        if key in _JSON_FIELDS:
            out[key] = json.dumps(value, separators=(",", ":"), default=str)
        elif isinstance(value, bool):
            out[key] = "1" if value else "0"
        else:
            out[key] = str(value)
    return out


def decode_record(raw: dict[Any, Any]) -> dict[str, Any]:
    """Redis hash fields (bytes or str) back to a job record dict."""
    out: dict[str, Any] = {k: None for k in RECORD_FIELDS}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        text = value.decode() if isinstance(value, bytes) else str(value)
        if name in _JSON_FIELDS:
            out[name] = json.loads(text)
        elif name in _FLOATS:
            out[name] = float(text)
        elif name in _INTS:
            out[name] = int(text)
        elif name == "cancel_requested":
            out[name] = text == "1"
        else:
            out[name] = text
    return out


# -- Lua: every state change that must not race ------------------------------------------------

#: KEYS: events, seq; ARGV: name, data JSON, maxlen, ttl seconds -> the event number
PUBLISH = """
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '0-' .. n, 'name', ARGV[1], 'data', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return n
"""

#: A progress event of a running job. KEYS: job, events, seq; ARGV: event JSON, progress or '',
#: maxlen, ttl -> the event number, 0 when the job is not running any more
PROGRESS = """
if redis.call('HGET', KEYS[1], 'status') ~= 'in_progress' then return 0 end
redis.call('HSET', KEYS[1], 'last_event', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[2]) end
local n = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. n, 'name', 'progress', 'data', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return n
"""

#: A live preview of a running job; older ones are deleted from the stream (only the latest
#: ARGV[4] stay: previews are transient). KEYS: job, events, seq, previews (list of their
#: event numbers); ARGV: data JSON, maxlen, ttl, kept -> the event number, 0 when the job is
#: not running any more
PREVIEW = """
if redis.call('HGET', KEYS[1], 'status') ~= 'in_progress' then return 0 end
local n = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-' .. n, 'name', 'preview', 'data', ARGV[1])
redis.call('RPUSH', KEYS[4], n)
while redis.call('LLEN', KEYS[4]) > tonumber(ARGV[4]) do
  redis.call('XDEL', KEYS[2], '0-' .. redis.call('LPOP', KEYS[4]))
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[4], ARGV[3])
return n
"""

#: Finish a job once. KEYS: job, events, seq, cancel, running, queued, lease;
#: ARGV: status, fields JSON (flat), status event JSON, maxlen, ttl, worker ('' for API nodes)
#: -> 1 when it changed, 0 when the job had already finished, is gone, or (for a worker) is
#: not its job any more (its lease expired and the job went back to the queue)
FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'completed' or status == 'failed' or status == 'cancelled' then
  return 0
end
if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], 'worker') ~= ARGV[6] then return 0 end
local id = redis.call('HGET', KEYS[1], 'id')
local fields = cjson.decode(ARGV[2])
redis.call('HSET', KEYS[1], 'status', ARGV[1])
for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
local n = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-' .. n, 'name', 'status', 'data', ARGV[3])
redis.call('SREM', KEYS[5], id)
redis.call('SREM', KEYS[6], id)
redis.call('DEL', KEYS[7])
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return 1
"""

#: Claim a job for a worker. KEYS: job, lease, queued, running, events, seq;
#: ARGV: worker id, lease ms, started_at, status event JSON, maxlen, ttl
#: -> 'ok', 'terminal', 'busy' (another live worker has it) or 'gone'
CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'gone' end
if status == 'completed' or status == 'failed' or status == 'cancelled' then return 'terminal' end
if status == 'in_progress' and redis.call('EXISTS', KEYS[2]) == 1 then return 'busy' end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'started_at', ARGV[3], 'worker', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('SREM', KEYS[3], id)
redis.call('SADD', KEYS[4], id)
local n = redis.call('INCR', KEYS[6])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '0-' .. n, 'name', 'status', 'data', ARGV[4])
return 'ok'
"""

#: Put a job whose worker vanished back in its queue. KEYS: job, lease, running, queued, events, seq;
#: ARGV: status event JSON, maxlen -> 1 when requeued, 0 when not stale any more
REQUEUE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'in_progress' or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'status', 'queued', 'progress', '0')
redis.call('HDEL', KEYS[1], 'worker', 'started_at', 'last_event')
redis.call('SREM', KEYS[3], id)
redis.call('SADD', KEYS[4], id)
local n = redis.call('INCR', KEYS[6])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[2], '0-' .. n, 'name', 'status', 'data', ARGV[1])
return 1
"""
