"""The shared cache: Django's Redis cache, except that a Redis that cannot be reached is a cache
that holds nothing, instead of an error that fails the request.

What the portal keeps there is worth less than answering: the login rate limits (allauth's and
portal.adapters'), the TOTP codes already used, the addresses an account logged in from, the
gateway's per-minute counters. While Redis restarts, reads miss, writes are dropped and counters
start again from zero, so the limits count nothing for that while and a TOTP code could be
replayed within its 90 seconds: the price of a site that logs people in and serves pages during a
broker restart, where the alternative is a 500 on every login. Each process logs a warning (at
most every WARNING_INTERVAL_SECONDS) while it happens. ``clear()`` still fails loudly.
"""

from __future__ import annotations

import logging
import time

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

REDIS_UNREACHABLE = (RedisConnectionError, RedisTimeoutError)
WARNING_INTERVAL_SECONDS = 10.0
_last_warning = 0.0


def _unreachable(operation: str, exc: Exception) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= WARNING_INTERVAL_SECONDS:
        _last_warning = now
        logger.warning("cache: Redis unreachable (%s: %s); going on without the cache", operation, exc)


class FaultTolerantRedisCacheClient(RedisCacheClient):
    def add(self, key, value, timeout):
        try:
            return super().add(key, value, timeout)
        except REDIS_UNREACHABLE as exc:
            _unreachable("add", exc)
            return True  # as if it were new: the caller goes on as it does the first time

    def get(self, key, default):
        try:
            return super().get(key, default)
        except REDIS_UNREACHABLE as exc:
            _unreachable("get", exc)
            return default

    def set(self, key, value, timeout):
        try:
            super().set(key, value, timeout)
        except REDIS_UNREACHABLE as exc:
            _unreachable("set", exc)

    def touch(self, key, timeout):
        try:
            return super().touch(key, timeout)
        except REDIS_UNREACHABLE as exc:
            _unreachable("touch", exc)
            return False

    def delete(self, key):
        try:
            return super().delete(key)
        except REDIS_UNREACHABLE as exc:
            _unreachable("delete", exc)
            return False

    def get_many(self, keys):
        try:
            return super().get_many(keys)
        except REDIS_UNREACHABLE as exc:
            _unreachable("get_many", exc)
            return {}

    def has_key(self, key):
        try:
            return super().has_key(key)
        except REDIS_UNREACHABLE as exc:
            _unreachable("has_key", exc)
            return False

    def incr(self, key, delta):
        try:
            return super().incr(key, delta)
        except REDIS_UNREACHABLE as exc:
            _unreachable("incr", exc)
            return delta  # a counter that starts again

    def set_many(self, data, timeout):
        try:
            super().set_many(data, timeout)
        except REDIS_UNREACHABLE as exc:
            _unreachable("set_many", exc)

    def delete_many(self, keys):
        try:
            super().delete_many(keys)
        except REDIS_UNREACHABLE as exc:
            _unreachable("delete_many", exc)


class FaultTolerantRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = FaultTolerantRedisCacheClient
