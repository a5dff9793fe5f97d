"""Every answer of a node is signed by its validator key (docs/access-spec.md, Signed answers).

Through real node processes of both suites: the key named in the answer is a validator of the
genesis the client trusts, the signature covers status, body and the request's nonce, refusals
are signed too, and an event stream is passed through unsigned.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from conftest import NodeProcess, start_node
from zhongshu.gateway.access import (
    NODE_HEADER,
    NONCE_HEADER,
    RESPONSE_SIGNATURE_HEADER,
    BadResponseSignature,
    new_nonce,
    verify_response,
)
from zhongshu.ledger.genesis import load_genesis

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def intl_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = start_node(tmp_path_factory.mktemp("intl"), suite="intl")
    yield node
    node.teardown()


def validator_keys(node: NodeProcess) -> set[bytes]:
    """The keys the client trusts: the validators of the genesis file it holds."""
    return {v.public_key for v in load_genesis(node.genesis_path).validators.validators}


def node_key_of(node: NodeProcess, response: httpx.Response) -> bytes:
    key = bytes.fromhex(response.headers[NODE_HEADER])
    assert key in validator_keys(node), "the answer names a key that is no validator"
    return key


@pytest.mark.parametrize("which", ["sm", "intl"])
def test_answers_are_signed_by_a_validator(
    which: str, module_node: NodeProcess, intl_node: NodeProcess
) -> None:
    node = module_node if which == "sm" else intl_node
    response = httpx.get(node.status_url, timeout=10)
    assert response.status_code == 200
    key = node_key_of(node, response)
    verify_response(key, 200, "", response.content, response.headers)
    # Another body, status or nonce does not verify.
    with pytest.raises(BadResponseSignature):
        verify_response(key, 200, "", response.content + b" ", response.headers)
    with pytest.raises(BadResponseSignature):
        verify_response(key, 201, "", response.content, response.headers)
    with pytest.raises(BadResponseSignature):
        verify_response(key, 200, new_nonce(), response.content, response.headers)


def test_the_request_nonce_is_signed(module_node: NodeProcess) -> None:
    nonce = new_nonce()
    response = httpx.get(module_node.status_url, headers={NONCE_HEADER: nonce}, timeout=10)
    key = node_key_of(module_node, response)
    verify_response(key, 200, nonce, response.content, response.headers)
    # Not an answer to a request without that nonce.
    with pytest.raises(BadResponseSignature):
        verify_response(key, 200, "", response.content, response.headers)
    # A nonce of the wrong form is signed as no nonce.
    odd = httpx.get(module_node.status_url, headers={NONCE_HEADER: "not-a-nonce"}, timeout=10)
    verify_response(key, 200, "", odd.content, odd.headers)


def test_refusals_are_signed(module_node: NodeProcess) -> None:
    response = httpx.get(module_node.api("/blocks/999999"), timeout=10)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    verify_response(node_key_of(module_node, response), 404, "", response.content, response.headers)
    refused = httpx.post(module_node.api("/txs"), content=b"[", timeout=10)
    assert refused.status_code == 400
    verify_response(node_key_of(module_node, refused), 400, "", refused.content, refused.headers)


def test_an_event_stream_is_not_held_back(module_node: NodeProcess) -> None:
    with httpx.stream("GET", module_node.api("/events"), timeout=10) as response:
        assert response.status_code == 200
        assert RESPONSE_SIGNATURE_HEADER not in response.headers
        first = next(response.iter_bytes())
    assert first.startswith(b": subscribed")
