"""Run a node process: its chains and the gateway in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from zhongshu.gateway.app import create_app
from zhongshu.gateway.appauth import AppGate
from zhongshu.gateway.connections import ConnectionLimits, connection_cap, guarded_protocol
from zhongshu.gateway.hub_routes import hub_router
from zhongshu.gateway.nonce_gossip import share_nonces
from zhongshu.gateway.ratelog import install_rate_limit, remove_rate_limit
from zhongshu.hub.chains import HUB_CHAIN
from zhongshu.hub.factory import registry_for
from zhongshu.hub.homes import is_hub_home
from zhongshu.hub.host import HubHost
from zhongshu.node.chain import ChainNode
from zhongshu.node.home import load_home
from zhongshu.node.lock import acquire_home_lock
from zhongshu.node.monitor import log_blocks, watch_health
from zhongshu.node.signer import Signer
from zhongshu.node.solo_node import SoloNode

log = logging.getLogger("zhongshu.node")

RATE_LIMITED_LOGGERS = ["zhongshu.gateway", "uvicorn.error", "zhongshu.node", "zhongshu.replica"]
"""Loggers whose lines peers or clients can cause per message: each kind is logged once per
interval, not per event. (A logger's filter does not see its children's lines: the block and
health lines, ``zhongshu.node.blocks`` and ``zhongshu.node.health``, are not limited.)"""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

QUIET_AT_STOP_LOGGERS = ["uvicorn.error", "asyncio"]
"""Loggers that report requests cancelled by a stop (see ``_QuietCancelAtStop``)."""

SHUTDOWN_GRACE_SECONDS = 3
COMMIT_WAITS_END_SECONDS = SHUTDOWN_GRACE_SECONDS - 1
"""After a stop signal, the commit waits still open end with 503 node-stopping this soon, so
they answer before the grace is over (uvicorn then cancels a request, which a client sees as a
bare 500)."""
"""On SIGINT/SIGTERM, requests still open after this many seconds are cancelled and the node stops."""
SLOW_STOP_SECONDS = 15
"""A stop still running this long after the signal prints every thread's stack to stderr (again
each period), so a stop that hangs says where."""


class NodeHalted(RuntimeError):
    """The node stopped because an internal invariant broke; its store is intact."""


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: ``serve_home`` stops it.

    (uvicorn re-raises a caught signal after it stops; for SIGTERM that kills the process
    before the store is closed, with a non-zero status.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _report_tasks() -> None:
    """Log where each task of the loop waits, along its chain of awaits (a stop that hangs on
    the loop rather than in a thread)."""
    for task in asyncio.all_tasks():
        steps: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None and len(steps) < 30:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                steps.append(type(awaited).__name__)
                break
            steps.append(f"{frame.f_code.co_name} ({Path(frame.f_code.co_filename).name}:{frame.f_lineno})")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        log.warning("stop still running: task %s waits in %s", task.get_name(), " -> ".join(steps))
    asyncio.get_running_loop().call_later(SLOW_STOP_SECONDS, _report_tasks)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """A stop signal after the node has closed: the process is exiting already."""


class _StopSignals:
    """SIGINT and SIGTERM ask the server to stop; a second asks it not to wait for open requests.

    The signals are handled in the event loop (``loop.add_signal_handler``), so the stop is logged
    safely. When the node has closed, ``ignore_late`` replaces the handlers with ones that do
    nothing, for the rest of the process's life: a signal that comes while the process exits
    changes nothing.
    """

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None
        self.received: list[int] = []
        self.signalled = asyncio.Event()
        self.forced = asyncio.Event()
        self._slow_report: asyncio.TimerHandle | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)

    def ignore_late(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, _ignore_signal)

    def _on_signal(self, signum: int) -> None:
        self.received.append(signum)
        self.signalled.set()
        name = signal.Signals(signum).name
        if len(self.received) == 1:
            log.info("%s received: stopping", name)
            # A stderr without a file descriptor (embedded use) cannot take the report.
            with contextlib.suppress(ValueError, OSError, AttributeError):
                faulthandler.dump_traceback_later(SLOW_STOP_SECONDS, repeat=True, file=sys.stderr)
            # A second after the threads' stacks, so the tasks' waits end the log.
            self._slow_report = asyncio.get_running_loop().call_later(SLOW_STOP_SECONDS + 1, _report_tasks)
        if self.server is not None:
            if self.server.should_exit and not self.server.force_exit:
                log.info("%s received again: ending open requests now", name)
                self.forced.set()
                self.server.force_exit = True
            self.server.should_exit = True

    def stopped(self) -> None:
        """The stop finished: no slow-stop report."""
        faulthandler.cancel_dump_traceback_later()
        if self._slow_report is not None:
            self._slow_report.cancel()

    def attach(self, server: uvicorn.Server) -> None:
        self.server = server
        if self.received:
            server.should_exit = True

    @property
    def stopping(self) -> bool:
        return bool(self.received) or (self.server is not None and self.server.should_exit)


class _QuietCancelAtStop(logging.Filter):
    """Once the node stops, a request the stop cancels is counted, not logged with a traceback.

    (uvicorn logs each cancelled request as "Exception in ASGI application", asyncio a cancelled
    gather as "exception was never retrieved".) Any other record passes.
    """

    def __init__(self, stop: _StopSignals) -> None:
        super().__init__()
        self.stop = stop
        self.cancelled = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if self.stop.stopping and isinstance(exc, asyncio.CancelledError):
            self.cancelled += 1
            return False
        return True


async def serve_home(
    home: Path, *, port: int | None = None, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve the node in ``home`` until SIGINT/SIGTERM; the store is closed cleanly on the way out.

    The home's lock is taken first (HomeLocked if another process serves it), before the store,
    the WAL or the signer state is opened, and held until the node is closed.
    """
    stop = _StopSignals()
    stop.install()
    try:
        with acquire_home_lock(home):
            await _serve_locked(home, port, on_ready, stop)
    finally:
        stop.ignore_late()


