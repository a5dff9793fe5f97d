"""A node serving the hub chain runs the hub's contracts; a business chain does not.

Real node processes: a single-validator chain named ``hub`` is initialised (``hub.init`` at
height 1 by its validator) and takes an organization from the operator, through the gateway's
binary route and the admission workers; the same call on a business chain is refused at
admission as an unknown contract.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import NodeProcess, free_port
from zhongshu.hub.registry import HubInit
from zhongshu.hub.roles import NodeKeys, OrgCreate
from zhongshu.node.home import KEY_FILE, init_single_home
from zhongshu.sdk import ApiError, Client, load_key, new_key

pytestmark = pytest.mark.slow


class HubNode(NodeProcess):
    """A node whose one chain is ``hub``."""

    @property
    def status_url(self) -> str:
        return f"{self.url}/v1/chains/hub/status"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubNode]:
    home = tmp_path_factory.mktemp("hub") / "home"
    port = free_port()
    init_single_home(home, suite="sm", chain_id="hub", port=port, now_ms=time.time_ns() // 1_000_000)
    node = HubNode(home, port)
    try:
        node.restart()
        yield node
    finally:
        node.teardown()


def test_hub_chain_initialises_and_takes_an_organization(hub: HubNode) -> None:
    validator = load_key(hub.home / KEY_FILE)
    operator = new_key("sm")
    admin = new_key("sm")
    nodes = [NodeKeys("node0", validator.public_bytes(), new_key("intl").public_bytes())]
    with Client(hub.url, "hub") as client:
        init = client.submit(client.sign(validator, "hub", "init", HubInit(operator.public_bytes(), nodes)))
        receipt = init.receipts[0]
        assert receipt.ok, receipt.receipt.error
        # hub.init ran in the first block, as its rule requires.
        assert receipt.height == 1
        org = OrgCreate("court", "Intermediate People's Court", [admin.public_bytes()])
        created = client.submit(client.sign(operator, "hub.org", "create", org)).receipts[0]
        assert created.ok, created.receipt.error
        # Only the operator creates organizations: the admin's attempt commits as a failure.
        other = OrgCreate("bank", "City Bank", [admin.public_bytes()])
        refused = client.submit(client.sign(admin, "hub.org", "create", other)).receipts[0]
        assert not refused.ok
        assert refused.receipt.error.startswith("not allowed"), refused.receipt.error
        # A second hub.init is refused too (once, at height 1 only).
        again = client.submit(client.sign(validator, "hub", "init", HubInit(operator.public_bytes(), nodes)))
        assert not again.receipts[0].ok


def test_a_business_chain_has_no_hub_contracts(module_node: NodeProcess) -> None:
    key = new_key("sm")
    with Client(module_node.url, "main") as client:
        tx = client.sign(key, "hub.org", "create", OrgCreate("court", "Court", [key.public_bytes()]))
        with pytest.raises(ApiError) as caught:
            client.submit(tx)
    assert (caught.value.status, caught.value.code) == (400, "unknown-contract")


def test_hub_chain_keeps_evidence(hub: HubNode, tmp_path: Path) -> None:
    # The hub chain runs evidence beside its system contracts.
    key = new_key("sm")
    with Client(hub.url, "hub") as client:
        receipt = client.put_evidence(key, b"\x07" * 32, "charter.pdf")
    assert receipt.ok and receipt.deposit().duplicate is False
