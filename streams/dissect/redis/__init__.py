"""Redis (RESP2 and RESP3): incremental, capped framing (`parser`), in-order pairing with
pub/sub pushes as calls of their own (`stitch`), and the factory the registry lists."""

from __future__ import annotations

import re

from streams.dissect.redis.stitch import PROTOCOL, RedisDissector
from streams.dissect.skeleton import SkeletonFactory

__all__ = ["REDIS", "RedisDissector", "RedisFactory"]

_WORDS = (
    b"PING|AUTH|HELLO|SELECT|GET|SET|MGET|MSET|DEL|EXISTS|INCR|DECR|EXPIRE|TTL|KEYS|SCAN|"
    b"HGET|HSET|HGETALL|HMGET|LPUSH|RPUSH|LPOP|RPOP|LRANGE|SADD|SMEMBERS|ZADD|ZRANGE|"
    b"SUBSCRIBE|PSUBSCRIBE|PUBLISH|MULTI|EXEC|WATCH|INFO|CLIENT|CONFIG|COMMAND|EVAL|EVALSHA|"
    b"XADD|XREAD|FLUSHDB|FLUSHALL|DBSIZE|QUIT|ECHO|TYPE|SETEX|SETNX|INCRBY|GETSET|UNLINK"
)
_ARRAY_HEAD = re.compile(rb"\*[1-9][0-9]{0,6}\r\n\$[0-9]{1,9}\r\n")
_KNOWN_ARRAY = re.compile(rb"\*[1-9][0-9]{0,6}\r\n\$[0-9]{1,2}\r\n(?:" + _WORDS + rb")\r\n", re.I)
_INLINE = re.compile(rb"(?:" + _WORDS + rb")(?: [^\r\n]*)?\r?\n", re.I)
_REPLY = re.compile(rb"(?:\+OK\r\n|\+PONG\r\n|\+QUEUED\r\n|-WRONGTYPE |-NOAUTH |-NOPERM )")


class RedisFactory(SkeletonFactory):
    protocol = PROTOCOL
    ports = frozenset({6379, 6380, 26379})
    dissector = RedisDissector

    def probe(self, data: bytes) -> float:
        """1.0 for a command array naming a known command, 0.8 for any array of bulk
        strings, 0.6 for a known inline command or a typical first reply, else 0.0."""
        head = bytes(data[:256])
        if _KNOWN_ARRAY.match(head):
            return 1.0
        if _ARRAY_HEAD.match(head):
            return 0.8
        if _REPLY.match(head):
            return 0.6
        if _INLINE.match(head) and b" HTTP/" not in head.partition(b"\n")[0]:
            return 0.6
        return 0.0


REDIS = RedisFactory()
