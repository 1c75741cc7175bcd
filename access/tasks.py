"""The Celery tasks, as Celery's autodiscovery looks for them: each domain defines its own.

Task names are explicit (``access.notify_decision``), so moving a task between modules
never orphans a message already queued.
"""

from access.distribution import tasks as distribution_tasks
from access.grants import tasks as grants_tasks
from access.requests import tasks as requests_tasks
from access.review import tasks as review_tasks
from access.webhooks import tasks as webhooks_tasks

__all__ = ["distribution_tasks", "grants_tasks", "requests_tasks", "review_tasks", "webhooks_tasks"]
