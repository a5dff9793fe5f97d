"""Scenario contracts, registered into an execution Registry."""

from zhongshu.contracts import evidence
from zhongshu.execution.registry import Registry
from zhongshu.ledger.types import Genesis


def build_registry(genesis: Genesis | None = None) -> Registry:
    """The registry of every built-in contract a business chain runs (they need no genesis)."""
    registry = Registry()
    registry.register(evidence.CONTRACT)
    return registry
