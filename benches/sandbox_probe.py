"""Timing probes for benches/sandbox.py --probe: the ASGI server and the sandbox worker run with a few
of the sandbox's functions wrapped, so that when each was called and returned goes to a JSON-lines
file per process under SANDBOX_PROBE_DIR. The wrappers only read the clock; what the functions do is
unchanged (but for the experiment of SANDBOX_PROBE_LOAD_MEMORY_SECONDS, which changes the worker's
LOAD_MEMORY_SECONDS: benches/sandbox.py --load-memory-seconds). Not used by the portal.

    uvicorn --app-dir benches sandbox_probe:application ...   (the ASGI server, probed)
    celery -A sandbox_probe worker ...                        (the sandbox worker, probed; PYTHONPATH=benches)
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time

_lock = threading.Lock()
_file = None
_local = threading.local()


def _record(kind: str, **fields) -> None:
    global _file
    with _lock:
        if _file is None:
            folder = os.environ["SANDBOX_PROBE_DIR"]
            _file = open(os.path.join(folder, f"{os.getpid()}.jsonl"), "a", buffering=1)  # noqa: SIM115
        _file.write(json.dumps({"kind": kind, **fields}, default=str) + "\n")


def _timed(owner, name: str, label: str) -> None:
    """Wrap owner.name so that each call's (start, end) joins the calling thread's list of spans
    (nothing when the code has no such name any more)."""
    original = getattr(owner, name, None)
    if original is None:
        _record("probe.missing", name=f"{getattr(owner, '__name__', owner)}.{name}")
        return

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            spans = getattr(_local, "spans", None)
            if spans is not None:
                spans.append((label, start, time.time()))

    setattr(owner, name, wrapper)


# --- The ASGI server ----------------------------------------------------------------------------------


def _web_patch() -> None:
    from celery import Celery

    from inference.sandbox import openai_api, transport

    for name, label in (
        ("api_token_authenticate", "token"),
        ("sandbox_access", "access"),
        ("sandbox_job_submit", "submit"),
    ):
        _timed(openai_api, name, label)
    _timed(Celery, "send_task", "send_task")
    admit = openai_api._admit

    @functools.wraps(admit)
    def admit_probed(*args, **kwargs):
        _local.spans = []
        start = time.time()
        try:
            result = admit(*args, **kwargs)
        finally:
            spans, _local.spans = _local.spans, None
        job = result[0].pk if isinstance(result, tuple) else None
        _record("web.admit", job=job, start=start, end=time.time(), spans=spans)
        return result

    openai_api._admit = admit_probed
    seen: set = set()
    for cls in (transport.RedisTransport, transport.FileTransport):
        aread = cls.aread

        async def aread_probed(self, job_id, *args, _aread=aread, **kwargs):
            events, cursor = await _aread(self, job_id, *args, **kwargs)
            if events and job_id not in seen:
                seen.add(job_id)
                _record("web.first_event", job=job_id, at=time.time())
            return events, cursor

        cls.aread = aread_probed


def __getattr__(name: str):
    if name == "application":
        from portal.asgi import application

        _web_patch()
        globals()["application"] = application
        return application
    if name == "app":
        return _worker_app()
    raise AttributeError(name)


# --- The sandbox worker -------------------------------------------------------------------------------


def _worker_patch(**_) -> None:
    from inference.sandbox import registry, tasks, transport, worker

    # An experiment, not a probe: how long the batcher remembers how many jobs arrived together
    # (benches/sandbox.py --load-memory-seconds).
    if os.environ.get("SANDBOX_PROBE_LOAD_MEMORY_SECONDS"):
        worker.LOAD_MEMORY_SECONDS = float(os.environ["SANDBOX_PROBE_LOAD_MEMORY_SECONDS"])
        _record("probe.experiment", load_memory_seconds=worker.LOAD_MEMORY_SECONDS)

    _timed(registry.ModelRegistry, "get", "registry")
    _timed(worker.Batcher, "_drain", "drain")
    for name, label in (
        ("checkpoint_fetch", "checkpoint_fetch"),
        ("sandbox_job_record_progress", "record_progress"),
        ("sandbox_job_record_prompt_tokens", "record_progress"),
    ):
        if hasattr(worker, name):
            _timed(worker, name, label)

    start_job = tasks.sandbox_job_start

    def start_probed(*args, **kwargs):
        start = time.time()
        job = start_job(*args, **kwargs)
        _record("worker.job_start", job=kwargs.get("job_id", args[0] if args else None), start=start, end=time.time())
        return job

    tasks.sandbox_job_start = start_probed

    # The task hands its started job to the batcher: Batcher.submit (or run, which submits and waits).
    handoff_name = "submit" if hasattr(worker.Batcher, "submit") else "run"
    handoff = getattr(worker.Batcher, handoff_name)

    def handoff_probed(self, job, *args, _handoff=handoff, **kwargs):
        _record("worker.handoff", job=job.pk, at=time.time())
        return _handoff(self, job, *args, **kwargs)

    setattr(worker.Batcher, handoff_name, handoff_probed)

    take = worker.Batcher._take_batch

    def take_probed(self, *args, **kwargs):
        start = time.time()
        batch = take(self, *args, **kwargs)
        _record("worker.take_batch", start=start, end=time.time(), jobs=[a.job.pk for a in batch])
        return batch

    worker.Batcher._take_batch = take_probed

    run_batch = worker.Batcher._run_batch

    def run_batch_probed(self, batch, *args, **kwargs):
        _local.spans = []
        start = time.time()
        try:
            return run_batch(self, batch, *args, **kwargs)
        finally:
            spans, _local.spans = _local.spans, None
            _record("worker.run_batch", start=start, end=time.time(), jobs=[a.job.pk for a in batch], spans=spans)

    worker.Batcher._run_batch = run_batch_probed

    decode_steps = worker.decode_steps

    def decode_probed(*args, **kwargs):
        start = time.time()
        first = True
        for step in decode_steps(*args, **kwargs):
            if first:
                spans = getattr(_local, "spans", None)
                if spans is not None:
                    spans.append(("prefill", start, time.time()))
                first = False
            yield step

    worker.decode_steps = decode_probed

    seen: set = set()
    for cls in (transport.RedisTransport, transport.FileTransport):
        publish = cls.publish

        def publish_probed(self, job_id, events, *args, _publish=publish, **kwargs):
            start = time.time()
            _publish(self, job_id, events, *args, **kwargs)
            spans = getattr(_local, "spans", None)
            if spans is not None:
                spans.append(("publish", start, time.time()))
            if job_id not in seen:
                seen.add(job_id)
                _record("worker.first_publish", job=job_id, start=start, end=time.time())

        cls.publish = publish_probed


def _worker_app():
    from celery import signals

    from portal.celery import app

    signals.worker_ready.connect(_worker_patch, weak=False)

    @signals.task_received.connect(weak=False)
    def received(request=None, **_):
        _record("worker.received", job=(request.args or [None])[0], at=time.time())

    globals()["app"] = app
    return app
