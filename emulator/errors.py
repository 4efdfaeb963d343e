"""Errors raised by the emulator core, each carrying the AMQP condition Service Bus uses.

The protocol layer turns them into a ``rejected`` disposition, a link detach, or a
management response with ``statusCode`` + ``errorCondition`` (see
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-request-response).
The SDK maps the condition to an exception type (``MessageLockLostError``,
``MessagingEntityNotFoundError``, ...).
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "EmulatorError",
    "EntityNotFoundError",
    "InvalidOperationError",
    "MessageLockLostError",
    "MessageNotFoundError",
    "MessageSizeExceededError",
    "NotImplementedOperationError",
    "OperationTimeoutError",
    "SessionCannotBeLockedError",
    "SessionLockLostError",
    "UnauthorizedError",
]


class EmulatorError(Exception):
    """Base class. ``condition`` is the AMQP error symbol, ``status_code`` the HTTP-like code
    used in management responses."""

    condition = "amqp:internal-error"
    status_code = 500

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class MessageLockLostError(EmulatorError):
    """The lock token is unknown, expired, or its message was already settled."""

    condition = "com.microsoft:message-lock-lost"
    status_code = 410


class MessageNotFoundError(EmulatorError):
    """No message with the given sequence number is in the required state."""

    condition = "com.microsoft:message-not-found"
    status_code = 404


class EntityNotFoundError(EmulatorError):
    """The addressed queue (or sub-queue / node) does not exist."""

    condition = "amqp:not-found"
    status_code = 404


class UnauthorizedError(EmulatorError):
    """No valid CBS token covers the addressed entity."""

    condition = "amqp:unauthorized-access"
    status_code = 401


class ArgumentError(EmulatorError):
    """A request field is missing or malformed."""

    condition = "com.microsoft:argument-error"
    status_code = 400


class InvalidOperationError(EmulatorError):
    """The operation is not allowed on this entity (e.g. sending to a dead-letter queue)."""

    condition = "amqp:not-allowed"
    status_code = 400


class NotImplementedOperationError(EmulatorError):
    """The emulator does not implement this operation (yet)."""

    condition = "amqp:not-implemented"
    status_code = 501


class SessionLockLostError(EmulatorError):
    """The session lock is unknown, expired, or held by another receiver
    (https://learn.microsoft.com/azure/service-bus-messaging/message-sessions)."""

    condition = "com.microsoft:session-lock-lost"
    status_code = 410


class SessionCannotBeLockedError(EmulatorError):
    """Another receiver holds the requested session's lock."""

    condition = "com.microsoft:session-cannot-be-locked"
    status_code = 410


class OperationTimeoutError(EmulatorError):
    """The operation did not complete in time (e.g. no session became available)."""

    condition = "com.microsoft:timeout"
    status_code = 408


class MessageSizeExceededError(EmulatorError):
    """The message is larger than the queue's maximum message size."""

    condition = "amqp:link:message-size-exceeded"
    status_code = 413
