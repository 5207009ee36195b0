"""The rules of the counters shared through Redis (docs/cluster.md), apart from the I/O
so that they are tested on their own (tests/unit/test_cluster_shares.py).

Each counter is a Redis hash, one field per node and signalling worker
(``node/worker``); a node's liveness key expires unless the node refreshes it. A total is
the sum of the fields of live nodes; the fields of dead nodes are dropped by whoever
finds them. The Lua below does an admission in one step on the server, so two nodes
never both take a counter's last place.
"""

from __future__ import annotations

import hashlib

PREFIX = "ss:"
LIVENESS_MS = 3000  # a node's liveness key lives this long unless refreshed
REFRESH = 1.0  # seconds between refreshes of our liveness key
REWRITE = 2.0  # seconds between rewrites of our own absolute values
REBUILD = REWRITE + 1.5  # after Redis lost its data: every node has rewritten by then


def counter_key(kind: str, ident: int) -> str:
    return f"{PREFIX}count:{kind}:{ident}"


def liveness_key(node: str) -> str:
    return f"{PREFIX}node:{node}"


def field(node: str, worker: int) -> str:
    return f"{node}/{worker}"


def share(capacity: int, live_nodes: int) -> int:
    """What one node may admit on its own while the shared count cannot be asked: its
    share of the capacity, rounded down so that the shares never add up to more."""
    return capacity // max(live_nodes, 1)


# KEYS[1]: the counter. ARGV: our field, the capacity, the liveness key prefix.
# Sums the fields of live nodes (ours always), drops the dead ones', and takes one
# place in our field when the total is below the capacity. 1: admitted, 0: full.
ADMIT_LUA = """
local fields = redis.call('HGETALL', KEYS[1])
local mine = ARGV[1]
local mynode = string.match(mine, '^(.*)/[^/]*$')
local total = 0
local alive = {}
for i = 1, #fields, 2 do
  local node = string.match(fields[i], '^(.*)/[^/]*$') or fields[i]
  if alive[node] == nil then
    alive[node] = node == mynode or redis.call('EXISTS', ARGV[3] .. node) == 1
  end
  if alive[node] then
    total = total + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
if total >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], mine, 1)
return 1
"""

def rate_key(kind: str, ident: int) -> str:
    """A limited thing's call rate: its GCRA deadline (a plain string key, not a counter
    hash: never in the index of counters)."""
    return f"{PREFIX}rate:{kind}:{ident}"


SHARE_INTERVAL_CAP_US = 10_000_000  # the floor of a node's share: one call every 10 s


def pace_share(interval_us: int, burst: int, live_nodes: int) -> tuple[int, int]:
    """A call rate one node keeps to on its own while Redis cannot be asked: its share of
    the rate (the interval times the live nodes) and of the burst (divided, at least 1),
    so that the shares add up to no more than the rate and burst. The floor: a share is
    never slower than one call every ``SHARE_INTERVAL_CAP_US`` (10 s) unless the rate
    itself is slower, so a small rate over many nodes (or a stale count of live nodes)
    does not stop a node for minutes; the shares then add up to more than the rate, by
    at most one call per 10 s per node. Likewise a burst below the live nodes gives each
    node a burst of 1."""
    nodes = max(live_nodes, 1)
    share_us = min(interval_us * nodes, max(interval_us, SHARE_INTERVAL_CAP_US))
    return share_us, max(1, burst // nodes)


# KEYS[1]: a limited thing's call rate (rate_key). ARGV: the interval (us), the burst.
# GCRA on Redis's clock (TIME, so the nodes' clocks do not matter): the key holds the
# theoretical arrival time TAT in microseconds; a call is admitted iff max(TAT, now) - now
# <= (burst - 1) x interval, and the TAT moves one interval on. The key expires when the
# TAT is reached: a missing key is a full bucket, the same state as a TAT in the past.
# 0: admitted; else the microseconds until a call would be (nothing written). Numbers
# stay below 2^53 (counts.MAX_INTERVAL_US, MAX_BURST), so Lua's doubles are exact.
PACE_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = (tonumber(ARGV[2]) - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then
  tat = now
end
local wait = tat - now - tolerance
if wait > 0 then
  return wait
end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',
           math.ceil((tat - now) / 1000))
return 0
"""

# KEYS: counters. ARGV: our node, the liveness key prefix, the index of counters. For
# each counter, the sum and the maximum of the other live nodes' fields (a vendor's
# Retry-After hold is a maximum). A counter no field is left in (every node gives its
# field back at zero) leaves the index: what is fetched stays what is in use.
OTHERS_LUA = """
local out = {}
local alive = {}
for k = 1, #KEYS do
  local fields = redis.call('HGETALL', KEYS[k])
  if #fields == 0 then
    redis.call('SREM', ARGV[3], KEYS[k])
  end
  local sum, max = 0, 0
  for i = 1, #fields, 2 do
    local node = string.match(fields[i], '^(.*)/[^/]*$') or fields[i]
    if node ~= ARGV[1] then
      if alive[node] == nil then
        alive[node] = redis.call('EXISTS', ARGV[2] .. node) == 1
      end
      if alive[node] then
        local value = tonumber(fields[i + 1])
        sum = sum + value
        if value > max then max = value end
      end
    end
  end
  out[#out + 1] = sum
  out[#out + 1] = max
end
return out
"""

# KEYS[1]: a terminal's failures. ARGV: our field, the key's lifetime (ms), the liveness
# key prefix. One failure in our field; the failures of the live nodes together.
FAIL_LUA = """
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local fields = redis.call('HGETALL', KEYS[1])
local mynode = string.match(ARGV[1], '^(.*)/[^/]*$')
local total = 0
for i = 1, #fields, 2 do
  local node = string.match(fields[i], '^(.*)/[^/]*$') or fields[i]
  if node == mynode or redis.call('EXISTS', ARGV[3] .. node) == 1 then
    total = total + tonumber(fields[i + 1])
  end
end
return total
"""

SUSPENSIONS = f"{PREFIX}suspensions"  # the channel suspensions and lifts are told on
FAILURES_TTL_MS = 3600_000  # a terminal's failures are forgotten an hour after the last


def failures_key(kind: str, username: str, source_ip: str) -> str:
    """A terminal's failure counter; hashed, so a long or odd username is a fixed key."""
    digest = hashlib.sha256(f"{kind}\0{username}\0{source_ip}".encode()).hexdigest()[:32]
    return f"{PREFIX}fail:{digest}"
