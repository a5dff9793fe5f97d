"""Which contracts a chain runs, decided by its name: the one rule every node of a hub applies.

The hub chain (``hub``) runs the hub's system contracts beside evidence; every other chain is a
business chain and runs the built-in contracts. The choice is part of consensus (validators of a
chain must execute the same code), so it depends only on the chain id, which the genesis fixes.
"""

from __future__ import annotations

from zhongshu.node.verifier import DEFAULT_REGISTRY

HUB_CHAIN = "hub"
"""The chain id of the hub chain."""

HUB_REGISTRY = "zhongshu.hub:build_hub_registry"


def registry_for(chain_id: str) -> str:
    """The ``module:function`` that builds the contracts chain ``chain_id`` runs."""
    return HUB_REGISTRY if chain_id == HUB_CHAIN else DEFAULT_REGISTRY
