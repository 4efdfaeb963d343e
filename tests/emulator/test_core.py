"""Unit tests of the pieces below the protocol layer (no network)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus._pyamqp._decode import decode_payload
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.message import BatchMessage, Header, Message, Properties

from emulator import codec
from emulator.addressing import Node, parse_address
from emulator.config import ConfigError, parse_config
from emulator.dedup import DuplicateDetector
from emulator.durations import INFINITE, format_duration, parse_duration
from emulator.entity import MAX_DELIVERY_COUNT_EXCEEDED, TTL_EXPIRED, Entity, EntitySettings
from emulator.errors import (
    InvalidOperationError,
    MessageLockLostError,
    MessageNotFoundError,
    SessionCannotBeLockedError,
)
from emulator.management import handle_management_request
from emulator.model import MessageState, render_message
from emulator.namespace import Namespace
from emulator.store import SqliteStore
from emulator.testing import combine_configs, queue_config

# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT1M", timedelta(minutes=1)),
        ("P14D", timedelta(days=14)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("P1DT2H3M4.25S", timedelta(days=1, hours=2, minutes=3, seconds=4.25)),
        ("P1W", timedelta(days=7)),
        ("P10675199DT2H48M5.4775807S", INFINITE),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "1M", "PT1X", "P1DT", "PT-1S", "pt1m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["PT1M", "P14D", "PT0.5S", "P1DT2H3M4.25S", "PT0S"])
def test_format_duration_round_trips(text: str) -> None:
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


# --- config ------------------------------------------------------------------------------


def test_defaults_follow_azure() -> None:
    [queue] = parse_config(queue_config("q")).queues
    props = queue.properties
    assert props.max_delivery_count == 10
    assert props.lock_duration == timedelta(minutes=1)
    assert props.time_to_live_is_infinite
    assert props.duplicate_detection_history_time_window == timedelta(minutes=10)
    assert not props.requires_duplicate_detection
    assert not props.requires_session


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (queue_config("q", LockDuration="PT6M"), "LockDuration: must be greater than 0"),
        (queue_config("$bad"), "invalid queue name"),
        (combine_configs(queue_config("a"), queue_config("A")), "duplicate queue name 'A'"),
        (queue_config("q", ForwardTo="other"), "ForwardTo 'other' is not a configured queue"),
        (
            {
                "UserConfig": {
                    "Namespaces": [{"Queues": [{"Name": "T"}], "Topics": [{"Name": "t"}]}]
                }
            },
            "duplicate topic name 't' (also a queue)",
        ),
        ({}, "UserConfig: Field required"),
    ],
)
def test_invalid_config_is_one_line(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_queue_config_helper_accepts_snake_case_and_timedelta() -> None:
    config = queue_config("a", "b", lock_duration=timedelta(seconds=1.5), max_delivery_count=2)
    queues = parse_config(config).queues
    assert [q.name for q in queues] == ["a", "b"]
    assert queues[1].properties.lock_duration == timedelta(seconds=1.5)
    assert queues[1].properties.max_delivery_count == 2


# --- addressing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "node", "path"),
    [
        ("amqps://127.0.0.1:5672/Orders", Node.ENTITY, "orders"),
        ("orders/$DeadLetterQueue", Node.ENTITY, "orders/$deadletterqueue"),
        ("orders/$management", Node.MANAGEMENT, "orders"),
        ("orders/$DeadLetterQueue/$management", Node.MANAGEMENT, "orders/$deadletterqueue"),
        ("$cbs", Node.CBS, ""),
    ],
)
def test_parse_address(address: str, node: Node, path: str) -> None:
    parsed = parse_address(address)
    assert (parsed.node, parsed.entity_path) == (node, path)


@pytest.mark.parametrize("address", ["", "/", "orders/$weird"])
def test_parse_address_rejects(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        parse_address(address)


# --- duplicate detection -----------------------------------------------------------------


def test_duplicate_detector_forgets_after_the_window() -> None:
    detector = DuplicateDetector(window=10)
    detector.record("a", now=100)
    assert detector.is_duplicate("a", now=109.9)
    assert not detector.is_duplicate("a", now=110.1)
    assert len(detector) == 0


# --- codec -------------------------------------------------------------------------------


def _sdk_message(**kwargs: Any) -> bytes:
    return bytes(encode_payload(bytearray(), Message(**kwargs)))


def test_rendered_message_has_explicit_zero_delivery_count_and_annotations() -> None:
    content = codec.decode_message(
        _sdk_message(data=[b"hi"], properties=Properties(message_id="m"))
    )
    entity = Entity("q", EntitySettings(lock_duration=30))
    stored = entity.enqueue(content, now=1000.0)
    assert stored is not None
    locked = entity.lock_next(now=1000.0)
    assert locked is stored
    decoded = decode_payload(memoryview(render_message(stored)))
    assert decoded.header is not None
    assert decoded.header.delivery_count == 0
    annotations = decoded.message_annotations
    assert annotations is not None
    assert annotations[b"x-opt-sequence-number"] == 1
    assert annotations[b"x-opt-enqueued-time"] == 1_000_000
    assert annotations[b"x-opt-locked-until"] == 1_030_000
    assert annotations[b"x-opt-message-state"] == 0
    assert decoded.data == [b"hi"]
    assert decoded.properties is not None
    assert decoded.properties.message_id == b"m"


def test_ttl_sets_header_and_absolute_expiry() -> None:
    payload = _sdk_message(data=[b"x"], header=Header(ttl=5000), properties=Properties())
    entity = Entity("q", EntitySettings(default_ttl=2.0))
    stored = entity.enqueue(codec.decode_message(payload), now=10.0)
    assert stored is not None
    assert stored.ttl == 2.0  # the queue default is shorter
    decoded = decode_payload(memoryview(render_message(stored)))
    assert decoded.header is not None
    assert decoded.header.ttl == 2000
    assert decoded.properties is not None
    assert decoded.properties.absolute_expiry_time == 12_000


def test_batch_is_split_and_plain_data_is_not() -> None:
    inner = [_sdk_message(data=[f"m{i}".encode()]) for i in range(3)]
    batch = bytes(encode_payload(bytearray(), BatchMessage(data=inner)))
    assert [c.body for c in codec.decode_transfer(batch)] == [
        codec.decode_message(m).body for m in inner
    ]
    plain = _sdk_message(data=[b"\x00Sw\xa1\x01x", b"not a message"])
    assert len(codec.decode_transfer(plain)) == 1


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(codec.AmqpDecodeError):
        codec.decode_transfer(b"\x00Su\xa0\xff")
    with pytest.raises(codec.AmqpDecodeError):
        codec.decode_transfer(b"hello")


# --- entity state machine ----------------------------------------------------------------


def _content(body: bytes = b"x", message_id: str | None = None) -> codec.MessageContent:
    return codec.decode_message(
        _sdk_message(data=[body], properties=Properties(message_id=message_id))
    )


def _queue(**settings: Any) -> Entity:
    dead_letter = Entity(
        "q/$DeadLetterQueue", EntitySettings(max_delivery_count=None), is_dead_letter_queue=True
    )
    return Entity("q", EntitySettings(**settings), dead_letter_queue=dead_letter)


def test_lock_expiry_redelivers_then_dead_letters() -> None:
    queue = _queue(lock_duration=1.0, max_delivery_count=2)
    queue.enqueue(_content(), now=0.0)
    first = queue.lock_next(now=0.0)
    assert first is not None
    assert queue.lock_next(now=0.5) is None
    assert queue.next_deadline() == 1.0
    queue.process_due(now=1.0)
    second = queue.lock_next(now=1.0)
    assert second is first
    assert second.delivery_count == 1
    queue.process_due(now=2.0)
    assert len(queue) == 0
    assert queue.dead_letter_queue is not None
    dead = queue.dead_letter_queue.lock_next(now=2.0)
    assert dead is not None
    assert dead.content.application_properties_dict()["DeadLetterReason"] == (
        MAX_DELIVERY_COUNT_EXCEEDED
    )


def test_settling_with_an_expired_or_unknown_lock_is_lock_lost() -> None:
    queue = _queue(lock_duration=1.0)
    queue.enqueue(_content(), now=0.0)
    message = queue.lock_next(now=0.0)
    assert message is not None
    assert message.lock_token is not None
    token = message.lock_token
    with pytest.raises(MessageLockLostError):
        queue.complete(token, now=1.5)  # expired before the timer ran
    assert message.delivery_count == 1
    with pytest.raises(MessageLockLostError):
        queue.complete(uuid.uuid4(), now=1.5)
    with pytest.raises(MessageLockLostError):
        queue.renew_lock(token, now=1.5)


def test_renew_moves_the_deadline() -> None:
    queue = _queue(lock_duration=1.0)
    queue.enqueue(_content(), now=0.0)
    message = queue.lock_next(now=0.0)
    assert message is not None
    assert message.lock_token is not None
    assert queue.renew_lock(message.lock_token, now=0.9) == pytest.approx(1.9)
    queue.process_due(now=1.5)  # the old deadline is stale
    queue.complete(message.lock_token, now=1.8)
    assert len(queue) == 0


def test_release_keeps_count_and_order() -> None:
    queue = _queue()
    for body in (b"a", b"b"):
        queue.enqueue(_content(body), now=0.0)
    first = queue.lock_next(now=0.0)
    assert first is not None
    assert first.lock_token is not None
    queue.release(first.lock_token, now=0.1)
    again = queue.lock_next(now=0.2)
    assert again is first
    assert again.delivery_count == 0


def test_scheduled_messages_activate_in_time_and_can_be_cancelled() -> None:
    queue = _queue()
    kept = queue.schedule(_content(b"kept"), at=5.0, now=0.0)
    dropped = queue.schedule(_content(b"dropped"), at=6.0, now=0.0)
    assert queue.lock_next(now=1.0) is None
    stored = queue.get(kept)
    assert stored is not None
    assert stored.state is MessageState.SCHEDULED
    queue.cancel_scheduled([dropped])
    with pytest.raises(MessageNotFoundError):
        queue.cancel_scheduled([dropped])
    assert queue.next_deadline() == 5.0
    queue.process_due(now=5.0)
    message = queue.lock_next(now=5.0)
    assert message is not None
    assert message.sequence_number == kept
    assert message.enqueued_at == 5.0
    assert queue.next_deadline() == 5.0 + 60.0  # only the new lock remains


def test_duplicate_detection_in_the_entity() -> None:
    queue = _queue(duplicate_detection_window=60.0)
    assert queue.enqueue(_content(message_id="a"), now=0.0) is not None
    assert queue.enqueue(_content(message_id="a"), now=30.0) is None
    assert queue.enqueue(_content(message_id="a"), now=61.0) is not None


def test_peek_is_ordered_and_bounded() -> None:
    queue = _queue()
    for i in range(5):
        queue.enqueue(_content(str(i).encode()), now=0.0)
    assert [m.sequence_number for m in queue.peek(2, 2)] == [2, 3]
    assert queue.peek(6, 10) == []


def test_dead_letter_queue_refuses_sends_and_dead_lettering() -> None:
    queue = _queue()
    assert queue.dead_letter_queue is not None
    with pytest.raises(InvalidOperationError):
        queue.dead_letter_queue.enqueue(_content(), now=0.0)
    queue.enqueue(_content(), now=0.0)
    message = queue.lock_next(now=0.0)
    assert message is not None
    assert message.lock_token is not None
    queue.dead_letter(message.lock_token, 0.0, "r", None)
    dead = queue.dead_letter_queue.lock_next(now=0.0)
    assert dead is not None
    assert dead.lock_token is not None
    with pytest.raises(InvalidOperationError):
        queue.dead_letter_queue.dead_letter(dead.lock_token, 0.0, "again", None)


# --- management operations (below the link layer) ---------------------------------------


def _request(operation: str, body: Any) -> codec.Request:
    return codec.Request(
        message_id=uuid.uuid4(),
        reply_to="q/$management",
        application_properties={"operation": operation, "type": "entity-mgmt"},
        body=body,
    )


@pytest.mark.parametrize(
    ("operation", "body", "status", "condition"),
    [
        ("com.microsoft:no-such-thing", {}, 501, "amqp:not-implemented"),
        ("com.microsoft:add-rule", {}, 501, "amqp:not-implemented"),
        ("com.microsoft:receive-by-sequence-number", {}, 400, "com.microsoft:argument-error"),
        ("com.microsoft:renew-lock", {}, 400, "com.microsoft:argument-error"),
        (
            "com.microsoft:renew-lock",
            {"lock-tokens": ["nope"]},
            400,
            "com.microsoft:argument-error",
        ),
        (
            "com.microsoft:renew-lock",
            {"lock-tokens": [uuid.uuid4()]},
            410,
            "com.microsoft:message-lock-lost",
        ),
        (
            "com.microsoft:update-disposition",
            {"disposition-status": "completed", "lock-tokens": [uuid.uuid4()]},
            410,
            "com.microsoft:message-lock-lost",
        ),
        (
            "com.microsoft:cancel-scheduled-message",
            {"sequence-numbers": [42]},
            404,
            "com.microsoft:message-not-found",
        ),
        ("com.microsoft:schedule-message", {"messages": [{"x": 1}]}, 400, None),
    ],
)
def test_management_errors_carry_status_and_condition(
    operation: str, body: Any, status: int, condition: str | None
) -> None:
    response = handle_management_request(_queue(), _request(operation, body), now=0.0)
    assert response.status_code == status
    assert response.condition is not None
    if condition is not None:
        assert response.condition == condition
    assert response.description


def test_peek_of_an_empty_queue_is_204_and_schedule_returns_numbers() -> None:
    queue = _queue()
    empty = handle_management_request(
        queue,
        _request("com.microsoft:peek-message", {"from-sequence-number": 1, "message-count": 5}),
        now=0.0,
    )
    assert empty.status_code == 204
    encoded = _sdk_message(data=[b"later"])
    scheduled = handle_management_request(
        queue,
        _request(
            "com.microsoft:schedule-message",
            {"messages": [{"message-id": "m", "message": encoded}]},
        ),
        now=0.0,
    )
    assert scheduled.status_code == 200
    assert list(scheduled.body["sequence-numbers"]) == [1]


# --- sessions, expiry and the store (entity level) ---------------------------------------


def _session_content(session_id: str, body: bytes = b"x") -> codec.MessageContent:
    return codec.decode_message(
        _sdk_message(data=[body], properties=Properties(group_id=session_id))
    )


def test_session_lock_orders_messages_and_expires() -> None:
    lost: list[tuple[str, object]] = []
    queue = _queue(lock_duration=1.0, requires_session=True)
    queue.on_session_lost = lambda entity, session, owner: lost.append((session.session_id, owner))
    with pytest.raises(InvalidOperationError, match="SessionId"):
        queue.enqueue(_content(), now=0.0)
    for body, session_id in [(b"a1", "a"), (b"b1", "b"), (b"a2", "a")]:
        queue.enqueue(_session_content(session_id, body), now=0.0)
    owner, scope = object(), object()
    session = queue.accept_session(None, owner, scope, now=0.0)
    assert session is not None
    assert session.session_id == "a"  # the first session with messages
    with pytest.raises(SessionCannotBeLockedError):
        queue.accept_session("a", object(), object(), now=0.5)
    first = queue.lock_next(0.0, session)
    second = queue.lock_next(0.0, session)
    assert first is not None
    assert second is not None
    assert (first.content.body, second.content.body) == (
        _session_content("a", b"a1").body,
        _session_content("a", b"a2").body,
    )
    assert first.locked_until == session.locked_until == 1.0
    queue.process_due(now=1.0)  # the session lock expires
    assert lost == [("a", owner)]
    assert (first.delivery_count, first.is_locked) == (1, False)
    again = queue.accept_session("a", object(), object(), now=1.0)
    assert again is not None
    redelivered = queue.lock_next(1.0, again)
    assert redelivered is first


def test_ttl_expiry_dead_letters_or_drops() -> None:
    dead_lettering = _queue(default_ttl=5.0, dead_lettering_on_expiration=True)
    dropping = _queue(default_ttl=5.0)
    for queue in (dead_lettering, dropping):
        queue.enqueue(_content(), now=0.0)
        assert queue.next_deadline() == 5.0
        queue.process_due(now=5.0)
        assert len(queue) == 0
    assert dead_lettering.dead_letter_queue is not None
    [dead] = dead_lettering.dead_letter_queue.peek(1, 10)
    assert dead.content.application_properties_dict()["DeadLetterReason"] == TTL_EXPIRED
    assert dropping.dead_letter_queue is not None
    assert len(dropping.dead_letter_queue) == 0


def test_store_restores_state_and_counts_lost_locks(tmp_path: Path) -> None:
    config = parse_config(
        combine_configs(
            queue_config("q", MaxDeliveryCount=2), queue_config("s", RequiresSession=True)
        )
    )
    namespace = Namespace(config)
    store = SqliteStore(tmp_path)
    assert store.load(namespace, now=0.0) == 0
    queue = namespace.get("q")
    sessions = namespace.get("s")
    assert queue is not None
    assert sessions is not None
    for body in (b"1", b"2", b"3"):
        queue.enqueue(_content(body), now=0.0)
    locked = queue.lock_next(now=0.0)
    completed = queue.lock_next(now=0.0)
    assert locked is not None
    assert completed is not None
    assert completed.lock_token is not None
    queue.complete(completed.lock_token, now=0.0)
    owner = object()
    session = sessions.accept_session("s1", owner, owner, now=0.0)
    assert session is not None
    sessions.set_session_state("s1", b"state", owner, now=0.0)
    store.commit()
    store.close()  # as if the process had died: the lock is never released

    restored = Namespace(config)
    assert SqliteStore(tmp_path).load(restored, now=10.0) == 2
    queue = restored.get("q")
    assert queue is not None
    assert [m.sequence_number for m in queue.peek(1, 10)] == [1, 3]
    message = queue.get(locked.sequence_number)
    assert message is not None
    assert (message.delivery_count, message.is_locked) == (1, False)
    assert queue.enqueue(_content(b"4"), now=10.0) is not None
    assert [m.sequence_number for m in queue.peek(1, 10)] == [1, 3, 4]
    sessions = restored.get("s")
    assert sessions is not None
    assert sessions.list_sessions(None, 0, 10) == ["s1"]
