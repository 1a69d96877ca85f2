"""HTTP hardening of the service: body limit, the store's reason on 503, one-line client-error logs."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from typing import Any

from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

from bento.config import API_PATHS, ENV_MAX_BODY_BYTES, MAX_BODY_BYTES, logger
from bento.health import STORE_HEALTH, StoreUnavailable

_GENERIC_5XX = "An unexpected error has occurred"  # BentoML's body for any 5xx exception


def _json_message(status: int, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ASGI start and body messages of a JSON response."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


class RequestGuard:
    """ASGI middleware of the API routes: refuse bodies over the limit (413) before anything parses
    them, and answer a store outage's 503 with its reason instead of BentoML's generic text."""

    def __init__(
        self, app: Any, max_body_bytes: int = MAX_BODY_BYTES, paths: Sequence[str] = API_PATHS
    ) -> None:
        """Wrap `app`; only `paths` are guarded (probes, metrics and docs pass through)."""
        self.app = app
        self.limit = max_body_bytes
        self.paths = frozenset(paths)

    def _too_large(self, size: str, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The 413 answer (logged in one line: the body is never read further)."""
        logger.info("413 on %s: request body of %s bytes over the %d-byte limit", path, size, self.limit)
        msg = f"request body over {self.limit} bytes ({ENV_MAX_BODY_BYTES})"
        detail = [{"type": "too_large", "loc": ["body"], "msg": msg}]
        return _json_message(413, {"error": msg, "detail": detail})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Buffer the body up to the limit, then hand the request on with a replaying receive."""
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            for message in self._too_large(declared.decode(), path):
                await send(message)
            return
        chunks, size = [], 0
        while True:  # chunked bodies declare no length: count what arrives
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                for reply in self._too_large(f"more than {self.limit}", path):
                    await send(reply)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            """The buffered body once, then whatever the client sends next (its disconnect)."""
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, self._store_reason(send))

    @staticmethod
    def _store_reason(send: Any) -> Any:
        """`send` that replaces the body of a generic 503 with the online store's problem."""
        held: dict[str, Any] = {}

        async def guarded(message: dict[str, Any]) -> None:
            """Hold a 503's start until its body shows whether it is BentoML's generic one."""
            if held.get("done"):
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    held.clear()
                return
            if message["type"] == "http.response.start" and message["status"] == 503:
                held["start"] = message
                return
            if "start" in held and message["type"] == "http.response.body":
                start = held.pop("start")
                reason = STORE_HEALTH.reason
                if reason is None or _GENERIC_5XX.encode() not in message.get("body", b""):
                    await send(start)
                    await send(message)
                    return
                for reply in _json_message(503, {"error": reason}):
                    await send(reply)
                held["done"] = message.get("more_body", False)
                return
            await send(message)

        return guarded


class ClientErrorLogFilter(logging.Filter):
    """Turn BentoML's ERROR-with-traceback for a client error into one INFO line without the input.

    BentoML logs every exception of an API call, 400s included, with `logger.error(exc_info=True)`:
    a ~24-line traceback whose pydantic message quotes the raw input. A client error is not a
    server fault; the line keeps the route, the fields and error types, never the values.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite records of client errors and store outages in place; keep every record."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            fields = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or '<body>'}: {e['type']}"
                for e in exc.errors(include_url=False, include_context=False, include_input=False)
            )
            self._one_line(record, logging.INFO, f"400 ({exc.error_count()} invalid field(s): {fields})")
        elif isinstance(exc, StoreUnavailable):
            self._one_line(record, logging.WARNING, f"503 ({exc})")
        elif isinstance(exc, BentoMLException) and int(exc.error_code) < 500:
            self._one_line(record, logging.INFO, f"{int(exc.error_code)} ({exc})")
        return True

    @staticmethod
    def _one_line(record: logging.LogRecord, level: int, what: str) -> None:
        """Set the record's level and message, drop its traceback."""
        path_method = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
        record.levelno, record.levelname = level, logging.getLevelName(level)
        record.msg, record.args = "%s [%s]: %s", (*path_method, what)
        record.exc_info, record.exc_text = None, None


def install_log_hygiene() -> None:
    """Client errors in one line (ClientErrorLogFilter); silence one upstream per-request warning."""
    http_logger = logging.getLogger("bentoml._internal.server.http_app")  # where BentoML logs them
    if not any(isinstance(f, ClientErrorLogFilter) for f in http_logger.filters):
        http_logger.addFilter(ClientErrorLogFilter())
    # BentoML 1.4's api_endpoint reads `input_data.model_fields` on the instance, which pydantic
    # >= 2.11 deprecates, on every request; the fix belongs upstream (type(input_data).model_fields),
    # so only that message from that module is filtered, every other warning still shows
    warnings.filterwarnings(
        "ignore",
        message=r"Accessing the 'model_fields' attribute on the instance is deprecated",
        module=r"_bentoml_impl\.server\.app",
    )
