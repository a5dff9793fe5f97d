"""The OpenAPI document: body schemas, each route's problem responses, the transaction body.

Routes declare their answers with ``answers(model, *codes)``: the 2xx model and the problem
codes they can return, grouped by status from the registry (``problems.PROBLEM_TYPES``).
``openapi_document`` then adjusts what FastAPI generates: problems are
``application/problem+json``, FastAPI's 422 answers (never sent: invalid parameters are 400
``invalid-request``) are removed, and the schemas no route names directly (the transaction
body, decoded by msgspec rather than by FastAPI) are added to the components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from zhongshu.gateway.problems import PROBLEM_TYPE, PROBLEM_TYPES
from zhongshu.gateway.schemas import RESPONSE_MODELS, Problem, TxBody

CONNECTION_CODES = ("malformed-http", "request-timeout", "too-many-connections", "body-too-large")
"""Codes the connection layer can answer any request with."""

SCHEMA_REF = "#/components/schemas/{model}"
PROBLEM_REF = SCHEMA_REF.format(model=Problem.__name__)


def answers(model: type[BaseModel] | None, *codes: str, status: int = 200) -> dict[int | str, Any]:
    """The ``responses`` of a route: ``model`` at ``status``, each code's status with a Problem."""
    out: dict[int | str, Any] = {}
    if model is not None:
        out[status] = success(model)
    by_status: dict[int, list[str]] = {}
    for code in (*codes, *CONNECTION_CODES):
        by_status.setdefault(PROBLEM_TYPES[code].status, []).append(code)
    if "batch-refused" in codes:
        by_status.setdefault(409, []).append("batch-refused")
    for problem_status, group in sorted(by_status.items()):
        out[problem_status] = {
            "model": Problem,
            "description": "; ".join(f"/problems/{code}" for code in dict.fromkeys(group)),
        }
    return out


def success(model: type[BaseModel]) -> dict[str, Any]:
    """A 2xx answer of ``model`` (described by its docstring), for a route with two of them."""
    return {"model": model, "description": (model.__doc__ or model.__name__).strip()}


def tx_body_schema() -> dict[str, Any]:
    """The request body of POST txs: one transaction or a batch of 1 to 10,000 (all or nothing)."""
    ref = {"$ref": SCHEMA_REF.format(model="TxBody")}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [ref, {"type": "array", "items": ref, "minItems": 1, "maxItems": 10_000}],
                    }
                },
                "application/msgpack": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "the canonical MessagePack of an array of 1 to 10,000 transactions, "
                        "each as a block holds it (docs/access-spec.md, Binary submission); answered in "
                        "MessagePack when Accept names application/msgpack",
                    }
                },
            },
        }
    }


def event_stream() -> dict[int | str, Any]:
    """The 200 answer of the events route: a text/event-stream, not JSON."""
    return {
        200: {
            "description": "Server-sent events: `event: block` (height, hash, time, tx_count) per committed "
            "block and `event: event` (height, tx_hash, contract, name, data as hex MessagePack) per "
            "contract event; `data:` is a JSON object whose `type` is the event's name.",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": "an SSE stream (text/event-stream)"}
                }
            },
        }
    }


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with problem media types, no 422s and every schema in the components."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in RESPONSE_MODELS:
        extra = model.model_json_schema(ref_template=SCHEMA_REF, mode="serialization")
        schemas.update(extra.pop("$defs", {}))
        schemas.setdefault(model.__name__, extra)
    schemas["TxBody"] = TxBody.model_json_schema(ref_template=SCHEMA_REF, mode="validation")
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path_item in doc.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for status, response in responses.items():
                # A problem is application/problem+json (RFC 9457), whatever the route's 2xx type.
                if status[0] in "45":
                    response["content"] = {PROBLEM_TYPE: {"schema": {"$ref": PROBLEM_REF}}}
    return doc
