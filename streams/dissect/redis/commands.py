"""What a command's arguments mean: where its first key is, and which are secrets."""

from __future__ import annotations

# Commands whose first argument is a key (most of them).
_KEY_FIRST = frozenset(
    """
APPEND BITCOUNT BITFIELD BITFIELD_RO BITOP BITPOS BLMOVE BLPOP BRPOP BRPOPLPUSH BZPOPMAX
BZPOPMIN COPY DECR DECRBY DEL DUMP EXISTS EXPIRE EXPIREAT EXPIRETIME GEOADD GEODIST GEOHASH
GEOPOS GEORADIUS GEORADIUSBYMEMBER GEORADIUSBYMEMBER_RO GEORADIUS_RO GEOSEARCH
GEOSEARCHSTORE GET GETBIT GETDEL GETEX GETRANGE GETSET HDEL HEXISTS HEXPIRE HGET HGETALL
HINCRBY HINCRBYFLOAT HKEYS HLEN HMGET HMSET HRANDFIELD HSCAN HSET HSETNX HSTRLEN HVALS INCR
INCRBY INCRBYFLOAT LCS LINDEX LINSERT LLEN LMOVE LPOP LPOS LPUSH LPUSHX LRANGE LREM LSET
LTRIM MGET MSET MSETNX PERSIST PEXPIRE PEXPIREAT PEXPIRETIME PFADD PFCOUNT PFMERGE PSETEX PTTL
RENAME RENAMENX RESTORE RPOP RPOPLPUSH RPUSH RPUSHX SADD SCARD SDIFF SDIFFSTORE SET SETBIT
SETEX SETNX SETRANGE SINTER SINTERSTORE SISMEMBER SMEMBERS SMISMEMBER SMOVE SORT SORT_RO SPOP
SRANDMEMBER SREM SSCAN STRLEN SUBSTR SUNION SUNIONSTORE TOUCH TTL TYPE UNLINK WATCH XACK XADD
XAUTOCLAIM XCLAIM XDEL XLEN XPENDING XRANGE XREVRANGE XSETID XTRIM ZADD ZCARD ZCOUNT
ZDIFFSTORE ZINCRBY ZINTERSTORE ZLEXCOUNT ZMSCORE ZPOPMAX ZPOPMIN ZRANDMEMBER ZRANGE
ZRANGEBYLEX ZRANGEBYSCORE ZRANGESTORE ZRANK ZREM ZREMRANGEBYLEX ZREMRANGEBYRANK
ZREMRANGEBYSCORE ZREVRANGE ZREVRANGEBYLEX ZREVRANGEBYSCORE ZREVRANK ZSCAN ZSCORE
ZUNIONSTORE
""".split()
)
# Container commands whose key follows the subcommand (OBJECT ENCODING key, ...).
_KEY_SECOND = frozenset({"OBJECT", "MEMORY", "XINFO", "XGROUP"})
# A numkeys argument at this index, keys right after it.
_NUMKEYS_AT = {
    "EVAL": 1, "EVALSHA": 1, "EVAL_RO": 1, "EVALSHA_RO": 1, "FCALL": 1, "FCALL_RO": 1,
    "ZUNION": 0, "ZINTER": 0, "ZDIFF": 0, "ZINTERCARD": 0, "SINTERCARD": 0, "LMPOP": 0,
    "ZMPOP": 0, "BLMPOP": 1, "BZMPOP": 1,
}  # fmt: skip
# Publish/subscribe: the channel stands where a key would.
_CHANNEL_FIRST = frozenset({
    "PUBLISH", "SPUBLISH", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE",
    "PUNSUBSCRIBE", "SUNSUBSCRIBE",
})  # fmt: skip
SUBSCRIBES = {
    "SUBSCRIBE": "subscribe", "PSUBSCRIBE": "psubscribe", "SSUBSCRIBE": "ssubscribe",
    "UNSUBSCRIBE": "unsubscribe", "PUNSUBSCRIBE": "punsubscribe",
    "SUNSUBSCRIBE": "sunsubscribe",
}  # fmt: skip
REDACTED = "[REDACTED]"


def first_key(name: str, args: list) -> int | None:
    """Index in `args` (the arguments after the command name) of the first key, if any."""
    if name in _KEY_FIRST or name in _CHANNEL_FIRST:
        return 0 if args else None
    if name in _KEY_SECOND:
        return 1 if len(args) > 1 else None
    at = _NUMKEYS_AT.get(name)
    if at is not None:
        if len(args) > at + 1 and args[at] not in (b"0", "0"):
            return at + 1
        return None
    if name in ("XREAD", "XREADGROUP"):
        for k, a in enumerate(args):
            if isinstance(a, bytes) and a.upper() == b"STREAMS":
                return k + 1 if k + 1 < len(args) else None
    return None


def secret_args(name: str, args: list) -> set[int]:
    """Indexes of arguments that are passwords (AUTH, HELLO ... AUTH, MIGRATE ... AUTH)."""
    if name == "AUTH":
        return set(range(len(args)))
    out: set[int] = set()
    if name in ("HELLO", "MIGRATE"):
        for k, a in enumerate(args):
            word = a.upper() if isinstance(a, bytes) else b""
            if word == b"AUTH":
                out.update({k + 1, k + 2} if name == "HELLO" else {k + 1})
            elif word == b"AUTH2":
                out.update({k + 1, k + 2})
    if name == "CONFIG" and len(args) >= 3 and isinstance(args[0], bytes):
        if args[0].upper() == b"SET":
            for k in range(1, len(args) - 1, 2):
                if isinstance(args[k], bytes) and args[k].lower() in (
                    b"requirepass", b"masterauth", b"masteruser",
                ):  # fmt: skip
                    out.add(k + 1)
    return out
