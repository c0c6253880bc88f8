"""In front of every route, plain ASGI: an API key before a byte of the body is read, bodies
bounded by their kind's limit and paced, and headers that keep browsers safe."""

from __future__ import annotations

import json

import anyio
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..db.apikeys import ApiKeys
from .connections import paced

API_KEY_HEADER = "X-API-Key"


class _BodyTooLarge(StarletteHTTPException):
    """Raised while a body is received, as an HTTPException so that FastAPI passes it on as 413."""


# Nothing is sniffed into HTML, and no page of the service runs inside another site's frame
# (clickjacking: its buttons under a page that is not its own).
SAFETY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
]


class RequestGate:
    """Plain ASGI, in front of everything: every /v1/ request needs a valid key before a byte of
    its body is read, and a body may not exceed its kind's limit (said up front by
    Content-Length, or counted as it streams). Every response says nosniff (a stored file that
    is not an image must never run in a browser as HTML) and may not be framed (SAFETY_HEADERS)."""

    def __init__(self, app, keys: ApiKeys, json_limit: int, upload_limit: int, body_grace: float) -> None:
        self.app, self.keys, self.json_limit, self.upload_limit = app, keys, json_limit, upload_limit
        self.body_grace = body_grace

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_guarded(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SAFETY_HEADERS]
            await send(message)

        if not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send_guarded)
        headers = Headers(scope=scope)
        key = headers.get(API_KEY_HEADER)
        if not key:
            return await _answer(send_guarded, 401, f"an API key is needed in the {API_KEY_HEADER} header")
        try:
            info = await anyio.to_thread.run_sync(self.keys.check, key)
        except SQLAlchemyError:
            return await _answer(send_guarded, 503, "the database is unavailable; retry shortly")
        if info is None:
            return await _answer(send_guarded, 401, "unknown or revoked API key")
        scope.setdefault("state", {})["api_key"] = info
        multipart = headers.get("content-type", "").startswith("multipart/form-data")
        limit = self.upload_limit if multipart else self.json_limit
        too_large = f"the body is larger than this service takes ({limit:,} bytes{' for uploads' if multipart else ''})"
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _answer(send_guarded, 413, too_large)
        received = 0
        receive_paced = paced(receive, self.body_grace)

        async def receive_bounded():
            nonlocal received
            message = await receive_paced()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(413, too_large)
            return message

        await self.app(scope, receive_bounded, send_guarded)


async def _answer(send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
