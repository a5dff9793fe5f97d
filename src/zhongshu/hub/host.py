"""A hub node: the hub chain and every business chain this node validates, in one process.

``HubHost`` composes per-chain objects (``node.replica.Replica``: store, mempool, WAL, consensus)
over what the node shares: one transport to the other hub nodes (``p2p.channels.ChannelMux``,
each chain on a channel of its own), one pool of signature-check workers, one gateway (the
``chains`` dict, which grows as chains start). Nothing is module-level.

How chains come and go (``reconcile``, run after every hub block and at start):

- the hub state lists business chains (``hub.chains``); a chain naming this node among its
  validators is started from ``derive_genesis_from_state`` (the same bytes on every validator),
  in ``chains/<name>/`` of the node's home, and served from then on;
- a stopped chain's replica stops taking part in consensus; its store stays open and readable,
  and its submissions are refused (``chain-stopped``);
- at start every chain the hub state lists is brought back, stopped ones read-only.

A business chain whose replica fails is logged and left read-only; the hub chain failing stops
the node (``run`` raises), as a single chain's failure does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import secrets
from typing import Any

from zhongshu.codec import encode
from zhongshu.crypto import PrivateKey
from zhongshu.hub.chains import HUB_CHAIN, STATUS_STOPPED, ChainRecord, derive_genesis, list_chains
from zhongshu.hub.factory import HUB_REGISTRY, registry_for
from zhongshu.hub.homes import chain_dir, is_hub_home, load_hub_init, load_node_keys
from zhongshu.hub.roles import NodeKeys, get_operator, list_nodes
from zhongshu.ledger.genesis import save_genesis
from zhongshu.ledger.signing import sign_body
from zhongshu.ledger.types import Genesis, Transaction, TxBody
from zhongshu.node import errors
from zhongshu.node.chain import ChainNode
from zhongshu.node.consensus_signer import ConsensusSigner
from zhongshu.node.home import NodeConfig
from zhongshu.node.replica import Replica
from zhongshu.node.statemap_worker import StateMapWorkers
from zhongshu.node.verifier import SenderVerifier
from zhongshu.p2p.channels import Channel, open_mux
from zhongshu.p2p.config import FRAME_MARGIN
from zhongshu.p2p.netinit import load_transport_config

log = logging.getLogger("zhongshu.hub")

WATCH_SECONDS = 0.02
"""How often the host looks for a new hub block (a height comparison; reconciling follows one)."""
INIT_RETRY_SECONDS = 1.0
LARGEST_BLOCK_BYTES = 64 * 1024 * 1024
"""The largest block any business chain may have (hub.chains.PARAM_BOUNDS): the shared frame limit."""
INIT_VALIDITY = 1_000
SIGNER_FILE = "consensus_signer.bin"


class HubHost:
    """The chains of one hub node and what they share."""

    def __init__(
        self,
        config: NodeConfig,
        genesis: Genesis,
        key: PrivateKey,
        *,
        crash_point: str | None = None,
    ) -> None:
        self.home = config.home
        self.config = config
        self.keys = load_node_keys(config.home, key)
        """This node's validator key of each suite."""
        self.hub_suite = genesis.suite
        self.own_key = key.public_bytes()
        self.verifier = SenderVerifier(genesis.suite, config.verify_workers or None)
        self.map_workers = StateMapWorkers(os.cpu_count() or 1)
        """The state map workers of every chain here (each started with a first large block)."""
        transport = load_transport_config(config.home)
        frame = LARGEST_BLOCK_BYTES + FRAME_MARGIN
        self.mux = open_mux(
            dataclasses.replace(transport, max_frame=frame, queue_bytes=max(transport.queue_bytes, 3 * frame))
        )
        self.crash_point = crash_point
        members = {v.public_key: v.public_key for v in genesis.validators.validators}
        self.hub = Replica(
            genesis,
            config.data_dir,
            ConsensusSigner(key, config.home / SIGNER_FILE),
            self.mux.open(HUB_CHAIN, members),
            heartbeat_ms=config.heartbeat_ms,
            crash_point=crash_point,
            registry=HUB_REGISTRY,
            verifier=self.verifier,
            state_heights_kept=config.state_heights_kept,
            map_workers=self.map_workers,
        )
        self.chains: dict[str, ChainNode] = {HUB_CHAIN: self.hub}
        """Every chain this node serves, by chain id (the gateway serves this very dict)."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._seen_height = -1
        self.halted: dict[str, str] = {}
        """Business chains whose replica failed, with the reason (they stay readable)."""
        self.reconcile()

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run every chain and follow the hub until cancelled; raise if the hub chain fails."""
        await self.mux.start()
        self._start(HUB_CHAIN)
        for name, node in list(self.chains.items()):
            if name != HUB_CHAIN and not node.stopped:
                self._start(name)
        init = asyncio.create_task(self._submit_init(), name="hub-init")
        try:
            while True:
                hub_task = self._tasks[HUB_CHAIN]
                if hub_task.done():
                    hub_task.result()
                    raise RuntimeError("the hub chain stopped")
                if self.hub.height != self._seen_height:
                    self.reconcile()
                    for name, node in list(self.chains.items()):
                        if name not in self._tasks and not node.stopped and name not in self.halted:
                            self._start(name)
                await asyncio.sleep(WATCH_SECONDS)
        finally:
            init.cancel()
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(init, *tasks, return_exceptions=True)
            await self.mux.close()

    def close(self) -> None:
        """Close every chain's store and the shared workers (after ``run`` has ended)."""
        for node in self.chains.values():
            with contextlib.suppress(Exception):
                node.close()
        self.verifier.close()
        self.map_workers.close()

    def _start(self, name: str) -> None:
        node = self.chains[name]
        task = asyncio.create_task(node.run(), name=f"chain-{name}")
        self._tasks[name] = task
        # Messages its peers sent before this node opened the chain's channel are handed over.
        if isinstance(node, Replica) and isinstance(node.transport, Channel):
            self.mux.flush_early(node.transport)
        task.add_done_callback(functools.partial(self._on_chain_done, name))

    def _on_chain_done(self, name: str, task: asyncio.Task[None]) -> None:
        """A business chain's replica ended: failed (halted, read-only) or cancelled (stopped)."""
        if task.cancelled() or name == HUB_CHAIN:
            return
        failure = task.exception()
        if failure is not None:
            self.halted[name] = repr(failure)
            self.chains[name].stopped = True
            log.critical("chain %s halted (it stays readable): %r", name, failure, exc_info=failure)

    # -- following the hub -------------------------------------------------------------

    def reconcile(self) -> None:
        """Bring the served chains in line with the hub's committed records (module docstring)."""
        self._seen_height = self.hub.height
        with self.hub.store.state_reader() as read:
            records = list_chains(read)
            nodes = list_nodes(read)
        for record in records:
            node = self.chains.get(record.name)
            if node is None:
                genesis = derive_genesis(record, nodes)
                if genesis.validators.power_of(self.keys[record.suite].public_bytes()) == 0:
                    continue
                self.chains[record.name] = node = self._open_chain(record, genesis, nodes)
                log.info(
                    "chain %s (%s, %d validators) served", record.name, record.suite, len(record.validators)
                )
            if record.status == STATUS_STOPPED and not node.stopped:
                self._stop(record.name)

    def _open_chain(self, record: ChainRecord, genesis: Genesis, nodes: list[NodeKeys]) -> ChainNode:
        directory = chain_dir(self.home, record.name)
        directory.mkdir(parents=True, exist_ok=True)
        genesis_path = directory / "genesis.json"
        if not genesis_path.exists():
            save_genesis(genesis_path, genesis)
        by_name = {n.name: n for n in nodes}
        members = {
            by_name[name].key_for(self.hub_suite): by_name[name].key_for(record.suite)
            for name in record.validators
        }
        key = self.keys[record.suite]
        node = Replica(
            genesis,
            directory / "data",
            ConsensusSigner(key, directory / SIGNER_FILE),
            self.mux.open(record.name, members),
            heartbeat_ms=self.config.heartbeat_ms,
            first_block_at_once=True,
            crash_point=self.crash_point,
            registry=registry_for(record.name),
            verifier=self.verifier,
            state_heights_kept=self.config.state_heights_kept,
            map_workers=self.map_workers,
        )
        node.stopped = record.status == STATUS_STOPPED
        return node

    def _stop(self, name: str) -> None:
        node = self.chains[name]
        node.stopped = True
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        log.info("chain %s stopped by the hub: read-only from now on", name)

    # -- hub.init ----------------------------------------------------------------------

    async def _submit_init(self) -> None:
        """As the hub's first validator, submit ``hub.init`` from hub.json until height 1 holds it."""
        first = self.hub.genesis.validators.validators[0].public_key
        if first != self.own_key or not is_hub_home(self.home):
            return
        init = load_hub_init(self.home)
        while self.hub.height == 0:
            with self.hub.store.state_reader() as read:
                if get_operator(read) is not None:
                    return
            tx = _sign(self.keys[self.hub_suite], self.hub, "hub", "init", encode(init))
            with contextlib.suppress(errors.Refused):
                await self.hub.submit([tx])
                log.info(
                    "hub.init submitted: operator %s, %d nodes", init.operator.hex()[:16], len(init.nodes)
                )
            await asyncio.sleep(INIT_RETRY_SECONDS)

    def status(self) -> dict[str, Any]:
        return {
            "chains": sorted(self.chains),
            "halted": dict(self.halted),
            "channels_unknown_dropped": self.mux.unknown_dropped,
        }


def _sign(key: PrivateKey, node: ChainNode, contract: str, method: str, args: bytes) -> Transaction:
    """A transaction of ``key`` on ``node``'s chain (sign-bytes: docs/access-spec.md)."""
    body = TxBody(
        node.chain_id,
        node.genesis_hash,
        key.public_bytes(),
        contract,
        method,
        args,
        node.height + INIT_VALIDITY,
        secrets.randbits(63),
    )
    return sign_body(key, body)
