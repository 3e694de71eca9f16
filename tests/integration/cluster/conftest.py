"""Fixtures of the cluster tests: a real ``redis-server`` and ``redis-sentinel``
(harness/redis.py). Every test module here carries the ``cluster`` marker."""

from __future__ import annotations

from ..harness.redis import _redis_process, redis_sentinel, redis_server

__all__ = ["_redis_process", "redis_sentinel", "redis_server"]
