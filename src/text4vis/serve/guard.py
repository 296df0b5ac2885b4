"""The ASGI middleware every request passes: body size, admission, timeout, and the last word on
errors.

- **Body size**: a ``Content-Length`` over ``max_body_bytes`` gets 413 before anything is read; a
  body without a length (chunked) is counted as it arrives and cut off at the limit (413 too).
- **Admission**: requests to the routes that use the model (``model_paths``) are counted; one
  over ``max_active`` gets 503 with ``Retry-After`` at once, before its body is read, so that a
  crowd of uploads cannot fill the disk or the memory.
- **Timeout**: a request that has not started its answer after ``timeout_s`` gets 504; its work
  is cancelled where it waits (a decode already running in a thread finishes and is dropped).
  Once an answer has started (a video streaming to the browser) it is not cut.
- **Errors**: anything the application did not answer is a bug: 500 with a short message, and
  the traceback in the log (``logger.exception``); the server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from text4vis import __version__

__all__ = ["BodyTooLarge", "Guard", "internal_error_message"]

logger = logging.getLogger("text4vis.serve")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    """A request body passed the size limit while it was read."""


def internal_error_message(exc: BaseException) -> str:
    """What a client is told about a bug: its type, the version, where the traceback is."""
    return (
        f"internal error ({type(exc).__name__}) in text4vis {__version__}; "
        "the server log has the traceback: please report it"
    )


async def send_json(
    send: Send, status: int, value: Any, headers: dict[str, str] | None = None
) -> None:
    """A whole JSON answer through a raw ASGI ``send``."""
    body = json.dumps(value).encode("utf-8")
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if status in (413, 503, 504):
        raw_headers.append((b"connection", b"close"))  # an unread body must not be a request
    for key, value_ in (headers or {}).items():
        raw_headers.append((key.lower().encode(), value_.encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Wraps the ASGI application; see the module docstring.

    Args:
        app: the application.
        max_body_bytes: largest request body taken.
        timeout_s: seconds a request may take before its answer starts.
        max_active: requests to ``model_paths`` handled at once at most.
        model_paths: the paths (exact) counted for admission.
    """

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        max_body_bytes: int,
        timeout_s: float,
        max_active: int,
        model_paths: Collection[str],
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.max_active = max_active
        self.model_paths = frozenset(model_paths)
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length_text = headers.get(b"content-length", b"").decode("latin-1").strip()
        if length_text:
            if not length_text.isdigit():
                await send_json(send, 400, {"error": f"bad Content-Length {length_text!r}"})
                return
            if int(length_text) > self.max_body_bytes:
                await send_json(send, 413, {"error": self._too_large(int(length_text))})
                return
        counted = scope["path"] in self.model_paths
        if counted and self.active >= self.max_active:
            await send_json(
                send,
                503,
                {
                    "error": f"the server is busy: {self.active} requests are being served; "
                    "retry in a moment"
                },
                {"Retry-After": "1"},
            )
            return
        self.active += counted
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.active -= counted

    def _too_large(self, size: int | None) -> str:
        size_text = "over" if size is None else f"{size} bytes;"
        return (
            f"the request body is {size_text} more than the {self.max_body_bytes} bytes this "
            "server takes (--max-body-mb)"
        )

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = {"received": 0, "too_large": False, "started": False, "closed": False}

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body_bytes:
                    state["too_large"] = True
                    raise BodyTooLarge(self._too_large(None))
            return message

        async def guarded_send(message: Message) -> None:
            if state["closed"]:
                return  # the answer was given here (413, 504); the application's is dropped
            if message["type"] == "http.response.start":
                if state["too_large"]:
                    # The application answered the cut-off body its own way (FastAPI: 400,
                    # "error parsing the body"); the client is told the real reason.
                    state["closed"] = True
                    await send_json(send, 413, {"error": self._too_large(None)})
                    return
                state["started"] = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, counted_receive, guarded_send))
        done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
        if not done and not state["started"]:
            task.cancel()
            task.add_done_callback(_drop_result)  # it may finish later in a thread
            state["closed"] = True
            await send_json(
                send,
                504,
                {
                    "error": f"the request took more than {self.timeout_s:g} s and was stopped; "
                    "retry with a shorter video or later (--timeout)"
                },
            )
            return
        try:
            await task  # done, or an answer that started (a file streaming) and goes on
        except Exception as exc:
            if state["too_large"] and not state["started"] and not state["closed"]:
                state["closed"] = True
                await send_json(send, 413, {"error": self._too_large(None)})
                return
            logger.exception(
                "request %s %s failed: a bug in text4vis %s",
                scope.get("method"),
                scope.get("path"),
                __version__,
            )
            if not state["started"] and not state["closed"]:
                state["closed"] = True
                await send_json(send, 500, {"error": internal_error_message(exc)})


def _drop_result(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("a timed-out request ended with %r", task.exception())
