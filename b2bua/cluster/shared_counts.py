"""The live counters of a cluster in Redis (docs/cluster.md): the I/O of the rules in
``shares.py``, for one signalling worker of one node.

- Our fields change in order through one queue and one connection: a call's place is
  taken by the admission script, given back by ``HINCRBY -1``; every ``REWRITE`` seconds
  we write our absolute values again, so what a Redis restart lost comes back. A field
  back at zero (and a Retry-After hold past) is deleted rather than kept, and a counter
  without fields leaves the index the nodes fetch: Redis holds, and each node fetches,
  the counters in use, not every gateway and phone that ever had a call.
- Our liveness key is refreshed every second and lives 3 s: a dead node's places stop
  counting within 3 s, and the next admission on that counter drops its field.
- What routing reads (a vendor's calls now, a phone's, a vendor's Retry-After hold) is
  our own count plus the other nodes', fetched every ``OTHERS_EVERY`` seconds.
- Redis unreachable, or rebuilding after it lost its data: an admission takes at most
  this node's share of the capacity (capacity / live nodes), from our own count; the
  state shows in ``/health`` and ``/cluster``.
- A call rate (calls per second with a burst) is one GCRA deadline per limited thing in
  Redis, moved by a script on Redis's clock (``shares.PACE_LUA``), asked as an admission
  is; Redis unreachable, slow or rebuilding, this node keeps to its share of the rate
  (``shares.pace_share``) on its own workers' table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from b2bua.cluster import shares

log = logging.getLogger("b2bua.cluster")

FAILURES = (RedisError, OSError, TimeoutError)
OTHERS_EVERY = 0.25
TIMEOUT = 0.5  # seconds a Redis command may take before Redis counts as unreachable
ADMIT_WAIT = 0.6  # an admission not answered by then is decided by this node's share


@dataclass
class SharedStats:
    admissions: int = 0
    refused: int = 0
    by_share: int = 0  # admissions decided on our share (Redis down or rebuilding)
    errors: int = 0
    restarts_seen: int = 0  # Redis came back without its data
    state: str = "starting"  # up, down, rebuilding
    live_nodes: int = 1
    rate_admitted: int = 0  # calls a call rate admitted (through Redis or by share)
    rate_refused: int = 0
    rate_by_share: int = 0  # call rates decided on our share (Redis down or rebuilding)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Op:
    kind: str  # "admit", "delta", "set", "clear", "fail", "forget", "tell", "pace"
    key: str
    value: int = 0
    done: asyncio.Future[Any] | None = None
    text: str = ""
    burst: int = 0  # "pace": value is the interval (us)


class SharedCounts:
    def __init__(self, url: str, node: str, worker: int) -> None:
        self.url = url
        self.node = node
        self.mine = shares.field(node, worker)
        self.own: dict[str, int] = {}  # our field's value per counter (ours only)
        self.others: dict[str, tuple[int, int]] = {}  # other live nodes: (sum, max)
        self.stats = SharedStats()
        self._queue: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._client: Any = None
        self._admit: Any = None
        self._sum_others: Any = None
        self._rebuild_until = 0.0
        self._run_id: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._indexed: set[str] = set()  # counters we added to the index
        self._fail: Any = None
        self._pace: Any = None
        # What another node (or this one) tells on the suspensions channel: a JSON dict.
        self.on_told: Callable[[dict[str, Any]], None] = lambda message: None

    # -- what the counters ask -------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.stats.state == "up"

    def other(self, kind: str, ident: int) -> int:
        return self.others.get(shares.counter_key(kind, ident), (0, 0))[0]

    def other_max(self, kind: str, ident: int) -> int:
        return self.others.get(shares.counter_key(kind, ident), (0, 0))[1]

    def changed(self, kind: str, ident: int, delta: int) -> None:
        """Our count under a key moved (a call ended, a leg to a vendor started)."""
        key = shares.counter_key(kind, ident)
        value = self.own.get(key, 0) + delta
        if value == 0:
            self._clear(key)  # nothing of ours left: our field goes
            return
        self.own[key] = value
        self._push(_Op("delta", key, delta))

    def _clear(self, key: str) -> None:
        self.own.pop(key, None)
        self._push(_Op("clear", key))

    def publish(self, kind: str, ident: int, value: int) -> None:
        """Our value under a key (a vendor's Retry-After hold): the others read the max."""
        key = shares.counter_key(kind, ident)
        self.own[key] = value
        self._push(_Op("set", key, value))

    async def admit(self, kind: str, ident: int, capacity: int, local_total: int) -> bool:
        """One more call under the key if the cluster's total stays within ``capacity``;
        ``local_total``: this node's count now, for the share when Redis cannot say."""
        key = shares.counter_key(kind, ident)
        self.own[key] = self.own.get(key, 0) + 1  # reserved: a rewrite meanwhile keeps it
        if not self.usable:
            return self._by_share(key, capacity, local_total)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._push(_Op("admit", key, capacity, done))
        try:
            # Bounded well inside the edge's 1.5 s for a node's first answer (with the
            # note's wait after it), so a slow Redis never makes the edge give up on us.
            admitted = bool(await asyncio.wait_for(asyncio.shield(done), ADMIT_WAIT))
        except (TimeoutError, ConnectionError):
            return self._by_share(key, capacity, local_total)
        self._count(key, admitted)
        return admitted

    async def pace(self, kind: str, ident: int, interval_us: int, burst: int,
                   local: Callable[[int, int], float]) -> float:
        """A call under a limited thing's rate (one every ``interval_us`` with ``burst``)
        across the cluster: 0.0 when admitted, else the seconds until one would be. Redis
        unreachable, slow (``ADMIT_WAIT``) or rebuilding: ``local(interval_us, burst)``
        decides with this node's share of them."""
        if not self.usable:
            return self._paced_by_share(interval_us, burst, local)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._push(_Op("pace", shares.rate_key(kind, ident), interval_us, done,
                       burst=burst))
        try:
            wait_us = int(await asyncio.wait_for(asyncio.shield(done), ADMIT_WAIT))
        except (TimeoutError, ConnectionError):
            return self._paced_by_share(interval_us, burst, local)
        self._count_paced(wait_us == 0)
        return wait_us / 1_000_000

    def _paced_by_share(self, interval_us: int, burst: int,
                        local: Callable[[int, int], float]) -> float:
        wait = local(*shares.pace_share(interval_us, burst, self.stats.live_nodes))
        self.stats.rate_by_share += 1
        self._count_paced(wait == 0)
        return wait

    def _count_paced(self, admitted: bool) -> None:
        if admitted:
            self.stats.rate_admitted += 1
        else:
            self.stats.rate_refused += 1

    def _by_share(self, key: str, capacity: int, local_total: int) -> bool:
        admitted = local_total < shares.share(capacity, self.stats.live_nodes)
        self.stats.by_share += 1
        self._count(key, admitted)
        return admitted

    def _count(self, key: str, admitted: bool) -> None:
        if admitted:
            self.stats.admissions += 1
        else:
            self.stats.refused += 1
            self.own[key] -= 1  # the reservation given back; Redis never counted it

    def count_failure(self, key: str) -> asyncio.Future[Any]:
        """One failure of a terminal (``shares.failures_key``); resolves to the live
        nodes' failures together (an exception when Redis cannot say)."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.usable:
            done.set_exception(ConnectionError("Redis unreachable"))
        else:
            self._push(_Op("fail", key, done=done))
        return done

    def forget_failures(self, key: str) -> None:
        if self.usable:
            self._push(_Op("forget", key))

    def tell(self, message: dict[str, Any]) -> None:
        """Tell every node (this one too) on the suspensions channel."""
        self._push(_Op("tell", shares.SUSPENSIONS, text=json.dumps(message)))

    def _push(self, op: _Op) -> None:
        self._queue.append(op)
        self._wake.set()

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.from_url(
            self.url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
            single_connection_client=True, decode_responses=True)
        self._admit = self._client.register_script(shares.ADMIT_LUA)
        self._sum_others = self._client.register_script(shares.OTHERS_LUA)
        self._fail = self._client.register_script(shares.FAIL_LUA)
        self._pace = self._client.register_script(shares.PACE_LUA)
        for job in (self._flush(), self._liveness(), self._rewrite(), self._fetch_others(),
                    self._listen()):
            self._tasks.append(asyncio.ensure_future(job))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            with contextlib.suppress(*FAILURES):  # best effort at the stop
                await self._client.delete(shares.liveness_key(self.node))
            await self._client.aclose()

    def _failed(self, exc: BaseException) -> None:
        self.stats.errors += 1
        if self.stats.state != "down":
            log.warning("Redis unreachable (%s): admissions by this node's share", exc)
        self.stats.state = "down"

    def _reachable(self) -> None:
        if self.stats.state == "down" or self.stats.state == "starting":
            log.info("Redis reachable: shared counters in use")
        self.stats.state = "rebuilding" if time.monotonic() < self._rebuild_until else "up"

    async def _flush(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch = list(self._queue)
            self._queue.clear()
            if not batch:
                continue
            try:
                results = await self._send(batch)
            except FAILURES as exc:  # any Redis failure: down
                self._failed(exc)
                for op in batch:
                    if op.done is not None and not op.done.done():
                        op.done.set_exception(ConnectionError(str(exc)))
                continue
            for op, result in zip(batch, results, strict=True):
                if op.done is not None and not op.done.done():
                    op.done.set_result(result)

    async def _send(self, batch: list[_Op]) -> list[Any]:
        """The batch in one pipeline, in order; each op's result. A counter new to us is
        added to the index the other nodes fetch, after our field is written: the index
        drops counters without fields, and ours must not be dropped in between."""
        new = sorted({op.key for op in batch if op.kind in _COUNTER_OPS} - self._indexed)
        cleared = {op.key for op in batch if op.kind == "clear"}
        async with self._client.pipeline(transaction=False) as pipe:
            for op in batch:
                if op.kind == "admit":
                    await self._admit(keys=[op.key], client=pipe, args=[
                        self.mine, op.value, shares.liveness_key("")])
                elif op.kind == "fail":
                    await self._fail(keys=[op.key], client=pipe, args=[
                        self.mine, shares.FAILURES_TTL_MS, shares.liveness_key("")])
                elif op.kind == "pace":
                    await self._pace(keys=[op.key], client=pipe, args=[op.value, op.burst])
                elif op.kind == "forget":
                    pipe.delete(op.key)
                elif op.kind == "tell":
                    pipe.publish(op.key, op.text)
                elif op.kind == "delta":
                    pipe.hincrby(op.key, self.mine, op.value)
                elif op.kind == "clear":
                    pipe.hdel(op.key, self.mine)
                else:
                    pipe.hset(op.key, self.mine, op.value)
            if new:
                pipe.sadd(_INDEX, *new)
            results = list(await pipe.execute())
        # A counter we cleared may leave the index: added again when ours rises (at the
        # latest by the next rewrite, which writes what is ours).
        self._indexed.update(new)
        self._indexed.difference_update(cleared)
        return results[:-1] if new else results

    async def _liveness(self) -> None:
        while True:
            try:
                await self._client.set(shares.liveness_key(self.node), "1",
                                       px=shares.LIVENESS_MS)
                info = await self._client.info("server")
                run_id = str(info.get("run_id", ""))
                if self._run_id is not None and run_id != self._run_id:
                    # Redis restarted without our fields: admissions by share until
                    # every node has written its values again.
                    self.stats.restarts_seen += 1
                    self._rebuild_until = time.monotonic() + shares.REBUILD
                    log.warning("Redis restarted: counters rebuilt within %.1f s",
                                shares.REBUILD)
                    self._indexed.clear()
                    await self._write_own()
                self._run_id = run_id
                live = 0
                async for _key in self._client.scan_iter(
                        match=shares.liveness_key("*"), count=100):
                    live += 1
                self.stats.live_nodes = max(live, 1)
                self._reachable()
            except FAILURES as exc:
                self._failed(exc)
            await asyncio.sleep(shares.REFRESH)

    async def _write_own(self) -> None:
        if not self.own:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for key, value in self.own.items():
                pipe.hset(key, self.mine, value)
            await pipe.execute()

    async def _rewrite(self) -> None:
        while True:
            await asyncio.sleep(shares.REWRITE)
            now_ms = time.time() * 1000
            for key, value in list(self.own.items()):
                if value == 0 or (key.startswith(_HOLDS) and value < now_ms):
                    self._clear(key)  # a place given back, a hold that is over
                else:
                    self._push(_Op("set", key, value))

    async def _fetch_others(self) -> None:
        while True:
            await asyncio.sleep(OTHERS_EVERY)
            if self.stats.state == "down":
                continue
            try:
                keys = sorted(await self._client.smembers(_INDEX))
                if not keys:
                    continue
                flat = await self._sum_others(keys=keys, args=[
                    self.node, shares.liveness_key(""), _INDEX])
            except FAILURES as exc:
                self._failed(exc)
                continue
            self.others = {key: (int(flat[2 * i]), int(flat[2 * i + 1]))
                           for i, key in enumerate(keys)}


    async def _listen(self) -> None:
        """The suspensions channel, on a connection of its own; subscribed again after
        Redis comes back."""
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(shares.SUSPENSIONS)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    try:
                        told = json.loads(message["data"])
                    except (TypeError, ValueError):
                        continue
                    if isinstance(told, dict):
                        self.on_told(told)
            except FAILURES as exc:
                self._failed(exc)
            finally:
                with contextlib.suppress(*FAILURES):
                    await pubsub.aclose()
            await asyncio.sleep(shares.REFRESH)


_INDEX = f"{shares.PREFIX}counters"
_COUNTER_OPS = ("admit", "delta", "set")
_HOLDS = shares.counter_key("retry_ms", 0).rsplit(":", 1)[0] + ":"  # vendors' Retry-After
