"""The API as its users' tools read it, through a real node process.

The OpenAPI document gives every route a 2xx schema and its problem answers; each route's real
answer validates against its declared schema (by ``matches``, a walker of the JSON Schema
keywords the document uses); the events route is a text/event-stream; the documentation pages
load only the gateway's own assets; ``/healthz`` answers for a single node and for a replica
with and without a quorum; problem ``type`` URIs resolve to their descriptions; and the
problem registry, the node's refusals and docs/access-spec.md's error table agree.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from conftest import NodeProcess, free_base, run_cli, wait_for
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.gateway.problems import PROBLEM_TYPES, STATUS
from zhongshu.gateway.schemas import HEX_PATTERN, TxBody
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.types import Transaction
from zhongshu.node import errors
from zhongshu.node.txcheck import TxJSON, tx_to_json
from zhongshu.sdk.client import sign_tx

ROOT = Path(__file__).resolve().parents[1]
SM = get_suite("sm")
FAR = 10**9
PROBLEM = "application/problem+json"
HTTP_TIMEOUT = 30.0

ROUTES = [
    ("get", "/healthz"),
    ("get", "/problems"),
    ("get", "/problems/{code}"),
    ("get", "/v1/chains"),
    ("get", "/v1/chains/{chain}/status"),
    ("get", "/v1/chains/{chain}/genesis"),
    ("post", "/v1/chains/{chain}/txs"),
    ("get", "/v1/chains/{chain}/txs/{tx_hash}"),
    ("get", "/v1/chains/{chain}/txs/{tx_hash}/proof"),
    ("get", "/v1/chains/{chain}/blocks/{height}"),
    ("get", "/v1/chains/{chain}/evidence/{digest}"),
    ("get", "/v1/chains/{chain}/evidence"),
    ("get", "/v1/chains/{chain}/state/{key}"),
    ("get", "/v1/chains/{chain}/events"),
]
"""Every route of the document; each JSON one is called for real below."""

EVENTS = ("get", "/v1/chains/{chain}/events")

pytestmark = pytest.mark.slow


# -- a JSON Schema walker (the keywords the document uses) ------------------------------------


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$ref`` (to the document's components) followed."""
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def matches(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema``: an empty list when it conforms."""
    schema = resolve(doc, schema)
    out: list[str] = []
    if "anyOf" in schema and not any(not matches(doc, s, value, where) for s in schema["anyOf"]):
        out.append(f"{where}: matches none of anyOf")
    if "oneOf" in schema and sum(not matches(doc, s, value, where) for s in schema["oneOf"]) != 1:
        out.append(f"{where}: does not match exactly one of oneOf")
    if "const" in schema and value != schema["const"]:
        out.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[k](value) for k in kinds):
            return [*out, f"{where}: {value!r:.80} is not of type {schema['type']}"]
    if isinstance(value, dict):
        out += [f"{where}: lacks {name!r}" for name in schema.get("required", []) if name not in value]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                out += matches(doc, properties[name], item, f"{where}.{name}")
            elif extra is False:
                out.append(f"{where}: unexpected {name!r}")
            elif isinstance(extra, dict):
                out += matches(doc, extra, item, f"{where}.{name}")
    if isinstance(value, list):
        if "items" in schema:
            for i, item in enumerate(value):
                out += matches(doc, schema["items"], item, f"{where}[{i}]")
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            out.append(f"{where}: {len(value)} items, outside the bounds")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        out.append(f"{where}: {value!r:.80} does not match {schema['pattern']}")
    return out


def test_the_walker_catches_what_it_must() -> None:
    doc: dict[str, Any] = {"components": {"schemas": {"P": {"type": "object", "required": ["a"]}}}}
    assert matches(doc, {"$ref": "#/components/schemas/P"}, {"a": 1}) == []
    assert matches(doc, {"$ref": "#/components/schemas/P"}, {}) != []
    assert matches(doc, {"anyOf": [{"type": "string"}, {"type": "null"}]}, 3) != []
    assert matches(doc, {"type": "array", "items": {"type": "integer"}}, [1, "x"]) != []
    assert matches(doc, {"type": "string", "pattern": "^[0-9a-f]*$"}, "xyz") != []
    assert matches(doc, {"enum": ["ok", "failed"]}, "maybe") != []


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(module_node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=module_node.url, timeout=HTTP_TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
def doc(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/openapi.json")
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return SM.generate_private_key()


def evidence(key: PrivateKey, genesis: bytes, digest: bytes) -> Transaction:
    """A signed evidence.put of ``digest``."""
    args = EvidencePut(digest, "contract.pdf", {"dept": "court"}, b"\x01\x02")
    return sign_tx(key, "main", genesis, "evidence", "put", args, FAR)


@pytest.fixture(scope="module")
def answers(module_node: NodeProcess, http: httpx.Client, key: PrivateKey) -> dict[tuple[str, str], Any]:
    """The real answer (status, JSON) of every JSON route, by (method, path template)."""
    genesis = module_node.genesis_hash()
    out: dict[tuple[str, str], Any] = {}

    def call(method: str, template: str, url: str, **kwargs: Any) -> Any:
        response = http.request(method, url, **kwargs)
        assert response.status_code < 300, f"{method} {url}: {response.text}"
        assert response.headers["content-type"].startswith("application/json"), response.headers
        out.setdefault((method, template), []).append((response.status_code, response.json()))
        return response.json()

    digest = os.urandom(32)
    call(
        "post",
        "/v1/chains/{chain}/txs",
        "/v1/chains/main/txs",
        json=tx_to_json(evidence(key, genesis, digest)),
    )
    committed = call(
        "post",
        "/v1/chains/{chain}/txs",
        "/v1/chains/main/txs",
        json=[tx_to_json(evidence(key, genesis, os.urandom(32)))],
        params={"wait": "commit", "timeout": "20"},
    )
    receipt = committed["receipts"][0]
    wait_for(
        lambda: http.get(f"/v1/chains/main/evidence/{digest.hex()}").status_code == 200,
        20,
        "the first deposit to commit",
    )
    call("get", "/healthz", "/healthz")
    call("get", "/problems", "/problems")
    call("get", "/problems/{code}", "/problems/duplicate")
    call("get", "/v1/chains", "/v1/chains", params={"limit": "1"})
    call("get", "/v1/chains/{chain}/status", "/v1/chains/main/status")
    call("get", "/v1/chains/{chain}/genesis", "/v1/chains/main/genesis")
    call("get", "/v1/chains/{chain}/txs/{tx_hash}", f"/v1/chains/main/txs/{receipt['tx_hash']}")
    call("get", "/v1/chains/{chain}/txs/{tx_hash}/proof", f"/v1/chains/main/txs/{receipt['tx_hash']}/proof")
    call(
        "get",
        "/v1/chains/{chain}/txs/{tx_hash}/proof",
        f"/v1/chains/main/txs/{receipt['tx_hash']}/proof",
        params={"anchor": "latest"},
    )
    call("get", "/v1/chains/{chain}/blocks/{height}", f"/v1/chains/main/blocks/{receipt['height']}")
    call("get", "/v1/chains/{chain}/blocks/{height}", "/v1/chains/main/blocks/latest")
    call("get", "/v1/chains/{chain}/evidence/{digest}", f"/v1/chains/main/evidence/{digest.hex()}")
    # At a height, present and absent, with and without the state bundle.
    for params in (
        {"height": str(receipt["height"]), "proof": "true"},
        {"proof": "true", "anchor": "latest"},
    ):
        for probe in (digest, os.urandom(32)):
            call(
                "get",
                "/v1/chains/{chain}/evidence/{digest}",
                f"/v1/chains/main/evidence/{probe.hex()}",
                params=params,
            )
    key_hex = (b"ev/d/" + digest).hex()
    call("get", "/v1/chains/{chain}/state/{key}", f"/v1/chains/main/state/{key_hex}")
    call(
        "get", "/v1/chains/{chain}/state/{key}", f"/v1/chains/main/state/{key_hex}", params={"proof": "true"}
    )
    call(
        "get",
        "/v1/chains/{chain}/state/{key}",
        "/v1/chains/main/state/00ff",
        params={"proof": "true", "height": "1"},
    )
    call(
        "get",
        "/v1/chains/{chain}/evidence",
        "/v1/chains/main/evidence",
        params={"owner": key.public_bytes().hex()},
    )
    return out


# -- the document ---------------------------------------------------------------------------


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_the_document_lists_exactly_the_routes(doc: dict[str, Any]) -> None:
    assert sorted((m, p) for m, p, _ in operations(doc)) == sorted(ROUTES)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_each_route_declares_a_2xx_schema_and_its_problems(
    doc: dict[str, Any], method: str, path: str
) -> None:
    responses = doc["paths"][path][method]["responses"]
    ok = {s: r for s, r in responses.items() if s.startswith("2")}
    assert ok, f"{method} {path} declares no 2xx answer"
    for status, response in ok.items():
        assert response.get("content"), f"{method} {path} {status}: no content"
        for media, body in response["content"].items():
            schema = resolve(doc, body.get("schema", {}))
            # One schema, or a choice between schemas each of which is one.
            choices = [resolve(doc, s) for s in schema.get("anyOf", [schema])]
            assert all(c.get("properties") or c.get("type") for c in choices), (
                f"{method} {path} {status} {media}: {schema}"
            )
    problems = {s: r for s, r in responses.items() if s[0] in "45"}
    # The connection layer can refuse any request: framing (400), deadline (408), connections (503).
    assert {"400", "408", "503"} <= set(problems), f"{method} {path}: {sorted(responses)}"
    if "{chain}" in path:
        assert "404" in problems, f"{method} {path} does not declare unknown-chain"
    assert "422" not in responses, "invalid parameters are answered 400 invalid-request, not 422"
    for status, response in problems.items():
        assert list(response["content"]) == [PROBLEM], f"{method} {path} {status}"
        schema = resolve(doc, response["content"][PROBLEM]["schema"])
        assert {"type", "title", "status", "detail"} <= set(schema["required"]), schema
        codes = re.findall(r"/problems/([a-z-]+)", response["description"])
        assert codes and all(PROBLEM_TYPES[c].status == int(status) or c == "batch-refused" for c in codes)


def test_submit_declares_the_problems_of_a_transaction(doc: dict[str, Any]) -> None:
    responses = doc["paths"]["/v1/chains/{chain}/txs"]["post"]["responses"]
    assert {"200", "202", "400", "404", "409", "413", "503", "504"} <= set(responses)
    assert "/problems/wrong-genesis" in responses["400"]["description"]
    assert "/problems/commit-timeout" in responses["504"]["description"]


def test_submit_declares_its_body_as_one_transaction_or_a_batch(doc: dict[str, Any]) -> None:
    body = doc["paths"]["/v1/chains/{chain}/txs"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    single, batch = schema["oneOf"]
    tx = resolve(doc, single)
    assert resolve(doc, batch["items"]) == tx and batch["maxItems"] == 10_000
    # The declared body is the one msgspec decodes, field for field.
    names = [f.name for f in msgspec.structs.fields(TxJSON)]
    assert list(tx["properties"]) == names == list(TxBody.model_fields)
    assert sorted(tx["required"]) == sorted(names) and tx["additionalProperties"] is False
    for name in ("genesis_hash", "sender", "args", "signature"):
        assert tx["properties"][name]["pattern"] == HEX_PATTERN and tx["properties"][name]["description"]


def test_list_routes_are_paged_in_the_document(doc: dict[str, Any]) -> None:
    for path in ("/v1/chains", "/v1/chains/{chain}/evidence"):
        operation = doc["paths"][path]["get"]
        params = {p["name"]: p for p in operation["parameters"]}
        assert {"limit", "cursor"} <= set(params), path
        page = resolve(doc, operation["responses"]["200"]["content"]["application/json"]["schema"])
        assert set(page["required"]) == {"items", "next_cursor"}, path


def test_the_events_route_is_an_event_stream(doc: dict[str, Any], module_node: NodeProcess) -> None:
    ok = doc["paths"]["/v1/chains/{chain}/events"]["get"]["responses"]["200"]
    assert list(ok["content"]) == ["text/event-stream"]
    with (
        httpx.Client(timeout=HTTP_TIMEOUT) as client,
        client.stream("GET", module_node.api("/events")) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert next(response.iter_bytes()).startswith(b": subscribed")


# -- real answers against their schemas -----------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r != EVENTS], ids=lambda v: str(v))
def test_each_real_answer_validates_against_its_schema(
    doc: dict[str, Any], answers: dict[tuple[str, str], Any], method: str, path: str
) -> None:
    assert (method, path) in answers, f"no real call of {method} {path}"
    responses = doc["paths"][path][method]["responses"]
    for status, body in answers[(method, path)]:
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        assert matches(doc, schema, body) == [], f"{method} {path} {status}: {body}"


def test_both_submit_answers_were_checked(answers: dict[tuple[str, str], Any]) -> None:
    assert sorted(s for s, _ in answers[("post", "/v1/chains/{chain}/txs")]) == [200, 202]


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/v1/chains/nowhere/status", 404),
        ("/v1/chains/main/blocks/tall", 400),
        ("/v1/chains/main/txs/" + "00" * 32, 404),
        ("/v1/chains?limit=many", 400),
        ("/problems/no-such-code", 404),
    ],
)
def test_real_problems_validate_and_their_type_resolves(
    doc: dict[str, Any], http: httpx.Client, url: str, status: int
) -> None:
    response = http.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert matches(doc, {"$ref": "#/components/schemas/Problem"}, problem) == [], problem
    assert re.fullmatch(r"/problems/[a-z-]+", problem["type"]), problem
    described = http.get(problem["type"])
    assert described.status_code == 200, described.text
    assert described.json()["status"] == status and described.json()["type"] == problem["type"]


# -- problem URIs and the registry ----------------------------------------------------------


def test_every_problem_uri_resolves(http: httpx.Client) -> None:
    listed = http.get("/problems").json()
    assert [p["code"] for p in listed["items"]] == list(PROBLEM_TYPES)
    for item in listed["items"]:
        response = http.get(item["type"])
        assert response.status_code == 200, item
        assert response.json() == item
        assert item["description"] and item["title"] and 400 <= item["status"] < 600


def _refusal_kinds(kind: type[errors.Refused]) -> Iterator[type[errors.Refused]]:
    for sub in kind.__subclasses__():
        yield sub
        yield from _refusal_kinds(sub)


def test_every_refusal_has_a_registered_status() -> None:
    kinds = set(_refusal_kinds(errors.Refused))
    assert {errors.WrongGenesis, errors.ArgumentLimit} <= kinds
    assert set(STATUS) == kinds
    for kind in kinds:
        assert PROBLEM_TYPES[kind.code].refusal is kind
        assert PROBLEM_TYPES[kind.code].title == kind.title


def _literal_codes() -> Iterator[tuple[str, str]]:
    """The code literals the gateway's modules pass to the problem writers."""
    for path in sorted((ROOT / "src" / "zhongshu" / "gateway").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in ("problem_response", "encode_problem_http", "problem_document"):
                code = node.args[1]
                if isinstance(code, ast.Constant):
                    yield path.name, code.value
                    title = node.args[2]
                    if isinstance(title, ast.Constant):
                        assert PROBLEM_TYPES[code.value].title == title.value, (path.name, code.value)
            if isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
                mapping = node.func.value
                if isinstance(mapping, ast.Dict):
                    for value in [*mapping.values, node.args[1]]:
                        if isinstance(value, ast.Constant):
                            yield path.name, value.value


def test_every_code_the_gateway_writes_is_registered() -> None:
    found = list(_literal_codes())
    assert {"too-many-connections", "malformed-http", "request-timeout", "body-too-large"} <= {
        c for _, c in found
    }
    for where, code in found:
        assert code in PROBLEM_TYPES, f"{where} answers with the unregistered code {code!r}"


def _spec_error_table() -> list[tuple[str, int]]:
    text = (ROOT / "docs" / "access-spec.md").read_text()
    section = text.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            rows.append((cells[0].strip("`"), int(cells[1].split()[0])))
    return rows


def test_the_access_spec_error_table_is_the_registry() -> None:
    assert _spec_error_table() == [(p.code, p.status) for p in PROBLEM_TYPES.values()]


# -- documentation pages --------------------------------------------------------------------


@pytest.mark.parametrize(("page", "kinds"), [("/docs", {"javascript", "css"}), ("/redoc", {"javascript"})])
def test_documentation_pages_load_only_local_assets(http: httpx.Client, page: str, kinds: set[str]) -> None:
    response = http.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//[a-z]", response.text.replace("http-equiv", "")), response.text
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", response.text)
    assert "/openapi.json" in urls, urls
    seen = set()
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = http.get(url)
        assert asset.status_code == 200, url
        media = asset.headers["content-type"]
        seen |= {kind for kind in ("javascript", "css") if kind in media}
    assert kinds <= seen, urls


# -- health ---------------------------------------------------------------------------------


def test_healthz_of_a_single_node(http: httpx.Client, module_node: NodeProcess) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200, response.text
    main = response.json()["chains"]["main"]
    assert main["quorum"] is True and main["networked"] is False and main["peers"] == 0
    assert 0 <= main["height"] <= module_node.status()["height"]


def test_healthz_of_a_replica_without_and_with_a_quorum(tmp_path: Path) -> None:
    base = free_base(2)
    made = run_cli("network", "init", "--nodes", "2", "--out", tmp_path / "net", "--base-port", str(base))
    assert made.returncode == 0, made.stderr
    nodes = [NodeProcess(tmp_path / "net" / f"node{i}", base + i) for i in range(2)]
    try:
        nodes[0].restart()
        alone = httpx.get(f"{nodes[0].url}/healthz", timeout=HTTP_TIMEOUT)
        assert alone.status_code == 503, alone.text
        assert alone.headers["content-type"].startswith(PROBLEM)
        problem = alone.json()
        assert problem["type"] == "/problems/unhealthy" and "'main'" in problem["detail"], problem
        nodes[1].restart()

        def healthy() -> dict[str, Any] | None:
            response = httpx.get(f"{nodes[0].url}/healthz", timeout=HTTP_TIMEOUT)
            return dict(response.json()) if response.status_code == 200 else None

        main = wait_for(healthy, 60, "node 0 to see a quorum")["chains"]["main"]
        assert main == main | {"networked": True, "peers": 1, "quorum": True, "power": main["total_power"]}
    finally:
        for node in nodes:
            node.teardown()
