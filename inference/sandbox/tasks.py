"""The sandbox's Celery tasks. ``sandbox_job_run`` runs on the ``sandbox`` queue, in sandbox
workers started with ``--pool threads`` (one thread per job waits while the process's batcher
runs the jobs together; see ``worker``)."""

from __future__ import annotations

import os

from celery import shared_task

from inference.sandbox.models import JobStatus
from inference.sandbox.services import sandbox_job_end, sandbox_job_start, sandbox_jobs_sweep, sandbox_records_purge


# acks_late off, unlike the portal's other tasks: a job whose worker died is failed by the sweep,
# never redelivered and run a second time (the client has had its error by then).
@shared_task(name="inference.sandbox_job_run", bind=True, acks_late=False, ignore_result=True)
def sandbox_job_run(self, job_id: str) -> None:
    from inference.sandbox.worker import batcher_for_process  # torch loads in sandbox workers only

    worker = f"{self.request.hostname or 'worker'}:{os.getpid()}"
    try:
        batcher = batcher_for_process(worker)
        with batcher.arriving():
            job = sandbox_job_start(job_id=job_id, worker=worker, check_access=False)
            if job is None:
                return
            active = batcher.submit(job)
    except Exception:
        # The client must not wait out the queue timeout for a job that will never start.
        sandbox_job_end(
            job_id=job_id, status=JobStatus.FAILED, code="server_error", http_status=500,
            message="The sandbox worker could not start this request; try again.",
        )  # fmt: skip
        raise
    batcher.access_check(active)
    batcher.wait(active)


@shared_task(name="inference.sandbox_jobs_sweep", ignore_result=True, time_limit=120, soft_time_limit=100)
def sandbox_jobs_sweep_task() -> dict:
    return sandbox_jobs_sweep()


@shared_task(name="inference.sandbox_records_purge", ignore_result=True, time_limit=600, soft_time_limit=540)
def sandbox_records_purge_task() -> int:
    return sandbox_records_purge()
