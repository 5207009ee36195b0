"""The engine process: owns the live state and runs every asyncio service of the switch."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from b2bua.aio.dispatched import DispatchedSip
from b2bua.aio.hep import HepSender
from b2bua.aio.timers import LoopTimers
from b2bua.aio.transport import TcpTransport
from b2bua.calls.anchor import MediaAnchor, MediaTotals, stream_count
from b2bua.calls.cdr import CdrWriter
from b2bua.calls.counts import CallCounts
from b2bua.calls.endpoints import Origin
from b2bua.calls.recovery import recover
from b2bua.calls.switchboard import Switchboard
from b2bua.cluster.life import Job, NodeWatch, take_life
from b2bua.collector import FullCollections
from b2bua.config.live import ConfigWatcher, Params
from b2bua.control import ControlServer
from b2bua.control_api import ControlApi
from b2bua.ladders import OFF, LadderStore
from b2bua.looplag import LoopLag
from b2bua.media.plane import LocalMediaPlane, MediaPlane
from b2bua.media.pool import RelayWorkerPool
from b2bua.numbers.lists import NumberGroups
from b2bua.numbers.rules import NumberTables
from b2bua.numbers.transform import TransformTable
from b2bua.options import EngineOptions
from b2bua.policy import Account, Policy, Registered, registered_gateway
from b2bua.registrar.bindings import Binding, BindingStore
from b2bua.registrar.keepalive import KeepAlive
from b2bua.registrar.phones import PhoneDirectory
from b2bua.registrar.registrar import Registrar
from b2bua.routing.gateways import GatewayDirectory, MappingGateway, RoutingGateway
from b2bua.routing.resolver import VendorResolver
from b2bua.security.digest import NONCE_SLOTS, NonceMinter, SharedNonceCounts
from b2bua.security.state import SECURITY_SLOTS, SharedBoard
from b2bua.shared_tables import map_table
from b2bua.signalling import SignallingWorkers
from b2bua.sip.dialog import CallIds, Dialog
from b2bua.sip.message import Request
from b2bua.sip.peer import Peer
from b2bua.sip.stack import SipStack
from b2bua.stats.rollup import StatsRollup
from b2bua.stats.tally import GatewayTally
from b2bua.storage import open_database
from b2bua.storage.backend import Database
from b2bua.storage.cluster import register_node, shared_secret
from b2bua.storage.gateways import mapping_gateways, routing_gateways
from b2bua.storage.numbers import number_groups, transform_table
from b2bua.storage.params_store import load_values
from b2bua.storage.phones import phone_accounts
from b2bua.storage.registrations import RegistrationLog, live_bindings
from b2bua.storage.upstream import vendor_registrations
from b2bua.storage.webhooks import webhook_receivers
from b2bua.storage.writer import DbWriter, replay, spill_base
from b2bua.upstream.manager import UpstreamManager, VendorRegistration
from b2bua.webhooks.service import WebhookService, dead_letter_path

if TYPE_CHECKING:
    from b2bua.cluster.shared_counts import SharedCounts

log = logging.getLogger("b2bua.engine")

ShutdownHook = Callable[[], Awaitable[None]]

# Upper bound on all graceful-stop duties together (e.g. unregistering upstream).
SHUTDOWN_BUDGET = 8.0
# How often worker 0 tells the other signalling workers which upstream registrations hold.
UPSTREAM_PUBLISH_INTERVAL = 0.5
# A dead node's dialog may have had re-INVITEs or refreshes since it was noted: our BYE's
# CSeq is this far past the noted one (RFC 3261 12.2.1.1 asks only for a higher one).
ORPHAN_CSEQ_STEP = 100


def _read_routing(database: Database
                  ) -> tuple[list[RoutingGateway], list[VendorRegistration]]:
    """The routing gateways, and the registrations to vendors that follow them."""
    return routing_gateways(database), vendor_registrations(database)


def cluster_nonce_key(options: EngineOptions) -> bytes:
    with open_database(options.database) as database:
        return shared_secret(database, "nonce", secrets.token_bytes(32))


class Engine:
    def __init__(self, options: EngineOptions, dispatched: DispatchedSip | None = None) -> None:
        """``options`` as given to ``softswitch run`` (this engine takes its share below);
        ``dispatched``: this engine is signalling worker ``options.worker_index`` > 0, fed
        by worker 0's dispatcher (b2bua/signalling.py)."""
        # A cluster node mints and checks nonces with the cluster's key: a nonce another
        # node issued is good here (a phone reusing it on a call that lands here).
        nonce_key = cluster_nonce_key(options) if options.node and \
            options.worker_index == 0 else None
        if options.signalling_workers > 1 and options.worker_index == 0:
            self.workers: SignallingWorkers | None = SignallingWorkers(options, nonce_key)
            dispatched = self.workers.own()
        else:
            self.workers = None
        options = options.for_worker(options.worker_index)
        self.options = options
        # Worker 0 (the only one, by default) also holds what exists once per switch:
        # start-up recovery, the registrar, upstream registrations, the API's socket.
        self.primary = options.worker_index == 0
        self.dispatched = dispatched
        # Capacities and vendors' Retry-After holds, exact across the workers.
        self.counts = CallCounts(dispatched.counts_fd if dispatched else None,
                                 options.signalling_workers, options.worker_index)
        if self.workers is not None:
            self.workers.on_worker_down = self.counts.clear_worker
        self.shared_counts: SharedCounts | None = None
        if options.redis:
            from b2bua.cluster.shared_counts import SharedCounts

            self.shared_counts = SharedCounts(options.redis, options.node,
                                              options.worker_index)
            self.counts.shared = self.shared_counts
        self.database = open_database(options.database)
        self.node_watch: NodeWatch | None = None  # a named node's (docs/cluster.md)
        self._keepalive: asyncio.Future[Any] | None = None  # the NAT keep-alive task
        self.orphans_hung_up = 0  # legs of dead nodes' calls ended with BYE
        self.params = Params()
        # A connection of the watcher's own: it reads in a thread of its own.
        self.watcher = ConfigWatcher(open_database(options.database))
        self.watcher.register("parameters", load_values, self._apply_params)
        self.gateways = GatewayDirectory()
        self.watcher.register("mapping_gateways", mapping_gateways, self._apply_mapping)
        dns_server = options.dns_server
        # Targets of the SIP socket's family: an IPv4 socket cannot reach AAAA addresses.
        self.resolver = VendorResolver(
            (dns_server.host, dns_server.port) if dns_server is not None else None,
            families=("AAAA",) if ":" in options.sip_listen.host else ("A",))
        self.resolver.on_addresses = self.gateways.set_resolved
        self.stack = SipStack(options.sip_listen.host, options.sip_listen.port,
                              options.advertised_host())
        # Our legs' Call-IDs come back to this worker through the dispatcher.
        self.stack.call_ids = CallIds(options.worker_index, options.signalling_workers)
        # Calls' SIP ladders and the HEP export (docs/sip.md), set by the parameters.
        self.ladders = LadderStore(name=options.node or "softswitch")
        self.hep = HepSender()
        # Where writes a locked stop could not apply wait for the next start.
        self.spill_base = spill_base(options.database, options.var_dir)
        self.writer = DbWriter(options.database, self.spill_base)
        self.loop_lag = LoopLag()
        self.collector = FullCollections(live=self._live_units)
        self.media_totals = MediaTotals()
        self.media = self._media_plane(options)
        self.quality = GatewayTally()
        self.cdrs = CdrWriter(self.writer, self.quality)
        # One roll-up of CDRs into stored gateway quality: the primary's, or in a
        # cluster the node's that holds its job (docs/gateway-quality.md).
        self.stats_rollup = StatsRollup(options.database, self.params.integer)
        self.numbers = NumberTables()
        self.watcher.register("number_transforms", transform_table, self._apply_transforms)
        self.watcher.register("number_groups", number_groups, self._apply_groups)
        self.phones = PhoneDirectory()
        self.watcher.register("phones", phone_accounts, self.phones.set)
        self.bindings = BindingStore(RegistrationLog(self.writer))
        # Call and registration events as signed HTTP POSTs (docs/carrier-controls.md);
        # registrations are worker 0's, which takes every REGISTER.
        self.webhooks = WebhookService(
            self.params, dead_letter_path(options.var_dir, options.worker_index), options.node)
        self.webhooks.attach(self.cdrs, self.bindings if self.primary else None)
        self.watcher.register("webhooks", webhook_receivers, self.webhooks.configure)
        self.registrar = Registrar(self.params, self.bindings)
        self.keepalive = KeepAlive(self.params, self.bindings, self.stack.udp.send,
                                   lambda: self.stack.sent_by)
        self.upstream = UpstreamManager(self.stack, self.params, LoopTimers(), self.spawn)
        self.upstream.vendor_addresses = self.gateways.addresses
        self.upstream.locate = self.resolver.resolve_host
        self.stack.resolve_name = self._address_of
        self.watcher.register("gateway_registrations", vendor_registrations,
                              self.upstream.configure)
        self.watcher.register("routing_gateways", _read_routing, self._apply_routing)
        self.policy = Policy(self.params, self.gateways, self.stack.advertised_host,
                             phone_accounts=self._phone_account,
                             registered_user=self._registered_user,
                             any_phone=lambda: self.phones.any_enabled)
        if dispatched is not None:
            workers, index = options.signalling_workers, options.worker_index
            # Several signalling workers: what one sees of a source, all see.
            self.policy.suspensions.board = SharedBoard(map_table(
                dispatched.security_fd, workers, index, SECURITY_SLOTS, evicting=True))
            self.policy.verifier.minter = NonceMinter(dispatched.nonce_key,
                                                      origin=options.node)
            self.policy.verifier.counts = SharedNonceCounts(map_table(
                dispatched.nonces_fd, workers, index, NONCE_SLOTS, evicting=True))
        elif nonce_key is not None:
            self.policy.verifier.minter = NonceMinter(nonce_key, origin=options.node)
        if self.shared_counts is not None:
            from b2bua.cluster.security_board import ClusterBoard

            # Failures counted, suspensions told, across the nodes (docs/cluster.md).
            self.policy.suspensions.board = ClusterBoard(
                self.policy.suspensions.board, self.shared_counts,
                lists=options.worker_index == 0)
        if not self.primary:
            # Worker 0 takes every REGISTER; the others follow its bindings in the database.
            self.watcher.register("registrations",
                                  lambda database: live_bindings(database, time.time()),
                                  self.bindings.replace)
            self.bindings.on_miss = lambda user: self.bindings.restore(
                live_bindings(self.database, time.time(), user))
            # ... and registers to vendors; the others read whether that holds.
            self.upstream.registered_elsewhere = \
                lambda gw_id: self.counts[("upstream", gw_id)] > 0
        elif options.node:
            # A cluster node: a phone may have registered through another node; its
            # binding is in the shared database (docs/cluster.md).
            self.watcher.register("registrations",
                                  lambda database: live_bindings(database, time.time()),
                                  lambda bindings: self.bindings.follow(bindings, time.time()))
            self.bindings.on_miss = lambda user: self.bindings.restore(
                live_bindings(self.database, time.time(), user))
        self.switchboard: Switchboard | None = None
        self.control = ControlServer(options.control_path)
        ControlApi(self).register(self.control)
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._shutdown_hooks: list[ShutdownHook] = []

    def on_shutdown(self, hook: ShutdownHook) -> None:
        self._shutdown_hooks.append(hook)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        return task

    def _start_keepalive(self) -> None:
        if self._keepalive is None or self._keepalive.done():
            self._keepalive = self.spawn(self.keepalive.run())

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None

    def _apply_params(self, values: dict[str, Any]) -> None:
        self.params.replace(values)
        self.stack.trace_enabled = self.params.flag("SS_SIP_TRACE")
        self._apply_capture()

    def _apply_capture(self) -> None:
        """SS_SIP_LADDERS... and SS_HEP_...: Off captures nothing, at no cost per message."""
        params = self.params
        policy = params["SS_SIP_LADDERS"]
        # Each signalling worker its share of the switch's memory for ladders.
        size = (params.integer("SS_SIP_LADDERS_SIZE") << 20) // self.options.signalling_workers
        self.ladders.configure(policy, size, params.integer("SS_SIP_LADDERS_AGE"), time.time())
        self.stack.ladders = None if policy == OFF else self.ladders
        self.hep.configure(params["SS_HEP_DESTINATION"], params.integer("SS_HEP_CAPTURE_ID"),
                           params["SS_HEP_PASSWORD"])
        tap = self.hep.tap if self.hep.on else None
        self.stack.udp.tap = tap
        if isinstance(self.stack.tcp, TcpTransport):  # worker 0's: every TCP connection
            self.stack.tcp.tap = tap

    async def _publish_upstream(self) -> None:
        """Which upstream registrations hold, for the other signalling workers (calls from
        a vendor to our registered contact can land on any of them)."""
        published: set[int] = set()
        while True:
            holding = {gw_id for gw_id in self.upstream.registrations
                       if self.upstream.registered(gw_id)}
            for gw_id in holding | published:
                self.counts.publish(("upstream", gw_id), int(gw_id in holding))
            published = holding
            await asyncio.sleep(UPSTREAM_PUBLISH_INTERVAL)

    def switchboard_now(self) -> Switchboard:
        """The switchboard, once the engine has started."""
        assert self.switchboard is not None
        return self.switchboard

    async def start(self) -> None:
        self.watcher.load_all()
        loop = asyncio.get_running_loop()
        self.switchboard = Switchboard(
            self.stack, self.params, self.gateways, self.cdrs, loop, self.policy,
            self.phones, self.bindings, self.registrar, self.numbers, self.counts)
        self.switchboard.upstream_vendor = self.upstream.vendor_for_call
        self.switchboard.media_factory = self._new_media
        self.switchboard.media_plane = self.media
        self.switchboard.media_totals = self.media_totals
        self.switchboard.overloaded = self._overloaded
        self.switchboard.resolver = self.resolver
        self.switchboard.node = self.options.node
        self.switchboard.ladders = self.ladders
        self.switchboard.number_calls(self.options.worker_index + 1,
                                      self.options.signalling_workers)
        if self.primary:
            # Writes a stop could not apply (the database was locked) first: a finished
            # call's CDR there must exist before recovery looks for interrupted calls.
            replay(self.database, self.spill_base)
            node = self.options.node
            if node:
                # A named node: its life lock first (a peer recovering it holds it
                # meanwhile), then its own calls only; the others' stay theirs.
                life = await asyncio.to_thread(take_life, self.database, node)
                loop = asyncio.get_running_loop()
                self.node_watch = NodeWatch(
                    self.options.database, node, life,
                    hang_up=lambda dialogs: loop.call_soon_threadsafe(
                        self._hang_up_orphans, dialogs),
                    # One node of the cluster keeps phones' NAT open and registers to
                    # vendors: the one that wins each job's lock (docs/cluster.md).
                    jobs={"keepalive": Job(
                              lambda: loop.call_soon_threadsafe(self._start_keepalive),
                              lambda: loop.call_soon_threadsafe(self._stop_keepalive)),
                          "upstream": Job(
                              lambda: loop.call_soon_threadsafe(self.upstream.start),
                              lambda: loop.call_soon_threadsafe(
                                  self.spawn, self.upstream.hand_over())),
                          "stats": Job(
                              lambda: loop.call_soon_threadsafe(self.stats_rollup.start),
                              lambda: loop.call_soon_threadsafe(self.stats_rollup.stop))})
                register_node(self.database, node, str(self.options.sip_listen),
                              self.options.api_address, time.time())
            recover(self.database, node=node)
            restored = self.bindings.restore(live_bindings(self.database, time.time()))
            if restored:
                log.info("restored %d registrations", restored)
            # A gateway changed while the engine was down loses its registration now.
            self._prune_gateway_bindings()
        self.writer.start()
        self.webhooks.start()
        if self.shared_counts is not None:
            await self.shared_counts.start()
            self.on_shutdown(self.shared_counts.close)
        await self.media.start()
        await self.stack.start(self.switchboard, self.dispatched)
        self._capture_addresses()
        if self.primary:
            if self.node_watch is None:  # a cluster node: when it wins the jobs' locks
                self.upstream.start()
            self.on_shutdown(self.upstream.shutdown)
            # Only once the SIP socket exists: keep-alives go out from it.
            self.spawn(self._expire_bindings())
            if self.node_watch is None:
                self._start_keepalive()
                self.stats_rollup.start()
            self.on_shutdown(self.stats_rollup.close)
        self.on_shutdown(self._stop_calls)
        if self.workers is not None:
            self.workers.start(self.stack.port)
            self.on_shutdown(self.workers.stop)
            self.spawn(self._publish_upstream())
            await self.workers.wait_ready()
        await self.control.start()
        self.spawn(self.watcher.run())
        self.spawn(self.loop_lag.run())
        if self.node_watch is not None:
            self.node_watch.start()
        # Through the directory each time: a reload replaces its dictionary.
        self.spawn(self.resolver.run(lambda: self.gateways.routing.values()))
        log.info("engine started sip=%s control=%s", self.options.sip_listen,
                 self.options.control_path)

    def _capture_addresses(self) -> None:
        """The softswitch's own address in ladders and HEP packets, once the SIP socket
        is bound (its port may have been chosen by the system)."""
        stack = self.stack
        self.ladders.local = stack.sent_by
        host = stack.host if stack.host not in ("0.0.0.0", "::") else stack.advertised_host
        self.hep.local = (host, stack.port)
        self._apply_capture()  # the stack's TCP may be another since it started

    def _hang_up_orphans(self, dialogs: list[dict[str, Any]]) -> None:
        """A dead node's answered calls: BYE on both legs from here, so neither the
        customer nor the vendor keeps a call (and bills it) that no node carries. The
        CSeq jumps past any the dead node may have used since it noted the dialog."""
        sent = 0
        for note in dialogs:
            try:
                transport = str(note["transport"])
                dialog = Dialog.from_note(note, self.stack.sent_by,
                                          self.stack.contact(transport))
            except (KeyError, TypeError, ValueError):
                log.warning("a dead node's dialog note not understood: %.200r", note)
                continue
            dialog.local_seq += ORPHAN_CSEQ_STEP
            bye = dialog.create_request("BYE", extra=[
                ("Reason", 'SIP;cause=500;text="node lost"')])
            self.stack.client_transaction(bye, dialog.next_peer(), lambda _r: None,
                                          lambda: None)
            sent += 1
        self.orphans_hung_up += sent
        log.warning("sent BYE on %d legs of a dead node's calls", sent)

    def cluster_snapshot(self) -> dict[str, Any] | None:
        """This node's view of the cluster (docs/cluster.md); None for a switch on its own."""
        if not self.options.node:
            return None
        shared = self.shared_counts
        watch = self.node_watch
        return {
            "node": self.options.node,
            "redis": shared.stats.state if shared is not None else "none",
            "redis_live_nodes": shared.stats.live_nodes if shared is not None else None,
            "counters": asdict(shared.stats) if shared is not None else None,
            "watch": asdict(watch.stats) if watch is not None else None,
            "edge": self.params["SS_EDGE_ADDRESSES"],
            "outbound_proxy": self.params["SS_OUTBOUND_PROXY"],
            "orphans_hung_up": self.orphans_hung_up,
        }

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.start()
        await self.wait_and_stop()

    async def wait_and_stop(self) -> None:
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        log.info("engine stopping")
        for hook in self._shutdown_hooks:
            try:
                await asyncio.wait_for(hook(), SHUTDOWN_BUDGET)
            except TimeoutError:
                log.warning("shutdown duty %s timed out", getattr(hook, "__name__", hook))
            except Exception:
                log.exception("shutdown duty failed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.control.close()
        await self.stack.close()
        self.hep.close()
        await self.media.close()  # after the last CDRs got their final media counters
        await asyncio.to_thread(self.webhooks.close)  # their events: delivered, or dead letters
        self.writer.close()
        if self.workers is not None:
            # After this engine's own writer, so the others' CDR writers (which may be
            # waiting out a locked database, as ours was) finish alongside it.
            self.workers.close()
        self.watcher.close()
        if self.node_watch is not None:
            self.node_watch.close()  # the life lock last: the calls' CDRs are written
        self.database.close()
        log.info("engine stopped")

    def _media_plane(self, options: EngineOptions) -> MediaPlane:
        ports = options.media_ports
        host, advertised = options.sip_listen.host, options.advertised_host()
        if options.media_workers > 0:
            return RelayWorkerPool(host, advertised, ports.low, ports.high,
                                   options.media_workers, max_lag=self._lag_limit,
                                   log_level=logging.getLevelName(log.getEffectiveLevel()),
                                   relay_ciphers=options.relay_ciphers)
        return LocalMediaPlane(host, advertised, ports.low, ports.high,
                               relay_ciphers=options.relay_ciphers)

    def _lag_limit(self) -> float:
        return self.params.integer("SS_OVERLOAD_LOOP_LAG") / 1000

    def _live_units(self) -> int:
        """What the engine's memory grows with: lingering SIP transactions and calls."""
        layer = self.stack.layer
        transactions = 0 if layer is None else len(layer.servers) + len(layer.clients)
        calls = 0 if self.switchboard is None else len(self.switchboard.calls)
        return transactions + calls

    def _overloaded(self) -> bool:
        """Admission by load (SS_OVERLOAD_LOOP_LAG): this loop, or every relay, behind."""
        limit = self._lag_limit()
        return limit > 0 and (self.loop_lag.mean >= limit or self.media.overloaded())

    async def _address_of(self, host: str, port: int) -> tuple[str, int] | None:
        """A next hop given by name (a vendor's Contact or Record-Route): its first
        A/AAAA address, at the URI's port (RFC 3263 4.2)."""
        plan = await self.resolver.resolve_host(host, port, "udp")
        return (plan.targets[0].address, plan.targets[0].port) if plan.targets else None

    def _new_media(self, invite: Request, origin: Origin, caller_nat: bool) -> MediaAnchor:
        return MediaAnchor(
            self.params, self.options.advertised_host(),
            caller_nat=caller_nat, caller_encrypted=origin.rtp_encryption,
            streams=stream_count(invite.body),
        )

    def _apply_routing(self, read: tuple[list[RoutingGateway], list[VendorRegistration]]
                       ) -> None:
        gateways, registrations = read
        self.gateways.set_routing(gateways)
        # A registration follows its gateway's address and enabled state.
        self.upstream.configure(registrations)

    def _apply_transforms(self, table: TransformTable) -> None:
        self.numbers.transforms = table

    def _apply_groups(self, groups: NumberGroups) -> None:
        self.numbers.groups = groups

    def _phone_account(self, username: str) -> Account | None:
        phone = self.phones.get(username)
        return Account(phone.username, phone.password, "phone") if phone else None

    def _registered_user(self, source: Peer, now: float) -> Registered | None:
        binding = self.bindings.find_by_source(source, now)
        return Registered(binding.username, binding.mapping_gateway_id) if binding else None

    def _apply_mapping(self, gateways: list[MappingGateway]) -> None:
        self.gateways.set_mapping(gateways)
        if self.primary:
            self._prune_gateway_bindings()

    def _prune_gateway_bindings(self) -> None:
        """A gateway disabled, deleted, taken out of password mode or given another
        username loses its registration (worker 0 removes it; the others follow)."""
        def keep(binding: Binding) -> bool:
            if binding.mapping_gateway_id is None:
                return True
            return registered_gateway(self.gateways, binding.mapping_gateway_id,
                                      binding.username) is not None

        removed = self.bindings.prune(keep)
        if removed:
            log.info("removed %d registrations of mapping gateways that may no longer "
                     "register", removed)

    async def _expire_bindings(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.bindings.expire(time.time())

    async def _stop_calls(self) -> None:
        """Hang up what is still up so every call gets its BYE and its CDR."""
        if self.switchboard is not None and self.switchboard.calls:
            self.switchboard.hang_up_all("shutdown")
            await asyncio.sleep(0.2)
