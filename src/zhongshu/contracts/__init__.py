"""Scenario contracts, registered into an execution Registry."""

from zhongshu.contracts import evidence
from zhongshu.execution.registry import Registry


def build_registry() -> Registry:
    """The registry of every built-in contract a chain runs."""
    registry = Registry()
    registry.register(evidence.CONTRACT)
    return registry
