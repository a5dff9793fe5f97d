"""The contract registry: contract name -> methods with typed arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zhongshu.codec import DecodeError, decode
from zhongshu.execution.context import CallContext
from zhongshu.execution.errors import InvalidArguments, UnknownContract, UnknownMethod

Handler = Callable[[CallContext, Any], Any]
ArgsCheck = Callable[[Any], None]
"""A stateless rule on decoded arguments; raises InvalidArguments when they break it."""


def no_limits(args: Any) -> None:
    """The check of a method whose arguments have no limits beyond their type."""


@dataclass(frozen=True)
class Method:
    name: str
    args_type: type
    handler: Handler
    check: ArgsCheck = no_limits
    """The contract's stated limits on the arguments, stateless. Admission runs it before the
    signature check (so a breach is refused, not committed as a failure), and the handler runs
    the same function when it executes: one rule, two callers."""

    def decode_args(self, raw: bytes) -> Any:
        try:
            return decode(raw, self.args_type)
        except DecodeError as exc:
            raise InvalidArguments(f"{self.name}: {exc}") from None

    def check_args(self, args: Any) -> None:
        """Raise InvalidArguments unless the decoded ``args`` keep within the method's limits."""
        self.check(args)


@dataclass
class Contract:
    """A named set of methods; methods are pure functions of (context, arguments)."""

    name: str
    methods: dict[str, Method]


class Registry:
    def __init__(self) -> None:
        self._contracts: dict[str, Contract] = {}

    def register(self, contract: Contract) -> None:
        if contract.name in self._contracts:
            raise ValueError(f"contract {contract.name!r} is already registered")
        self._contracts[contract.name] = contract

    def names(self) -> list[str]:
        return sorted(self._contracts)

    def get_method(self, contract: str, method: str) -> Method:
        """The method, or UnknownContract / UnknownMethod."""
        c = self._contracts.get(contract)
        if c is None:
            raise UnknownContract(f"no contract named {contract!r} (known: {', '.join(self.names())})")
        m = c.methods.get(method)
        if m is None:
            known = ", ".join(sorted(c.methods))
            raise UnknownMethod(f"contract {contract!r} has no method {method!r} (known: {known})")
        return m
