"""The broker connection the portal's Celery workers use, after the broker went away."""

from __future__ import annotations

import os

import pytest
from kombu import Connection
from redis.exceptions import ConnectionError as RedisConnectionError

import portal.celery  # noqa: F401 - applies the patch under test, as every worker does


@pytest.mark.redis
def test_a_channel_of_a_collected_connection_raises_a_connection_error_that_celery_ignores(unavailable):
    """Celery 5.7 collects a lost connection before it closes it, and acks late tasks on the old
    channel: both used to raise AttributeError, which stopped the worker for good."""
    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        unavailable("a Redis broker", "needs CELERY_BROKER_URL pointing at Redis")
    connection = Connection(url)
    errors_celery_ignores = connection.connection_errors
    channel = connection.default_channel
    connection.collect()
    channel._disconnect_pools()  # as kombu does once a command on them failed: the broker went away

    # Putting unacknowledged messages back (on close), and acking a task that finished late.
    for use in (channel.qos.restore_unacked, lambda: channel.qos.ack("a-delivery-tag")):
        with pytest.raises(RedisConnectionError) as raised:
            use()
        assert isinstance(raised.value, errors_celery_ignores)
