"""The inference app's Celery tasks, for autodiscovery: they live in ``inference.sandbox.tasks``."""

from inference.sandbox.tasks import sandbox_job_run, sandbox_jobs_sweep_task, sandbox_records_purge_task

__all__ = ["sandbox_job_run", "sandbox_jobs_sweep_task", "sandbox_records_purge_task"]
