"""CBS put-token with SAS tokens.

See https://learn.microsoft.com/azure/service-bus-messaging/service-bus-sas.
"""

from __future__ import annotations

import time

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus._pyamqp.utils import generate_sas_token as _sdk_generate_sas_token
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import ServiceBusAuthenticationError

from emulator.auth import ConnectionGrants, SasValidator
from emulator.errors import UnauthorizedError
from emulator.testing import EmulatorHandle, queue_config, run_emulator
from tests.emulator.conftest import QUEUE, receive_n

AUDIENCE = "sb://127.0.0.1:5672/orders"


def generate_sas_token(audience: str, key_name: str, key: str, expiry: int) -> str:
    """The SDK's own token generator (what the client sends on $cbs)."""
    token: str = _sdk_generate_sas_token(audience, key_name, key, expiry)  # type: ignore[no-untyped-call]
    return token


def _wrong(connection_string: str, field: str, value: str) -> str:
    parts = dict(p.split("=", 1) for p in connection_string.split(";"))
    parts[field] = value
    return ";".join(f"{k}={v}" for k, v in parts.items())


async def test_wrong_key_is_refused_with_an_authentication_error(
    emulator: EmulatorHandle,
) -> None:
    bad = _wrong(emulator.connection_string, "SharedAccessKey", "not-the-key")
    async with ServiceBusClient.from_connection_string(bad, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthenticationError):
            async with client.get_queue_sender(QUEUE) as sender:
                await sender.send_messages(ServiceBusMessage("x"))


async def test_wrong_key_name_is_refused(emulator: EmulatorHandle) -> None:
    bad = _wrong(emulator.connection_string, "SharedAccessKeyName", "Other")
    async with ServiceBusClient.from_connection_string(bad, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthenticationError):
            async with client.get_queue_receiver(QUEUE) as receiver:
                await receiver.receive_messages(max_wait_time=1)


async def test_custom_key_name_and_key_are_honoured() -> None:
    with run_emulator(queue_config("q"), key_name="App", key="s3cret") as emulator:
        assert "SharedAccessKeyName=App;SharedAccessKey=s3cret" in emulator.connection_string
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            async with client.get_queue_sender("q") as sender:
                await sender.send_messages(ServiceBusMessage("authorised"))
            async with client.get_queue_receiver("q") as receiver:
                [message] = await receive_n(receiver, 1)
                assert str(message) == "authorised"
                await receiver.complete_message(message)


def _validator() -> SasValidator:
    return SasValidator("RootManageSharedAccessKey", "SAS_KEY_VALUE")


def test_valid_sdk_token_grants_its_resource_and_below() -> None:
    now = time.time()
    token = generate_sas_token(
        AUDIENCE, "RootManageSharedAccessKey", "SAS_KEY_VALUE", int(now) + 60
    )
    grant = _validator().validate(token, AUDIENCE, now)
    assert grant.covers("orders", now)
    assert grant.covers("orders/$deadletterqueue", now)
    assert not grant.covers("other", now)
    assert not grant.covers("orders", now + 120)  # expired


def test_namespace_token_covers_every_entity() -> None:
    now = time.time()
    token = generate_sas_token(
        "sb://127.0.0.1:5672/", "RootManageSharedAccessKey", "SAS_KEY_VALUE", int(now) + 60
    )
    grant = _validator().validate(token, AUDIENCE, now)
    assert grant.covers("anything", now)


@pytest.mark.parametrize(
    ("token", "audience", "message"),
    [
        ("Bearer abc", AUDIENCE, "not a SharedAccessSignature"),
        (
            generate_sas_token(
                AUDIENCE, "RootManageSharedAccessKey", "wrong", int(time.time()) + 60
            ),
            AUDIENCE,
            "signature is not valid",
        ),
        (
            generate_sas_token(
                AUDIENCE, "RootManageSharedAccessKey", "SAS_KEY_VALUE", int(time.time()) - 1
            ),
            AUDIENCE,
            "expired",
        ),
        (
            generate_sas_token(AUDIENCE, "RootManageSharedAccessKey", "SAS_KEY_VALUE", 4102444800),
            "sb://127.0.0.1:5672/payments",
            "does not cover",
        ),
        (
            generate_sas_token(AUDIENCE, "RootManageSharedAccessKey", "SAS_KEY_VALUE", 4102444800),
            "sb://elsewhere.servicebus.windows.net/orders",
            "host",
        ),
        (
            generate_sas_token(AUDIENCE, "Reader", "SAS_KEY_VALUE", 4102444800),
            AUDIENCE,
            "unknown key name",
        ),
    ],
)
def test_invalid_tokens_are_refused(token: str, audience: str, message: str) -> None:
    with pytest.raises(UnauthorizedError, match=message) as info:
        _validator().validate(token, audience, time.time())
    assert info.value.status_code == 401


def test_links_need_a_covering_token() -> None:
    grants = ConnectionGrants()
    with pytest.raises(UnauthorizedError):
        grants.require("orders", time.time())
    now = time.time()
    token = generate_sas_token(
        AUDIENCE, "RootManageSharedAccessKey", "SAS_KEY_VALUE", int(now) + 60
    )
    grants.add(_validator().validate(token, AUDIENCE, now))
    grants.require("orders", now)
    with pytest.raises(UnauthorizedError):
        grants.require("payments", now)
