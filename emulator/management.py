"""Request/response operations on ``<entity>/$management``.

Implements the operations of
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-request-response
for queues, subscriptions and (scheduling) topics: ``renew-lock``, ``peek-message``,
``schedule-message``, ``cancel-scheduled-message``, ``receive-by-sequence-number``,
``update-disposition``, ``renew-session-lock``, ``get-session-state``, ``set-session-state`` and
``get-message-sessions``. A request carries ``operation`` (``com.microsoft:<name>``) as an
application property and a map body with string keys; the response carries ``statusCode``
(int), ``statusDescription``, ``errorCondition`` on failure, and a map body. Other
operations (rule management, transactions) answer 501 ``amqp:not-implemented``, never an
empty success.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proton import Array

from emulator import codec
from emulator.codec import AmqpDecodeError, Request
from emulator.entity import Entity
from emulator.errors import (
    ArgumentError,
    EmulatorError,
    MessageLockLostError,
    MessageSizeExceededError,
    NotImplementedOperationError,
    SessionLockLostError,
)
from emulator.model import SessionInfo, render_message

__all__ = ["ManagementResponse", "handle_management_request"]

_VENDOR = "com.microsoft:"
#: ``DateTime.MaxValue`` sent as ``last-updated-time`` means "all sessions" (the SDK sends
#: 253402300800000; anything from the last millisecond of year 9999 on counts).
_MAX_DATETIME_MS = 253402300799999
#: ``receiver-settle-mode`` 0 = settled on delivery, i.e. RECEIVE_AND_DELETE.
_SETTLE_ON_RECEIVE = 0


@dataclass(frozen=True, slots=True)
class ManagementResponse:
    """Outcome of one request.

    Attributes:
        status_code: 200 OK, 204 no content, 4xx/5xx errors.
        description: ``statusDescription``.
        body: Map body (``str`` keys), empty for operations without a result.
        condition: ``errorCondition`` symbol on errors (also set on some 204s).
    """

    status_code: int
    description: str
    body: dict[str, Any] = field(default_factory=dict)
    condition: str | None = None


@dataclass(frozen=True, slots=True)
class _Call:
    entity: Entity
    body: Mapping[str, Any]
    now: float
    scope: object


def _require(body: Mapping[str, Any], key: str) -> Any:
    if key not in body or body[key] is None:
        raise ArgumentError(f"the request body lacks '{key}'")
    return body[key]


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _lock_tokens(body: Mapping[str, Any]) -> list[uuid.UUID]:
    tokens = []
    for value in _as_list(_require(body, "lock-tokens")):
        if isinstance(value, uuid.UUID):
            tokens.append(value)
        elif isinstance(value, (bytes, bytearray)) and len(value) == 16:
            tokens.append(uuid.UUID(bytes=bytes(value)))
        elif isinstance(value, str):
            try:
                tokens.append(uuid.UUID(value))
            except ValueError:
                raise ArgumentError(f"invalid lock token {value!r}") from None
        else:
            raise ArgumentError(f"invalid lock token {value!r}")
    return tokens


def _session(call: _Call) -> SessionInfo | None:
    """The session named by ``session-id``, checked to be locked on the caller's connection."""
    session_id = _string(call.body.get("session-id"))
    if not session_id:
        return None
    return call.entity.require_session(session_id, call.scope, call.now)


def _session_lock_lost(error: MessageLockLostError, session: SessionInfo | None) -> EmulatorError:
    # For a session receiver a lost message lock means the session lock was lost.
    return SessionLockLostError(error.description) if session is not None else error


def _renew_lock(call: _Call) -> ManagementResponse:
    expirations = [call.entity.renew_lock(token, call.now) for token in _lock_tokens(call.body)]
    return ManagementResponse(
        200,
        "OK",
        {"expirations": codec.timestamp_array([round(e * 1000) for e in expirations])},
    )


def _peek(call: _Call) -> ManagementResponse:
    start = int(_require(call.body, "from-sequence-number"))
    count = int(_require(call.body, "message-count"))
    session_id = _string(call.body.get("session-id")) or None
    messages = call.entity.peek(start, count, session_id)
    if not messages:
        return ManagementResponse(204, "No messages")
    return ManagementResponse(
        200, "OK", {"messages": [{"message": render_message(m)} for m in messages]}
    )


def _schedule(call: _Call) -> ManagementResponse:
    contents = []
    limit = call.entity.settings.max_message_size
    for item in _as_list(_require(call.body, "messages")):
        if not isinstance(item, Mapping) or not isinstance(item.get("message"), (bytes, bytearray)):
            raise ArgumentError("each scheduled message needs a binary 'message'")
        encoded = bytes(item["message"])
        if len(encoded) > limit:
            raise MessageSizeExceededError(
                f"The message size {len(encoded)} exceeds the limit of {limit} bytes."
            )
        try:
            contents.append(codec.decode_message(encoded))
        except AmqpDecodeError as exc:
            raise ArgumentError(str(exc)) from None
    for content in contents:
        call.entity.check_sendable(content)
    numbers = []
    for content in contents:
        at_ms = content.scheduled_enqueue_time_ms
        at = at_ms / 1000.0 if at_ms is not None else call.now
        numbers.append(call.entity.schedule(content, at, call.now))
    return ManagementResponse(200, "OK", {"sequence-numbers": codec.long_array(numbers)})


def _cancel_scheduled(call: _Call) -> ManagementResponse:
    numbers = [int(n) for n in _as_list(_require(call.body, "sequence-numbers"))]
    call.entity.cancel_scheduled(numbers)
    return ManagementResponse(200, "OK")


