"""ASGI middleware: the node signs every answer it gives (docs/access-spec.md, *Signed answers*).

The signature covers the status, the request's nonce (``X-Zhongshu-Nonce`` when well-formed,
else nothing) and the exact body, with the node's validator key; so an application that knows
the chain's validators (its genesis) can tell that one of them answered, and that the answer
was made for its request. An event stream is the one answer left unsigned: it has no end to
sign.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zhongshu.crypto import PrivateKey
from zhongshu.gateway.access import NONCE_FORM, NONCE_HEADER, sign_response

_NONCE = NONCE_HEADER.lower().encode()


def request_nonce(scope: Scope) -> str:
    """The request's nonce as the signature covers it: the header when well-formed, else ""."""
    values: list[str] = [bytes(v).decode("latin-1") for name, v in scope.get("headers", []) if name == _NONCE]
    # Exactly one header, of the nonce's form; anything else signs as no nonce.
    if len(values) == 1 and NONCE_FORM.fullmatch(values[0]):
        return values[0]
    return ""


class SignedAnswers:
    def __init__(self, app: ASGIApp, node_key: PrivateKey) -> None:
        self.app = app
        self.node_key = node_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = request_nonce(scope)
        start: Message | None = None
        streaming = False
        chunks: list[bytes] = []

        async def send_signed(message: Message) -> None:
            nonlocal start, streaming
            if message["type"] == "http.response.start":
                media = dict(message.get("headers", [])).get(b"content-type", b"")
                # An event stream goes out as it comes: it has no end to sign.
                streaming = media.startswith(b"text/event-stream")
                if streaming:
                    await send(message)
                else:
                    start = message
                return
            if streaming or message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            signed = sign_response(self.node_key, int(start["status"]), nonce, body)
            headers = [
                *start.get("headers", []),
                *((k.lower().encode(), v.encode()) for k, v in signed.items()),
            ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_signed)
