"""Run a node process: its chains and the gateway in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
from collections.abc import Callable
from pathlib import Path

import uvicorn

from zhongshu.gateway.app import create_app
from zhongshu.gateway.connections import ConnectionLimits, connection_cap, guarded_protocol
from zhongshu.gateway.ratelog import install_rate_limit, remove_rate_limit
from zhongshu.node.chain import ChainNode
from zhongshu.node.home import load_home
from zhongshu.node.signer import Signer
from zhongshu.node.solo_node import SoloNode

log = logging.getLogger("zhongshu.node")

RATE_LIMITED_LOGGERS = ["zhongshu.gateway", "uvicorn.error"]
"""The HTTP layer's loggers: what hostile clients cause is logged once per interval, not per event."""


SHUTDOWN_GRACE_SECONDS = 3
"""On SIGINT/SIGTERM, requests still open after this many seconds are cancelled and the node stops."""


class NodeHalted(RuntimeError):
    """The node stopped because an internal invariant broke; its store is intact."""


async def serve_home(
    home: Path, *, port: int | None = None, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve the node in ``home`` until SIGINT/SIGTERM; the store is closed cleanly on the way out."""
    config, genesis, key = load_home(home)
    # Fault injection for crash tests: exit abruptly at a named point (see ChainNode.crash_point).
    crash_point = os.environ.get("ZHONGSHU_CRASH_POINT")
    node: ChainNode
    if config.networked:
        from zhongshu.node.consensus_signer import ConsensusSigner
        from zhongshu.node.replica import Replica
        from zhongshu.p2p.netinit import load_transport_config

        node = Replica(
            genesis,
            config.data_dir,
            ConsensusSigner(key, home / "consensus_signer.bin"),
            load_transport_config(home),
            crash_point=crash_point,
        )
    else:
        node = SoloNode(
            genesis, config.data_dir, Signer(key, home / "signer_state.json"), crash_point=crash_point
        )
    app = create_app({genesis.chain_id: node})
    limits = ConnectionLimits(max_connections=connection_cap(resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
    uv = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.api_host,
            port=port or config.api_port,
            http=guarded_protocol(limits),
            log_level="warning",
            access_log=False,
            lifespan="off",
            # A stop waits this long for requests in flight (a commit wait, a slow client), then ends them.
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
    )
    producer = asyncio.create_task(node.run(), name="block-producer")

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
        if on_ready:
            on_ready(url)

    announcer = asyncio.create_task(announce())
    limiter = install_rate_limit(RATE_LIMITED_LOGGERS)
    try:
        await uv.serve()
    finally:
        remove_rate_limit(RATE_LIMITED_LOGGERS, limiter)
        announcer.cancel()
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await producer
        failure = producer.exception() if producer.done() and not producer.cancelled() else None
        node.close()
        log.info("node stopped at height %d", node.height)
    if failure is not None:
        raise NodeHalted(f"block production failed at height {node.height + 1}: {failure!r}") from failure
