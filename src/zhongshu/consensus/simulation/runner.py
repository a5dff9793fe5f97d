"""The simulation loop: virtual time, a faulty network, and the checks made after every step.

Checks (any failure raises ``SimulationFailure`` naming the seed and the replay command):

- agreement: no two honest nodes decide different blocks at one height (nor one node two
  blocks at one height across a crash);
- validity: honest nodes decide only blocks that validate, at the height they were built for,
  with a certificate of valid precommit signatures holding more than 2/3 of the power;
- no honest double-sign: no honest key ever signs two different messages at one
  (height, round, step), the guard is never asked to, and no evidence accuses an honest node;
- block time: every block an honest node decides is dated after the block before it and at
  most ``MAX_FUTURE_MS`` ahead of the deciding node's own clock at that moment (hence of the
  fastest honest clock: see ``check_block_time``);
- no framing: an honest node never reports a block that validates as invalid (whatever copy
  of it a peer sent);
- progress: after GST every honest node decides all the scenario's heights within a bound on
  virtual time (see ``get_progress_bound_ms``), whatever the Byzantine node does.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from zhongshu.codec import DecodeError, decode, encode
from zhongshu.consensus.messages import (
    BlockData,
    ConsensusMessage,
    Decide,
    DuplicateVoteEvidence,
    EngineInput,
    Equivocation,
    SignedProposal,
    SignedVote,
    Step,
    proposal_sign_bytes,
    vote_sign_bytes,
)
from zhongshu.consensus.simulation.blocks import (
    FETCH_TIMEOUT_MS,
    GENESIS_TIME_MS,
    BlockCopy,
    SimBlock,
    compute_tx_root,
)
from zhongshu.consensus.simulation.byzantine import ByzantineNode
from zhongshu.consensus.simulation.honest import HonestNode
from zhongshu.consensus.simulation.scenario import Crash, Partition, Rng, Scenario
from zhongshu.consensus.tendermint import EngineState, TendermintEngine, TimeoutConfig
from zhongshu.consensus.timing import MAX_FUTURE_MS, is_too_far_ahead
from zhongshu.consensus.votes import is_two_thirds
from zhongshu.ledger.types import PRECOMMIT, PREVOTE, Validator, ValidatorSet, Vote

EngineFactory = Callable[[str, bytes, TimeoutConfig], TendermintEngine]
NodeFactory = Callable[["Simulation", int, bytes], HonestNode]

MAX_EVENTS = 300_000
"""A run that needs more events than this is reported as a progress failure."""

DELIVER, INPUT, CALL, GOSSIP, CRASH, RESTART, GST = range(7)

Node = HonestNode | ByzantineNode


class SimulationFailure(AssertionError):
    """A property was violated; the message names the seed and how to replay it."""

    def __init__(
        self, seed: int, kind: str, detail: str, replay: str, scenario: str, trace: list[str]
    ) -> None:
        self.seed = seed
        self.kind = kind
        self.detail = detail
        lines = [
            f"simulation seed {seed}: {kind} violated: {detail}",
            f"scenario: {scenario}",
            f"replay: {replay.format(seed=seed)}",
            "last events:",
            *trace,
        ]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class SimResult:
    seed: int
    virtual_ms: int
    events: int
    max_round: int
    evidence: int
    untimely: int = 0
    """Answers an honest node held back for a block dated too far ahead (waited for or dropped)."""
    bad_copies: int = 0
    """Fetched copies an honest node found not to match the header, and fetched again."""


def sign(key: bytes, data: bytes) -> bytes:
    """The simulation's stand-in signature: binding to key and bytes, checked on delivery."""
    return hashlib.sha256(key + data).digest()


