"""What a contract sees while it runs: the call, the block, and buffered state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zhongshu.codec import encode
from zhongshu.ledger.types import Event

StateReader = Callable[[bytes], bytes | None]


class TxState:
    """Writes of one transaction over the block's writes over committed state.

    Nothing reaches the block's write set unless the transaction succeeds.
    """

    def __init__(self, read_committed: StateReader, block_writes: dict[bytes, bytes | None]) -> None:
        self._read = read_committed
        self._block = block_writes
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        if key in self._block:
            return self._block[key]
        return self._read(key)

    def set(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = None


@dataclass(slots=True)
class CallContext:
    """The inputs of one contract call; time and height come from the block, never a clock."""

    chain_id: str
    height: int
    time: int
    """Block time, milliseconds since the Unix epoch."""
    tx_hash: bytes
    tx_index: int
    sender: bytes
    state: TxState
    contract: str
    events: list[Event] = field(default_factory=list)

    def emit(self, name: str, data: Any) -> None:
        self.events.append(Event(self.contract, name, encode(data)))
