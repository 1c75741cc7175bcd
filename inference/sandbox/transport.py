"""How a job's text travels from the worker that generates it to the web process that answers the
client: an ordered, append-only log of events per job, read from any point, so a client that
connects late (or a web process that starts reading after the first tokens) loses nothing.

- Redis Streams in production (``XADD`` by the worker, blocking ``XREAD`` by the web process; each
  stream expires an hour after its last event).
- Append-only files under ``SANDBOX_STREAM_DIR`` on the embedded defaults, which run everything on
  one machine without a server: the worker appends one JSON line per event, the reader follows the
  file from its offset. The sweep task deletes old files.

Events are small dicts: ``{"type": "delta", "choices": [...]}``, then one ``{"type": "done", ...}``
or ``{"type": "error", ...}`` that ends the log.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from django.conf import settings

STREAM_TTL_SECONDS = 3600
FILE_POLL_SECONDS = 0.005  # the file reader's wait between looks; Redis blocks instead
END_TYPES = ("done", "error")


def _key(job_id) -> str:
    return f"sandbox:job:{job_id}"


class FileTransport:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _path(self, job_id) -> Path:
        return self.folder / f"{job_id}.jsonl"

    def publish(self, job_id, events: list[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in events).encode()
        # One write on an O_APPEND descriptor: readers never see two writers' lines interleaved.
        fd = os.open(self._path(job_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def publish_many(self, events_by_job: dict) -> None:
        for job_id, events in events_by_job.items():
            self.publish(job_id, events)

    def _read_now(self, job_id, cursor: int) -> tuple[list[dict], int]:
        try:
            with open(self._path(job_id), "rb") as f:
                f.seek(cursor)
                data = f.read()
        except FileNotFoundError:
            return [], cursor
        complete = data.rfind(b"\n") + 1  # a line being written is read next time
        events = [json.loads(line) for line in data[:complete].splitlines() if line]
        return events, cursor + complete

    def read(self, job_id, cursor, timeout: float) -> tuple[list[dict], int]:
        cursor = cursor or 0
        deadline = time.monotonic() + timeout
        while True:
            events, cursor = self._read_now(job_id, cursor)
            if events or time.monotonic() >= deadline:
                return events, cursor
            time.sleep(FILE_POLL_SECONDS)

    async def aread(self, job_id, cursor, timeout: float) -> tuple[list[dict], int]:
        cursor = cursor or 0
        deadline = time.monotonic() + timeout
        while True:
            events, cursor = self._read_now(job_id, cursor)
            if events or time.monotonic() >= deadline:
                return events, cursor
            await asyncio.sleep(FILE_POLL_SECONDS)

    def discard_older_than(self, seconds: float) -> int:
        """Delete logs untouched for ``seconds``; how many."""
        cutoff = time.time() - seconds
        removed = 0
        for path in self.folder.glob("*.jsonl") if self.folder.exists() else ():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    async def aclose(self) -> None:
        pass


class RedisTransport:
    def __init__(self, url: str):
        self.url = url
        self._sync = None
        self._async = None

    def _client(self):
        if self._sync is None:
            import redis

            self._sync = redis.Redis.from_url(self.url)
        return self._sync

    def publish(self, job_id, events: list[dict]) -> None:
        key = _key(job_id)
        pipe = self._client().pipeline(transaction=False)
        for event in events:
            pipe.xadd(key, {"e": json.dumps(event, separators=(",", ":"))})
        pipe.expire(key, STREAM_TTL_SECONDS)
        pipe.execute()

    def publish_many(self, events_by_job: dict) -> None:
        """Several jobs' events in one round trip (the batcher streams a whole batch at once)."""
        pipe = self._client().pipeline(transaction=False)
        for job_id, events in events_by_job.items():
            key = _key(job_id)
            for event in events:
                pipe.xadd(key, {"e": json.dumps(event, separators=(",", ":"))})
            pipe.expire(key, STREAM_TTL_SECONDS)
        pipe.execute()

    @staticmethod
    def _events(reply, cursor):
        events = []
        for _, entries in reply or ():
            for entry_id, fields in entries:
                cursor = entry_id
                events.append(json.loads(fields[b"e"]))
        return events, cursor

    def read(self, job_id, cursor, timeout: float) -> tuple[list[dict], bytes | str]:
        cursor = cursor or "0-0"
        reply = self._client().xread({_key(job_id): cursor}, block=max(1, int(timeout * 1000)))
        return self._events(reply, cursor)

    async def aread(self, job_id, cursor, timeout: float) -> tuple[list[dict], bytes | str]:
        if self._async is None:
            import redis.asyncio

            self._async = redis.asyncio.Redis.from_url(self.url)
        cursor = cursor or "0-0"
        reply = await self._async.xread({_key(job_id): cursor}, block=max(1, int(timeout * 1000)))
        return self._events(reply, cursor)

    def discard_older_than(self, seconds: float) -> int:
        return 0  # streams expire by themselves

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None


def transport():
    """The configured transport. Web code makes one per request (an async Redis client belongs
    to the event loop it was made on); the worker keeps one."""
    if settings.SANDBOX_TRANSPORT == "redis":
        return RedisTransport(settings.SANDBOX_REDIS_URL)
    if settings.SANDBOX_TRANSPORT == "files":
        return FileTransport(settings.SANDBOX_STREAM_DIR)
    raise ValueError(f"SANDBOX_TRANSPORT must be redis or files, not {settings.SANDBOX_TRANSPORT!r}.")
