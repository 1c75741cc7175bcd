"""The inference app's tables, for Django to find: they live in ``inference.sandbox.models``."""

from inference.sandbox.models import JobStatus, SandboxJob, SandboxQuota

__all__ = ["JobStatus", "SandboxJob", "SandboxQuota"]
