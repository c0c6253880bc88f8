"""Clients that hold the service's connections without using them (slowloris): a request's
headers must all arrive within a deadline, its body must keep coming at a minimum rate, and
the connections open at once are capped. As Apache's mod_reqtimeout does by default
(header=20, body=20 then 500 bytes a second); uvicorn alone waited for ever."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import h11
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

MIN_BODY_BYTES_PER_SECOND = 500


class TooSlow(HTTPException):
    """Raised while a body is received, as an HTTPException so that FastAPI answers it (408)."""


def with_header_deadline(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing (with a 408) a connection whose request line and headers
    have not all arrived `seconds` after it opened or after its previous response."""

    class HeaderDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the request's head has arrived
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                body = b'{"error": "the request\'s headers came too slowly"}'
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
                )
                self.transport.close()

    return HeaderDeadline


def paced(receive: Callable[[], Awaitable[dict[str, Any]]], grace: float) -> Callable[[], Awaitable[dict[str, Any]]]:
    """`receive` of an ASGI request whose body must arrive at MIN_BODY_BYTES_PER_SECOND after
    `grace` seconds from the first call; a body slower than that is a 408."""
    loop = asyncio.get_running_loop()
    started: float | None = None
    received, complete = 0, False

    async def receive_paced() -> dict[str, Any]:
        nonlocal started, received, complete
        if complete:  # then only the client's going away is waited for, for as long as it takes
            return await receive()
        now = loop.time()
        if started is None:
            started = now
        allowed = started + grace + received / MIN_BODY_BYTES_PER_SECOND - now
        try:
            message = await asyncio.wait_for(receive(), timeout=max(allowed, 0.001))
        except TimeoutError:
            raise TooSlow(408, "the request's body came too slowly", headers={"Connection": "close"}) from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            complete = not message.get("more_body", False)
        return message

    return receive_paced
