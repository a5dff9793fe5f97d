"""Why a node refuses a transaction or a query. The gateway maps each to a problem document."""

from __future__ import annotations


class Refused(Exception):
    """Base of every refusal; ``code`` names the problem type."""

    code = "refused"
    title = "Refused"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class MalformedTransaction(Refused):
    code = "malformed-transaction"
    title = "Malformed transaction"


class BadRequest(Refused):
    code = "bad-request"
    title = "Bad request"


class InvalidSignature(Refused):
    code = "invalid-signature"
    title = "Invalid signature"


class InvalidPublicKey(Refused):
    code = "invalid-public-key"
    title = "Invalid public key"


class WrongChain(Refused):
    code = "wrong-chain-id"
    title = "Transaction is for another chain"


class WrongGenesis(Refused):
    """The transaction names this chain but another genesis: it was signed for another network."""

    code = "wrong-genesis"
    title = "Transaction is for another network"


class UnknownChain(Refused):
    code = "unknown-chain"
    title = "Unknown chain"


class ChainStopped(Refused):
    """The hub stopped this chain: its data stays readable, it takes no more transactions."""

    code = "chain-stopped"
    title = "Chain stopped"


class UnknownContract(Refused):
    code = "unknown-contract"
    title = "Unknown contract"


class UnknownMethod(Refused):
    code = "unknown-method"
    title = "Unknown method"


class InvalidArguments(Refused):
    code = "invalid-arguments"
    title = "Invalid arguments"


class ArgumentLimit(Refused):
    """The arguments decode but break a limit the contract states (sizes, counts)."""

    code = "argument-limit"
    title = "Arguments break the contract's limits"


class Expired(Refused):
    code = "expired"
    title = "Transaction expired"


class Duplicate(Refused):
    code = "duplicate"
    title = "Duplicate transaction"


class TooLarge(Refused):
    code = "too-large"
    title = "Too large"


class MempoolFull(Refused):
    code = "mempool-full"
    title = "Mempool full"


class NotFound(Refused):
    code = "not-found"
    title = "Not found"


class NoStateMap(Refused):
    """The chain runs without the state map (a node configured to measure its cost): its
    state has no proofs."""

    code = "no-state-map"
    title = "No state proofs on this chain"


class StatePruned(Refused):
    """The node no longer keeps the state map's version at that height (``state_heights_kept``)."""

    code = "state-pruned"
    title = "State at that height no longer kept"


class CommitTimeout(Refused):
    code = "commit-timeout"
    title = "Not committed in time"


class NodeStopping(Refused):
    """The node stopped before the transactions of a ``?wait=commit`` were committed."""

    code = "node-stopping"
    title = "Node stopping"


class BatchRefused(Refused):
    """At least one transaction of a batch was refused; none of the batch was accepted."""

    code = "batch-refused"
    title = "Batch refused"

    def __init__(self, errors: list[tuple[int, Refused]]) -> None:
        first_index, first = errors[0]
        super().__init__(
            f"{len(errors)} transaction(s) refused; first at index {first_index}: {first.detail}",
            errors=[{"index": i, "type": e.code, "detail": e.detail} for i, e in errors],
        )
        self.errors = errors


def _refusal_kinds() -> dict[str, type[Refused]]:
    kinds: dict[str, type[Refused]] = {}
    pending = [Refused]
    while pending:
        kind = pending.pop()
        kinds[kind.code] = kind
        pending.extend(kind.__subclasses__())
    return kinds


_KINDS = _refusal_kinds()


def refusal(code: str, detail: str) -> Refused:
    """The Refused of ``code`` (as a worker process reports it) with ``detail``."""
    return _KINDS.get(code, Refused)(detail)
