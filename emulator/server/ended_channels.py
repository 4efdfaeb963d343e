"""Ignore frames a client sends on a session it has already ended, as Azure does.

The Python SDK closes a receiver that used its ``$management`` links by ending the session
and then detaching one of those links on it (DETACH after END). proton's engine follows
the AMQP spec to the letter: a frame on a channel with no session is a protocol error
("amqp:not-allowed no such channel"), and the connection is closed. Azure Service Bus
ignores such late frames. proton does this inside its C transport, with no option to
tolerate them, so the emulator filters the bytes between each socket and its transport:
:class:`EndedChannelFilter` drops every session frame on a channel the client has ended, until
the client begins a session on that channel again (OPEN and CLOSE, which belong to the
connection, always pass).

Anything the filter cannot follow (not AMQP, a TLS handshake, a frame header that is
malformed or larger than the maximum frame size) makes it pass all further bytes through
unchanged, so proton's own checks (framing errors, frame size, frames on channels that
were never begun) apply exactly as before.

The same reader notes whether a client sent any byte at all (:func:`client_sent_nothing`):
a port probe's connection is not a framing error worth a warning.
"""

from __future__ import annotations

import struct
import weakref
from typing import Any

from proton.handlers import IOHandler

from emulator.server.amqp import log

__all__ = ["EndedChannelFilter", "EndedChannelIO", "client_sent_nothing"]

_PROTOCOL_HEADER = b"AMQP"
_FRAME_HEADER = struct.Struct(">IBBH")  # size, data offset (4-byte words), type, channel
_AMQP_FRAME = 0
_OPEN = 0x10
_BEGIN = 0x11
_END = 0x17
_CLOSE = 0x18
_CONNECTION_LEVEL = frozenset({_OPEN, _CLOSE})
"""Performatives of the connection, not of a session: valid on any channel, never dropped
(a client that ended its session on channel 0 then closes the connection on channel 0)."""
_PERFORMATIVES = {
    0x10: "open",
    0x12: "attach",
    0x13: "flow",
    0x14: "transfer",
    0x15: "disposition",
    0x16: "detach",
    0x17: "end",
    0x18: "close",
}


