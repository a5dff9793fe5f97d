"""``GET /healthz``: whether each chain this node serves can commit now.

A chain is healthy when this node and the validators connected to it hold more than 2/3 of the
voting power: a single-node chain always does, a replica does once enough peers are connected.
The answer is 200 with every chain's height and quorum, or 503 ``unhealthy`` naming the chains
without a quorum (a load balancer or an operator's probe reads the status alone).
"""

from __future__ import annotations

from typing import Any

from zhongshu.node.chain import ChainNode


def chain_health(node: ChainNode) -> dict[str, Any]:
    """Height, connected peers and whether they make a quorum with this node."""
    from zhongshu.node.replica import Replica

    validators = node.genesis.validators
    own = validators.power_of(node.signer.public_key)
    peers = [p.validator for p in node.transport.peers()] if isinstance(node, Replica) else []
    power = own + sum(validators.power_of(key) for key in set(peers))
    total = validators.total_power()
    return {
        "height": node.height,
        "networked": isinstance(node, Replica),
        "peers": len(peers),
        "power": power,
        "total_power": total,
        # A quorum is more than 2/3 of the total voting power.
        "quorum": 3 * power > 2 * total,
    }


def without_quorum(health: dict[str, dict[str, Any]]) -> list[str]:
    """The chains of a health answer that cannot commit now."""
    return [chain_id for chain_id, h in sorted(health.items()) if not h["quorum"]]
