"""The job event logs between worker and web: a reader that starts late, or reads in pieces,
gets every event in order; a half-written line waits for its end."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid

import pytest

from inference.sandbox.transport import FileTransport, RedisTransport


@pytest.fixture(params=["files", pytest.param("redis", marks=pytest.mark.redis)])
def channel(request, tmp_path):
    if request.param == "files":
        return FileTransport(tmp_path / "streams")
    return RedisTransport(os.environ["REDIS_URL"])


def test_a_late_reader_gets_every_event_in_order_then_waits_for_more(channel):
    job_id = uuid.uuid4()
    channel.publish(job_id, [{"type": "delta", "n": 1}, {"type": "delta", "n": 2}])
    channel.publish(job_id, [{"type": "done"}])

    events, cursor = channel.read(job_id, None, 1)
    assert events == [{"type": "delta", "n": 1}, {"type": "delta", "n": 2}, {"type": "done"}]
    assert channel.read(job_id, cursor, 0.05) == ([], cursor)

    channel.publish(job_id, [{"type": "late"}])
    assert channel.read(job_id, cursor, 1)[0] == [{"type": "late"}]


def test_the_async_reader_sees_the_same_log(channel):
    job_id = uuid.uuid4()
    channel.publish(job_id, [{"type": "delta", "n": 1}, {"type": "done"}])

    async def read_all():
        try:
            return await channel.aread(job_id, None, 1)
        finally:
            await channel.aclose()

    # In a thread of its own: a browser test's Playwright may keep an event loop registered in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        events, _ = pool.submit(asyncio.run, read_all()).result()
    assert events == [{"type": "delta", "n": 1}, {"type": "done"}]


def test_a_line_being_written_is_read_once_complete(tmp_path):
    channel = FileTransport(tmp_path)
    job_id = uuid.uuid4()
    (tmp_path / f"{job_id}.jsonl").write_bytes(b'{"type": "delta"}\n{"type": "do')

    events, cursor = channel.read(job_id, None, 0)
    assert events == [{"type": "delta"}]
    with open(tmp_path / f"{job_id}.jsonl", "ab") as f:
        f.write(b'ne"}\n')
    assert channel.read(job_id, cursor, 0)[0] == [{"type": "done"}]