async def _serve_locked(
    home: Path, port: int | None, on_ready: Callable[[str], None] | None, stop: _StopSignals
) -> None:
    config, genesis, key = load_home(home)
    # Fault injection for crash tests: exit abruptly at a named point (see ChainNode.crash_point).
    crash_point = os.environ.get("ZHONGSHU_CRASH_POINT")
    node: ChainNode
    host: HubHost | None = None
    if config.networked and genesis.chain_id == HUB_CHAIN and is_hub_home(home):
        # A hub node: the hub chain and the business chains it validates, on one transport.
        host = HubHost(config, genesis, key, crash_point=crash_point)
        node = host.hub
    elif config.networked:
        from zhongshu.node.consensus_signer import ConsensusSigner
        from zhongshu.node.replica import Replica
        from zhongshu.p2p.netinit import load_transport_config

        node = Replica(
            genesis,
            config.data_dir,
            ConsensusSigner(key, home / "consensus_signer.bin"),
            load_transport_config(home),
            heartbeat_ms=config.heartbeat_ms,
            crash_point=crash_point,
            verify_workers=config.verify_workers or None,
            registry=registry_for(genesis.chain_id),
            state_map=config.state_map,
            state_heights_kept=config.state_heights_kept,
        )
    else:
        node = SoloNode(
            genesis,
            config.data_dir,
            Signer(key, home / "signer_state.json"),
            crash_point=crash_point,
            verify_workers=config.verify_workers or None,
            registry=registry_for(genesis.chain_id),
            state_map=config.state_map,
            state_heights_kept=config.state_heights_kept,
        )
    if not config.state_map and host is None:
        log.warning("state_map is false: no state map and no state proofs (for measuring only)")
    if host is not None:
        # A hub node: applications sign their requests to business chains; nonces are shared.
        gate = AppGate(host.hub) if config.app_auth else None
        if gate is not None:
            share_nonces(gate, host.mux, [v.public_key for v in genesis.validators.validators])
        else:
            log.warning("app_auth is false: business chains take unsigned requests (for measuring only)")
        app = create_app(host.chains, node_key=key, access=gate, routers=[hub_router(host.hub)])
    else:
        app = create_app({genesis.chain_id: node}, node_key=key)
    limits = ConnectionLimits(max_connections=connection_cap(resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
    uv = _Server(
        uvicorn.Config(
            app,
            host=config.api_host,
            port=port or config.api_port,
            http=guarded_protocol(limits),
            log_level="warning",
            # The process's log format (zhongshu.cli.logs) applies to uvicorn's lines too.
            log_config=None,
            access_log=False,
            lifespan="off",
            # A stop waits this long for requests in flight (a commit wait, a slow client), then ends them.
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
    )
    stop.attach(uv)
    producer = asyncio.create_task(host.run() if host is not None else node.run(), name="block-producer")

    def on_producer_done(task: asyncio.Task[None]) -> None:
        # A broken invariant in block production stops the whole node, loudly.
        if not task.cancelled() and task.exception() is not None:
            log.critical("block production stopped", exc_info=task.exception())
            uv.should_exit = True

    producer.add_done_callback(on_producer_done)
    url = f"http://{config.api_host}:{port or config.api_port}"

    async def announce() -> None:
        while not uv.started:
            if producer.done() or uv.should_exit:
                return
            await asyncio.sleep(0.05)
        log.info("node serving %s at height %d (home %s)", url, node.height, home)
        if on_ready:
            on_ready(url)

    async def end_commit_waits() -> None:
        await stop.signalled.wait()
        # A second signal ends them at once (uvicorn no longer waits for requests then).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(COMMIT_WAITS_END_SECONDS):
                await stop.forced.wait()
        served = host.chains if host is not None else {genesis.chain_id: node}
        ended = sum(chain_node.end_commit_waits() for chain_node in list(served.values()))
        if ended:
            log.info("%d commit waits ended by the stop (503 node-stopping)", ended)

    watchers = [
        asyncio.create_task(announce(), name="announce"),
        asyncio.create_task(end_commit_waits(), name="end-commit-waits"),
        asyncio.create_task(log_blocks(node), name="block-log"),
        asyncio.create_task(watch_health(node), name="health"),
        # The signature-check workers start beside the server, not at the first batch.
        asyncio.create_task(node.verifier.warm(), name="verify-workers"),
    ]
    limiter = install_rate_limit(RATE_LIMITED_LOGGERS)
    quiet = _QuietCancelAtStop(stop)
    for name in QUIET_AT_STOP_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    try:
        await uv.serve()
    finally:
        uv.should_exit = True
        # Requests still open (a forced stop skips the grace) end before the store closes.
        requests = list(uv.server_state.tasks)
        for task in [*requests, *watchers]:
            task.cancel()
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.gather(producer, *watchers, *requests, return_exceptions=True)
        if quiet.cancelled:
            log.info("%d open requests ended by the stop", quiet.cancelled)
        failure = producer.exception() if producer.done() and not producer.cancelled() else None
        # Work handed to threads (a block being written) ends before the store closes.
        await asyncio.get_running_loop().shutdown_default_executor()
        if host is not None:
            host.close()
        else:
            node.close()
        remove_rate_limit(RATE_LIMITED_LOGGERS, limiter)
        stop.stopped()
        log.info("node stopped at height %d", node.height)
    if failure is not None:
        raise NodeHalted(f"block production failed at height {node.height + 1}: {failure!r}") from failure
