"""Readers never go backwards: once a model version is published, no list computed from an
older version may replace one of its lists.

Publishing raises a fence in Redis (``model:fence``) before it writes any list; every list
write, by the publisher or by a worker, goes through one Lua script that compares the
writer's fence with Redis's and writes only when it is not older. The compare and the
write are one atomic step, so a worker still on the previous version cannot slip an old
list in after a new one.

A version's fence is the UTC timestamp that starts its name (``20261201T101500Z-…``);
the streaming model, which no publish produced, has the lowest fence, ``0``.
"""

from __future__ import annotations

import re

from streams import redis_keys

ONLINE_FENCE = "0"
_VERSION_TIME = re.compile(r"\d{8}T\d{6}Z")

# KEYS: the fence, then the lists. ARGV: the writer's fence, then a value and a TTL (0: none) per list.
# Lua compares strings byte by byte, which orders the timestamps as time does.
WRITE_LISTS = """
local current = redis.call('GET', KEYS[1])
if current and current > ARGV[1] then return 0 end
for i = 2, #KEYS do
  local ttl = tonumber(ARGV[2 * i - 1])
  if ttl > 0 then
    redis.call('SET', KEYS[i], ARGV[2 * i - 2], 'EX', ttl)
  else
    redis.call('SET', KEYS[i], ARGV[2 * i - 2])
  end
end
return #KEYS - 1
"""

# Raise the fence to ARGV[1] unless it is already higher; the fence in force is returned.
RAISE = """
local current = redis.call('GET', KEYS[1])
if (not current) or current < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return current
"""


def fence_of(version: str) -> str:
    match = _VERSION_TIME.match(version)
    return match.group(0) if match else ONLINE_FENCE


def write_arguments(fence: str, lists: list[tuple[str, bytes, int]]) -> tuple[list[str], list]:
    """KEYS and ARGV of ``WRITE_LISTS`` for (key, value, ttl) lists."""
    keys, args = [redis_keys.MODEL_FENCE], [fence]
    for key, value, ttl in lists:
        keys.append(key)
        args += [value, ttl]
    return keys, args