class Simulation:
    """One seeded run of a scenario."""

    chain_id = "sim"

    def __init__(
        self,
        scenario: Scenario,
        rng: Rng,
        engine_factory: EngineFactory = TendermintEngine,
        replay: str = "SIM_SEED={seed} .venv/bin/pytest tests/test_simulation.py -q",
        node_factory: NodeFactory = HonestNode,
    ) -> None:
        self.scenario = scenario
        self.rng = rng
        self.engine_factory = engine_factory
        self.replay = replay
        keys = [hashlib.sha256(b"validator-%d" % i).digest() for i in range(len(scenario.powers))]
        self.validators = ValidatorSet(
            [Validator(k, p, f"v{i}") for i, (k, p) in enumerate(zip(keys, scenario.powers, strict=True))]
        )
        self.power = {k: p for k, p in zip(keys, scenario.powers, strict=True)}
        self.now = 0
        self.events = 0
        self.evidence = 0
        self.untimely = 0
        self.bad_copies = 0
        self.deadline: int | None = None
        self._queue: list[tuple[int, int, int, Any, Any, Any]] = []
        self._seq = 0
        self.blocks: dict[bytes, SimBlock] = {}
        """Every block ever built, by hash."""
        self.decided: dict[int, bytes] = {}
        self.signed: dict[tuple[bytes, int, int, int], bytes] = {}
        self.trace: deque[tuple[int, str, object]] = deque(maxlen=40)
        bad = dict(scenario.byzantine)
        self.nodes: list[Node] = [
            ByzantineNode(self, i, k, bad[i]) if i in bad else node_factory(self, i, k)
            for i, k in enumerate(keys)
        ]
        self.honest_keys = {n.key for n in self.nodes if n.honest}
        self.partitions = list(scenario.partitions)
        self._unfinished = {n.index for n in self.nodes if n.honest}

    # --- services for the nodes ---------------------------------------------------------------

    def make_engine(self, key: bytes) -> TendermintEngine:
        return self.engine_factory(self.chain_id, key, self.scenario.timeouts)

    def make_byzantine_engine(self, key: bytes) -> TendermintEngine:
        return TendermintEngine(self.chain_id, key, self.scenario.timeouts)

    def sign(self, key: bytes, data: bytes) -> bytes:
        return sign(key, data)

    def new_block(self, height: int, round: int, node: int, valid: bool, time: int) -> bytes:
        block_hash = hashlib.sha256(b"block|%d|%d|%d|%d" % (height, round, node, len(self.blocks))).digest()
        self.blocks[block_hash] = SimBlock(height, valid, time, compute_tx_root(block_hash))
        return block_hash

    def get_block_time(self, block_hash: bytes | None) -> int:
        """The time of a block (``None``: of height 0)."""
        return GENESIS_TIME_MS if block_hash is None else self.blocks[block_hash].time

    def get_clock(self, node: int) -> int:
        """What ``node``'s clock reads now: virtual time plus its skew."""
        return self.now + self.scenario.get_skew(node)

    def ask_for_block(self, asker: int, peer: int, block_hash: bytes) -> BlockCopy | None:
        """The copy ``peer`` sends when ``asker`` fetches a block; ``None`` if no answer arrives
        (the peer is down or cut off, or the answer is lost before GST)."""
        sc = self.scenario
        peer_node = self.nodes[peer]
        if not peer_node.alive:
            return None
        if self.now < sc.gst_ms:
            if self._is_cut(peer, asker):
                return None
            if self.now < sc.lossy_until_ms and self.rng.random() < sc.drop_rate:
                return None
        return peer_node.answer_fetch(block_hash, self.blocks[block_hash])

    def schedule_input(self, node: Node, event: EngineInput, delay_ms: int) -> None:
        self._push(self.now + delay_ms, INPUT, node.index, node.epoch, event)

    def schedule_call(self, node: Node, delay_ms: int, call: Callable[[], None]) -> None:
        """Run ``call`` after the delay, unless ``node`` crashed in between."""
        self._push(self.now + delay_ms, CALL, node.index, node.epoch, call)

    def broadcast(self, src: int, message: ConsensusMessage) -> None:
        data = encode(message)
        for dst in range(len(self.nodes)):
            if dst != src:
                self.send(src, dst, data)

    def send(self, src: int, dst: int, message: ConsensusMessage | bytes) -> None:
        """Put a message on the wire, through the scenario's faults."""
        sc = self.scenario
        data = message if isinstance(message, bytes) else encode(message)
        max_delay = sc.post_gst_delay_ms
        if self.now < sc.gst_ms:
            max_delay = sc.max_delay_ms
            if self.now < sc.lossy_until_ms and self.rng.random() < sc.drop_rate:
                return
            if self._is_cut(src, dst):
                return
        self._push(self.now + self.rng.randrange(1, max_delay + 1), DELIVER, dst, data, src)
        if sc.duplicate_rate and self.rng.random() < sc.duplicate_rate:
            self._push(self.now + self.rng.randrange(1, max_delay + 1), DELIVER, dst, data, src)

    def _is_cut(self, src: int, dst: int) -> bool:
        return any(p.start_ms <= self.now < p.end_ms and p.splits(src, dst) for p in self.partitions)

    def has_honest_at(self, height: int) -> bool:
        """Whether some honest node has not yet decided ``height`` (the adversary may look)."""
        return any(
            n.honest and max(n.store, default=0) < height for n in self.nodes if isinstance(n, HonestNode)
        )

    def crash_now(self, node: HonestNode) -> None:
        self.trace.append((self.now, "crash", node.index))
        node.crash()

    # --- checks -------------------------------------------------------------------------------

    def describe(self, obj: object) -> str:
        """A short, readable form of a message or value for failure reports."""
        names = {n.key: f"v{n.index}" for n in self.nodes}

        def short(value: bytes | None) -> str:
            return "nil" if not value else value.hex()[:8]

        if isinstance(obj, SignedVote):
            v = obj.vote
            kind = "prevote" if v.kind == PREVOTE else "precommit" if v.kind == PRECOMMIT else f"kind{v.kind}"
            who = names.get(obj.validator, obj.validator.hex()[:8])
            return f"{kind} h{v.height} r{v.round} {short(v.block_hash)} by {who}"
        if isinstance(obj, SignedProposal):
            p = obj.proposal
            who = names.get(p.proposer, p.proposer.hex()[:8])
            return f"proposal h{p.height} r{p.round} {short(p.block_hash)} pol {p.pol_round} by {who}"
        if isinstance(obj, EngineState):
            return (
                f"h{obj.height} r{obj.round} {obj.step.name.lower()} locked={short(obj.locked_value)}@"
                f"{obj.locked_round} valid={short(obj.valid_value)}@{obj.valid_round}"
            )
        return str(obj)

    def fail(self, kind: str, detail: str) -> NoReturn:
        trace = [f"  t={t}ms {what}: {self.describe(obj)}" for t, what, obj in self.trace]
        state = [
            f"  node {n.index}{'' if n.honest else ' (byzantine)'}: alive={n.alive} "
            f"{self.describe(n.engine.get_state())} decided={sorted(getattr(n, 'store', {}))}"
            for n in self.nodes
        ]
        raise SimulationFailure(
            self.scenario.seed,
            kind,
            detail,
            self.replay,
            self.scenario.describe(),
            trace + ["nodes:", *state],
        )

    def check_decision(self, node: HonestNode, decide: Decide) -> None:
        """Validity, certificate, agreement: on every honest decision."""
        h, v = decide.height, decide.block_hash
        self.trace.append((self.now, f"decide node {node.index}", (h, decide.round, v.hex()[:8])))
        block = self.blocks.get(v)
        if block is None or (block.height, block.valid) != (h, True):
            self.fail("validity", f"node {node.index} decided {v.hex()[:8]} at {h}, built as {block}")
        self.check_block_time(node, h, block)
        cert = decide.certificate
        vote = Vote(PRECOMMIT, self.chain_id, h, decide.round, v)
        voters = {s.validator for s in cert.signatures}
        ok_sigs = all(s.signature == sign(s.validator, vote_sign_bytes(vote)) for s in cert.signatures)
        power = sum(self.power.get(k, 0) for k in voters)
        if (cert.height, cert.round, cert.block_hash) != (h, decide.round, v) or len(voters) != len(
            cert.signatures
        ):
            self.fail("validity", f"malformed certificate {cert}")
        if not ok_sigs or not is_two_thirds(power, sum(self.power.values())):
            self.fail("validity", f"certificate of node {node.index} at {h} lacks 2/3 valid precommits")
        if h not in self.decided:
            self._isolate(node.index)
        earlier = self.decided.setdefault(h, v)
        if earlier != v:
            self.fail(
                "agreement",
                f"height {h}: node {node.index} decided {v.hex()[:8]}, another {earlier.hex()[:8]}",
            )
        if node.store.get(h, v) != v:
            self.fail("agreement", f"node {node.index} decided {v.hex()[:8]} at {h} after deciding otherwise")

    def check_block_time(self, node: HonestNode, height: int, block: SimBlock) -> None:
        """A decided block is dated after its parent and at most ``MAX_FUTURE_MS`` ahead of the
        deciding node's clock now.

        Why this holds for the deciding node itself, not only for some honest node: line 49
        decides v only with valid(v), so the node either built the block (dated by its clock,
        or one ms after a parent it decided earlier under this same bound) or answered valid(v)
        itself, which it does only once the date is within ``MAX_FUTURE_MS`` of its clock, and
        its clock only moves on. It follows that every decided block is at most
        ``MAX_FUTURE_MS`` ahead of the fastest honest clock, i.e. of virtual time plus the
        largest honest skew: the bound ``consensus.timing`` states for the chain. A node that
        took a block from block sync without looking at its date (not modelled here) would
        have only that weaker bound: ``MAX_FUTURE_MS`` plus the fastest honest clock's lead
        over its own (at most twice ``MAX_CLOCK_SKEW_MS``).
        """
        clock = self.get_clock(node.index)
        if block.time > clock + MAX_FUTURE_MS:
            self.fail(
                "block time",
                f"node {node.index} decided a block at {height} dated {block.time} ms, "
                f"{block.time - clock} ms ahead of its clock (MAX_FUTURE_MS is {MAX_FUTURE_MS})",
            )
        parent_time = self.get_block_time(self.decided.get(height - 1))
        if block.time <= parent_time:
            self.fail(
                "block time",
                f"node {node.index} decided a block at {height} dated {block.time} ms, "
                f"not after its parent's {parent_time} ms",
            )

    def check_block_data(self, node: HonestNode, data: BlockData) -> None:
        """No framing: an honest node never answers valid(v) false for a block that validates
        (and is not dated too far ahead of its clock)."""
        block = self.blocks[data.block_hash]
        # A block dated too far ahead of the node's clock is invalid there (consensus/timing.py).
        validates = block.valid and not is_too_far_ahead(block.time, self.get_clock(node.index))
        if validates and not data.valid:
            self.fail(
                "framing",
                f"node {node.index} reported block {data.block_hash.hex()[:8]} at {data.height} "
                f"invalid, but it validates",
            )

    def note_untimely(self, node: HonestNode, block_hash: bytes, delay_ms: int) -> None:
        self.untimely += 1
        what = f"node {node.index} holds back block {block_hash.hex()[:8]}, ms until timely"
        self.trace.append((self.now, what, delay_ms))

    def note_bad_copy(self, node: HonestNode, block_hash: bytes, peer: int) -> None:
        self.bad_copies += 1
        self.trace.append((self.now, f"node {node.index} drops a copy of {block_hash.hex()[:8]} from", peer))

    def _isolate(self, index: int) -> None:
        """The adversary cuts the first decider of a height off from everyone (before GST)."""
        sc = self.scenario
        end = min(self.now + sc.isolate_decider_ms, sc.gst_ms)
        if end > self.now:
            rest = frozenset(range(len(self.nodes))) - {index}
            self.partitions.append(Partition(self.now, end, (frozenset({index}), rest)))
            self.trace.append((self.now, "isolate", index))

    def check_signature(self, node: HonestNode, height: int, round: int, step: int, data: bytes) -> None:
        """No honest key signs two different messages at one (height, round, step)."""
        earlier = self.signed.setdefault((node.key, height, round, step), data)
        if earlier != data:
            self.fail("double-sign", f"node {node.index} signed two messages at {(height, round, step)}")

    def check_evidence(self, node: HonestNode, found: Equivocation) -> None:
        """Evidence must only ever accuse Byzantine nodes."""
        e = found.evidence
        culprit = e.first.validator if isinstance(e, DuplicateVoteEvidence) else e.first.proposal.proposer
        self.evidence += 1
        if culprit in self.honest_keys:
            self.fail(
                "double-sign", f"node {node.index} holds evidence against honest {culprit.hex()[:8]}: {e}"
            )

    def note_stored(self, node: HonestNode, height: int) -> None:
        if height >= self.scenario.heights:
            self._unfinished.discard(node.index)

    def get_progress_bound_ms(self) -> int:
        """Virtual time after GST within which all heights must be decided.

        Per height: every round up to the highest honest round at GST plus n+1 more (within n
        rounds after GST an honest proposer comes, and the rounds of all honest nodes are
        within one of each other), each with all three timeouts, four message delays, two
        gossip intervals and a block fetch that first asks the Byzantine node (one fetch
        timeout and one fetch delay); plus, per height, the spread of honest clocks (an honest
        proposer dates its block one ms after a parent that may be ``MAX_FUTURE_MS`` ahead of
        the fastest honest clock, and the slowest honest clock takes that long to make it
        timely); times the heights not yet decided everywhere, plus one.
        """
        sc = self.scenario
        rounds = max(n.engine.round for n in self.nodes if n.honest) + len(self.nodes) + 2
        per_round = [
            sum(sc.timeouts.get_timeout(step, r) for step in Step)
            + 4 * sc.max_delay_ms
            + 2 * sc.post_gst_gossip_ms
            + FETCH_TIMEOUT_MS
            + sc.build_delay_ms
            for r in range(rounds)
        ]
        behind = sc.heights - min(max(n.store, default=0) for n in self.nodes if isinstance(n, HonestNode))
        return (behind + 1) * (sum(per_round) + sc.honest_skew_spread_ms + 1)

    # --- the loop -----------------------------------------------------------------------------

    def _push(self, at: int, kind: int, a: Any, b: Any, c: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, a, b, c))

    def run(self) -> SimResult:
        sc = self.scenario
        for crash in sc.crashes:
            self._push(crash.at_ms, CRASH, crash, None, None)
            self._push(crash.at_ms + crash.down_ms, RESTART, crash.node, None, None)
        self._push(sc.gst_ms, GST, None, None, None)
        self._push(sc.gossip_ms, GOSSIP, None, None, None)
        for node in self.nodes:
            node.boot()
        max_round = 0
        while self._unfinished:
            at, _, kind, a, b, c = heapq.heappop(self._queue)
            if self.deadline is not None and at > self.deadline:
                self.fail("progress", f"not all heights decided by {self.deadline} ms (GST {sc.gst_ms} ms)")
            self.now = at
            self.events += 1
            if self.events > MAX_EVENTS:
                self.fail("progress", f"more than {MAX_EVENTS} events")
            if kind == DELIVER:
                self._deliver(a, b, c)
            elif kind == INPUT:
                node = self.nodes[a]
                if node.alive and node.epoch == b:
                    node.feed(c)
            elif kind == CALL:
                node = self.nodes[a]
                if node.alive and node.epoch == b:
                    c()
            elif kind == GOSSIP:
                self._gossip()
                interval = sc.gossip_ms if at < sc.gst_ms else sc.post_gst_gossip_ms
                self._push(at + interval, GOSSIP, None, None, None)
            elif kind == CRASH:
                self._crash(a)
            elif kind == RESTART:
                self._restart(a)
            elif kind == GST:
                self.deadline = at + self.get_progress_bound_ms()
                self.trace.append((at, "GST, progress deadline", self.deadline))
            max_round = max(max_round, max(n.engine.round for n in self.nodes))
        return SimResult(
            sc.seed, self.now, self.events, max_round, self.evidence, self.untimely, self.bad_copies
        )

    def _deliver(self, dst: int, data: bytes, src: int) -> None:
        node = self.nodes[dst]
        if not node.alive or (self.now < self.scenario.gst_ms and self._is_cut(src, dst)):
            return
        try:
            message: ConsensusMessage = decode(data, ConsensusMessage)  # type: ignore[arg-type]
        except DecodeError:
            return
        # The network layer checks signatures before consensus sees a message.
        if isinstance(message, SignedProposal):
            signer, sign_bytes = message.proposal.proposer, proposal_sign_bytes(message.proposal)
        else:
            signer, sign_bytes = message.validator, vote_sign_bytes(message.vote)
        if message.signature != sign(signer, sign_bytes):
            return
        self.trace.append((self.now, f"deliver to {dst}", message))
        node.receive(message)

    def _gossip(self) -> None:
        """Each live honest node sends each live peer what it lacks of what it relays at the
        peer's height (``TendermintEngine.get_gossip``, the choice a real replica makes)."""
        for node in self.nodes:
            if not (node.alive and isinstance(node, HonestNode)):
                continue
            mine = node.engine.get_gossip()
            for peer in self.nodes:
                if peer is node or not peer.alive:
                    continue
                height = peer.engine.height
                if height == node.engine.height:
                    offer = mine
                elif height in node.catchup:
                    offer = node.catchup[height]
                else:
                    continue
                for message in offer:
                    if not peer.engine.knows(message):
                        self.send(node.index, peer.index, message)

    def _crash(self, crash: Crash) -> None:
        node = self.nodes[crash.node]
        assert isinstance(node, HonestNode)
        if crash.cut is None:
            self.crash_now(node)
        else:
            node.cut = crash.cut

    def _restart(self, index: int) -> None:
        node = self.nodes[index]
        assert isinstance(node, HonestNode)
        if node.alive:
            node.cut = None
            return
        self.trace.append((self.now, "restart", index))
        node.boot()


def run_seed(
    seed: int,
    rng: Rng,
    engine_factory: EngineFactory = TendermintEngine,
    byzantine: str | None = None,
    replay: str = "SIM_SEED={seed} .venv/bin/pytest tests/test_simulation.py -q",
    node_factory: NodeFactory = HonestNode,
) -> SimResult:
    """Draw a scenario from ``rng`` (seeded with ``seed`` by the caller) and run it, with
    ``node_factory`` making the honest nodes (a variant shows the harness catching it)."""
    from zhongshu.consensus.simulation.scenario import get_random_scenario

    scenario = get_random_scenario(seed, rng, byzantine=byzantine)
    return Simulation(scenario, rng, engine_factory, replay, node_factory).run()