def _receive_by_sequence_number(call: _Call) -> ManagementResponse:
    numbers = [int(n) for n in _as_list(_require(call.body, "sequence-numbers"))]
    mode = call.body.get("receiver-settle-mode")
    receive_and_delete = mode is not None and int(mode) == _SETTLE_ON_RECEIVE
    session = _session(call)
    messages = call.entity.receive_deferred(
        numbers, call.now, session=session, receive_and_delete=receive_and_delete
    )
    items = []
    for message in messages:
        item: dict[str, Any] = {"message": render_message(message)}
        if message.lock_token is not None:
            item["lock-token"] = message.lock_token
        items.append(item)
    return ManagementResponse(200, "OK", {"messages": items})


def _update_disposition(call: _Call) -> ManagementResponse:
    body = call.body
    status = _string(_require(body, "disposition-status"))
    tokens = _lock_tokens(body)
    modify = body.get("properties-to-modify")
    props = {str(k): v for k, v in modify.items()} if isinstance(modify, Mapping) else None
    session = _session(call)
    entity, now = call.entity, call.now
    for token in tokens:
        if session is not None and entity.lock_token_session(token) != session.session_id:
            raise SessionLockLostError(
                f"the lock {token} is not held under session {session.session_id!r}"
            )
        try:
            if status == "completed":
                entity.complete(token, now)
            elif status == "abandoned":
                entity.abandon(token, now, props)
            elif status == "suspended":
                entity.dead_letter(
                    token,
                    now,
                    _string(body.get("deadletter-reason")),
                    _string(body.get("deadletter-description")),
                    props,
                )
            elif status in ("defered", "deferred"):
                entity.defer(token, now, props)
            else:
                raise ArgumentError(f"unknown disposition-status {status!r}")
        except MessageLockLostError as exc:
            raise _session_lock_lost(exc, session) from None
    return ManagementResponse(200, "OK")


def _required_session_id(call: _Call) -> str:
    session_id = _string(_require(call.body, "session-id"))
    if not session_id:
        raise ArgumentError("the request body lacks 'session-id'")
    return session_id


def _renew_session_lock(call: _Call) -> ManagementResponse:
    until = call.entity.renew_session_lock(_required_session_id(call), call.scope, call.now)
    return ManagementResponse(200, "OK", {"expiration": codec.timestamp_ms(round(until * 1000))})


def _get_session_state(call: _Call) -> ManagementResponse:
    state = call.entity.get_session_state(_required_session_id(call), call.scope, call.now)
    return ManagementResponse(200, "OK", {"session-state": state})


def _set_session_state(call: _Call) -> ManagementResponse:
    session_id = _required_session_id(call)
    value = call.body.get("session-state")
    if value is not None and not isinstance(value, (bytes, bytearray)):
        raise ArgumentError("'session-state' must be binary")
    state = bytes(value) if value is not None else None
    call.entity.set_session_state(session_id, state, call.scope, call.now)
    return ManagementResponse(200, "OK")


def _get_message_sessions(call: _Call) -> ManagementResponse:
    raw_time = call.body.get("last-updated-time")
    since_ms = int(raw_time) if raw_time is not None else _MAX_DATETIME_MS
    since = None if since_ms >= _MAX_DATETIME_MS else since_ms / 1000.0
    skip = int(call.body.get("skip") or 0)
    raw_top = call.body.get("top")
    top = int(raw_top) if raw_top is not None else 100
    ids = call.entity.list_sessions(since, skip, top)
    if not ids:
        return ManagementResponse(204, "No sessions", condition="com.microsoft:session-not-found")
    return ManagementResponse(200, "OK", {"skip": skip + len(ids), "sessions-ids": ids})


_Operation = Callable[[_Call], ManagementResponse]

_OPERATIONS: dict[str, _Operation] = {
    "renew-lock": _renew_lock,
    "peek-message": _peek,
    "schedule-message": _schedule,
    "cancel-scheduled-message": _cancel_scheduled,
    "receive-by-sequence-number": _receive_by_sequence_number,
    "update-disposition": _update_disposition,
    "renew-session-lock": _renew_session_lock,
    "get-session-state": _get_session_state,
    "set-session-state": _set_session_state,
    "get-message-sessions": _get_message_sessions,
}


def handle_management_request(
    entity: Entity, request: Request, now: float, scope: object = None
) -> ManagementResponse:
    """Run one management request against ``entity`` at time ``now`` (seconds since epoch).

    Args:
        entity: The queue or dead-letter queue addressed.
        request: The decoded request.
        now: Current time.
        scope: The caller's connection; session operations need the session to be locked by
            a receiver on the same connection.

    Never raises for a bad request: errors become 4xx/5xx responses with ``errorCondition``
    (e.g. ``com.microsoft:message-lock-lost``, which the SDK raises as
    ``MessageLockLostError``).
    """
    operation = _string(request.application_properties.get("operation")) or ""
    name = operation.removeprefix(_VENDOR)
    try:
        handler = _OPERATIONS.get(name)
        if handler is None:
            raise NotImplementedOperationError(
                f"The operation '{operation}' is not supported by the emulator."
            )
        body = request.body if isinstance(request.body, Mapping) else {}
        return handler(_Call(entity, {str(k): v for k, v in body.items()}, now, scope))
    except EmulatorError as exc:
        return ManagementResponse(exc.status_code, exc.description, condition=exc.condition)
    except (TypeError, ValueError, OverflowError) as exc:
        return ManagementResponse(400, f"Bad request: {exc}", condition=ArgumentError.condition)