class EndedChannelFilter:
    """The bytes a client sends, less its frames on channels it has ended.

    Feed it what the socket delivers, in any chunks; it returns what the AMQP engine should
    see. It holds back at most the start of one frame (its header and performative code),
    and copies nothing unless it drops a frame.

    Args:
        max_frame_size: The largest frame the server accepts (bytes); a frame announcing
            more is left for the engine to refuse.
    """

    def __init__(self, max_frame_size: int) -> None:
        self._max_frame_size = max_frame_size
        self._pending = b""  # the start of a frame, too short to decide on yet
        self._passing = 0  # bytes of the current frame still to pass through
        self._dropping = 0  # bytes of the current frame still to drop
        self._gave_up = False
        self._started = False
        self._ended: set[int] = set()

    @property
    def held(self) -> int:
        """Bytes received but not yet passed on or dropped."""
        return len(self._pending)

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes from the socket; return those to pass to the engine."""
        if self._gave_up:
            return data
        if not self._pending and self._passing >= len(data):  # the middle of a frame
            self._passing -= len(data)
            return data
        buffer = self._pending + data
        self._pending = b""
        view = memoryview(buffer)
        kept: list[memoryview] = []  # the runs of passed bytes between dropped frames
        run = position = 0
        while position < len(buffer):
            if self._gave_up:
                position = len(buffer)
            elif self._passing:
                taken = min(self._passing, len(buffer) - position)
                position += taken
                self._passing -= taken
            elif self._dropping:
                kept.append(view[run:position])
                taken = min(self._dropping, len(buffer) - position)
                position += taken
                self._dropping -= taken
                run = position
            elif not self._classify(view[position:]):
                self._pending = bytes(view[position:])  # wait for the rest of the header
                break
        end = len(buffer) - len(self._pending)
        if not kept and run == 0 and end == len(buffer):
            return buffer
        kept.append(view[run:end])
        return b"".join(kept)

    def _classify(self, frame: memoryview) -> bool:
        """Decide on the frame (or protocol header) ``frame`` starts with: pass it, drop it,
        or give up filtering. ``False`` if more bytes are needed to decide."""
        if not self._started and frame[:4] != _PROTOCOL_HEADER[: len(frame)]:
            self._gave_up = True  # not AMQP (TLS, HTTP, garbage): the engine decides
            return True
        if len(frame) < _FRAME_HEADER.size:
            return False
        self._started = True
        if frame[:4] == _PROTOCOL_HEADER:  # the SASL or AMQP protocol header
            self._passing = _FRAME_HEADER.size
            return True
        size, offset, frame_type, channel = _FRAME_HEADER.unpack_from(frame)
        body = offset * 4
        if size > self._max_frame_size or offset < 2 or not body <= size:
            self._gave_up = True  # malformed or oversized: the engine refuses it
            return True
        if frame_type != _AMQP_FRAME or size == body:  # SASL frames, heartbeats
            self._passing = size
            return True
        code = _performative(frame, body, size)
        if code is None:
            return False
        if channel in self._ended and code != _BEGIN and code not in _CONNECTION_LEVEL:
            log.debug(
                "ignoring %s on channel %d, which the client has ended",
                _PERFORMATIVES.get(code, f"performative 0x{code:x}"),
                channel,
            )
            self._dropping = size
            return True
        if code == _BEGIN:
            self._ended.discard(channel)
        elif code == _END:
            self._ended.add(channel)
        self._passing = size
        return True


def _performative(frame: memoryview, body: int, size: int) -> int | None:
    """The frame's performative code: ``-1`` if it has no numeric descriptor, ``None`` if
    more bytes are needed. ``body`` is where the frame body starts, ``size`` its length."""
    # A described list: 0x00, then the descriptor as smallulong (0x53, code) or ulong
    # (0x80, eight bytes).
    needed = body + 3
    if len(frame) < min(needed, size):
        return None
    if size < needed or frame[body] != 0x00:
        return -1
    if frame[body + 1] == 0x53:
        return int(frame[body + 2])
    if frame[body + 1] != 0x80 or size < body + 10:
        return -1
    if len(frame) < body + 10:
        return None
    return int.from_bytes(frame[body + 2 : body + 10], "big")


def client_sent_nothing(transport: Any) -> bool:
    """Whether no byte has arrived on ``transport``'s socket yet.

    A client that connects and closes without a byte is a port probe or a health check
    (a load balancer's or an orchestrator's TCP check), not a broken AMQP client; proton
    reports it as ``amqp:connection:framing-error No protocol header found``.
    """
    return not getattr(transport, "emulator_heard", False)


class EndedChannelIO(IOHandler):
    """proton's socket I/O with an :class:`EndedChannelFilter` between each client socket
    and its transport.

    Args:
        max_frame_size: The largest frame the server accepts (bytes).
    """

    def __init__(self, max_frame_size: int) -> None:
        super().__init__()
        self._max_frame_size = max_frame_size
        self._filters: weakref.WeakKeyDictionary[Any, EndedChannelFilter] = (
            weakref.WeakKeyDictionary()
        )

    def on_selectable_readable(self, event: Any) -> None:
        """Read what the socket has, as proton's ``IOHandler`` does, through the filter."""
        selectable = event.selectable
        # proton keeps a socket's transport on its selectable; a listening socket has none.
        transport = selectable._transport
        if transport is None:
            return
        frames = self._filters.get(selectable)
        # Room for what the filter holds back too: push() refuses more than capacity().
        room = transport.capacity() - (0 if frames is None else frames.held)
        if room > 0:
            try:
                received = selectable.recv(room)
            except OSError as exc:
                log.info("could not read from a client socket: %s", exc)
                transport.close_tail()
            else:
                if not received:
                    self.on_selectable_error(event)  # end of stream
                else:
                    if frames is None:  # the client's first bytes
                        frames = self._filters[selectable] = EndedChannelFilter(
                            self._max_frame_size
                        )
                        # proton keeps a wrapper's attributes with the C object: read
                        # back by client_sent_nothing when the transport fails.
                        transport.emulator_heard = True
                    passed = frames.feed(received)
                    if passed:
                        transport.push(passed)
        self.update(transport, selectable, selectable._reactor.now)
