import logging
import os
import time

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

logger = logging.getLogger(__name__)


def publish_retry_policy(seconds: float) -> dict:
    """kombu's retry policy for sending one task: reconnect and try again, every half second at
    most, until it is sent or ``seconds`` have passed (then the broker's error is raised).

    A time limit rather than kombu's count of tries: connecting to a Redis that restarts fails at
    once, to one that does not answer only after broker_connection_timeout, and a request waiting
    on the send should wait about as long either way."""
    deadline = time.monotonic() + seconds

    def give_up_after_deadline(exc, interval):
        if time.monotonic() + interval > deadline:
            raise exc
        logger.warning("celery: the broker is unreachable (%s); sending again in %.2f s", exc, interval)

    return {
        "max_retries": None,
        "interval_start": 0,
        "interval_step": 0.25,
        "interval_max": 0.5,
        "errback": give_up_after_deadline,
    }


def _redis_channel_lost_is_a_connection_error() -> None:
    """After Celery 5.7 loses the broker it collects the old connection, which drops its Redis
    channels' client; closing those channels (to put unacknowledged messages back) and acking a
    task that finishes after the reconnect both go through kombu's ``Channel._connparams``, which
    then raised AttributeError. Celery ignores connection errors there, not that one, so the worker
    stopped for good ("Unrecoverable error") and with it every email. A channel whose connection
    is gone now raises Redis's ConnectionError, which Celery handles as the lost connection it is:
    the consumer reconnects, and the messages it could not ack stay in Redis's unacknowledged set,
    which hands them out again after the visibility timeout (delivery is at least once).
    tests/faults/test_redis_restart.py restarts Redis under a working worker."""
    from kombu.transport import redis as kombu_redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    connparams = kombu_redis.Channel._connparams
    if getattr(connparams, "portal_patched", False):
        return

    def _connparams(self, asynchronous=False):
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel was closed")
        return connparams(self, asynchronous=asynchronous)

    _connparams.portal_patched = True
    kombu_redis.Channel._connparams = _connparams


_redis_channel_lost_is_a_connection_error()


class PortalCelery(Celery):
    def send_task(self, *args, retry_policy=None, **kwargs):
        # Every task the portal sends (delay, apply_async, send_task) waits out a broker restart
        # for CELERY_PUBLISH_RETRY_SECONDS: it is sent after its transaction commits, and failing
        # then would lose it (the email of a request already saved) and answer 500 for a change
        # that was made.
        if retry_policy is None:
            from django.conf import settings

            retry_policy = publish_retry_policy(settings.CELERY_PUBLISH_RETRY_SECONDS)
        return super().send_task(*args, retry_policy=retry_policy, **kwargs)


app = PortalCelery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
