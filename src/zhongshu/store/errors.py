"""What the store raises: inconsistent contents, and damaged files found at start."""

from __future__ import annotations

from pathlib import Path


class StoreError(RuntimeError):
    """The store is missing, belongs to another chain, or its contents are inconsistent."""


class StoreDamaged(StoreError):
    """The store's files are damaged; a node must not start on them."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        """The store's directory (the one holding data.mdb)."""
        self.reason = reason
        """What was found, in one line."""
        super().__init__(
            f"the store at {path} is damaged: {reason}; restore it from a backup before starting"
        )
