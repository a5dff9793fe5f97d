"""Errors raised while executing a transaction."""

from __future__ import annotations


class ExecutionError(Exception):
    """A transaction failed; it stays in its block with a failed receipt and no state change."""


class InvalidArguments(ExecutionError):
    """The arguments do not decode as the method's argument type or break its rules."""


class UnknownContract(ExecutionError):
    """No contract of that name is registered."""


class UnknownMethod(ExecutionError):
    """The contract has no method of that name."""
