"""A signalling worker's process (1..N-1), started by worker 0's supervisor
(:mod:`b2bua.signalling`) as ``python -m b2bua.signalling_worker``: a whole engine fed by
the dispatcher's channel, its options read from the descriptor it inherits."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from dataclasses import replace

import uvloop

from b2bua import logs
from b2bua.aio.dispatched import DispatchedSip
from b2bua.engine import Engine
from b2bua.lifeline import die_with_parent
from b2bua.options import EngineOptions
from b2bua.signalling import read_options_fd


async def _serve(options: EngineOptions, dispatched: DispatchedSip) -> None:
    engine = Engine(options, dispatched)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, engine.request_stop)
    await engine.start()
    engine.collector.install()
    engine.spawn(engine.collector.run())
    await engine.wait_and_stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="b2bua.signalling_worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--sip-fd", type=int, required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--counts-fd", type=int, required=True)
    parser.add_argument("--security-fd", type=int, required=True)
    parser.add_argument("--nonces-fd", type=int, required=True)
    parser.add_argument("--key-fd", type=int, required=True)
    parser.add_argument("--options-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logs.setup(args.log_level, worker=args.index)
    die_with_parent(args.parent, signal.SIGKILL)
    # Ctrl-C reaches the whole process group; worker 0 decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    options = replace(read_options_fd(args.options_fd), worker_index=args.index)
    dispatched = DispatchedSip(socket.socket(fileno=args.sip_fd),
                               socket.socket(fileno=args.channel_fd), tcp_for=None,
                               counts_fd=args.counts_fd, security_fd=args.security_fd,
                               nonces_fd=args.nonces_fd,
                               nonce_key=os.pread(args.key_fd, 32, 0))
    os.close(args.key_fd)
    uvloop.run(_serve(options, dispatched))
    return 0


if __name__ == "__main__":
    sys.exit(main())
