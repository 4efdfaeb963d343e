"""One long-lived ``ServiceBusClient`` per process, built from settings.

Two ways to reach a namespace (see
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-authentication-and-authorization):

* a connection string with a shared access key -- the local emulator, or SAS where a
  namespace still allows local auth;
* a fully qualified namespace (``<name>.servicebus.windows.net``) with
  ``DefaultAzureCredential`` -- managed identity in Azure, developer sign-in elsewhere.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Self

from azure.identity.aio import DefaultAzureCredential
from azure.servicebus.aio import ServiceBusClient
from pydantic import BaseModel, SecretStr, model_validator


class ServiceBusConnection(BaseModel):
    """How to reach Service Bus; exactly one of the two fields must be set.

    Attributes:
        servicebus_connection_string: ``Endpoint=sb://...;SharedAccessKeyName=...;
            SharedAccessKey=...`` (add ``;UseDevelopmentEmulator=true`` for the emulator).
        servicebus_fully_qualified_namespace: e.g. ``mybus.servicebus.windows.net``; the
            process authenticates with ``DefaultAzureCredential`` (set ``AZURE_CLIENT_ID``
            to pick a user-assigned managed identity).
    """

    servicebus_connection_string: SecretStr | None = None
    servicebus_fully_qualified_namespace: str | None = None

    @model_validator(mode="after")
    def _exactly_one_way(self) -> Self:
        given = [
            self.servicebus_connection_string is not None,
            self.servicebus_fully_qualified_namespace is not None,
        ]
        if sum(given) != 1:
            raise ValueError(
                "set exactly one of servicebus_connection_string or "
                "servicebus_fully_qualified_namespace"
            )
        return self


@asynccontextmanager
async def open_servicebus_client(
    connection: ServiceBusConnection, *, retry_total: int = 3
) -> AsyncIterator[ServiceBusClient]:
    """Open the process's ``ServiceBusClient`` and close it (and its credential) on exit.

    Args:
        connection: Where and how to connect.
        retry_total: The SDK's own retry count for retryable errors on each operation.

    Yields:
        The client; create senders and receivers from it and reuse them.
    """
    if connection.servicebus_connection_string is not None:
        client = ServiceBusClient.from_connection_string(
            connection.servicebus_connection_string.get_secret_value(), retry_total=retry_total
        )
        async with client:
            yield client
        return
    assert connection.servicebus_fully_qualified_namespace is not None
    async with (
        DefaultAzureCredential() as credential,
        ServiceBusClient(
            connection.servicebus_fully_qualified_namespace,
            credential,
            retry_total=retry_total,
        ) as client,
    ):
        yield client


AZURE_SUFFIXES = (
    ".servicebus.windows.net",
    ".servicebus.usgovcloudapi.net",
    ".servicebus.chinacloudapi.cn",
)
"""Namespace host suffixes of the Azure clouds; any other host is taken for an emulator."""


def how_to_create_queue(fully_qualified_namespace: str, queue: str) -> str:
    """How to create ``queue`` in the namespace a client points at, as one phrase.

    For the error line of a process whose queue does not exist (attaching a link to a
    missing entity fails with ``amqp:not-found``, which the SDK raises as
    ``MessagingEntityNotFoundError``; see
    https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-exceptions-latest).

    Args:
        fully_qualified_namespace: ``ServiceBusClient.fully_qualified_namespace``, e.g.
            ``mybus.servicebus.windows.net`` or ``127.0.0.1:41327`` for the emulator.
        queue: The missing queue's name.

    Returns:
        For Azure, the ``az servicebus queue create`` command; for any other host, the
        entry to add to the emulator's ``--config`` file.
    """
    host = fully_qualified_namespace.split(":", 1)[0].lower()
    if host.endswith(AZURE_SUFFIXES):
        namespace = host.split(".", 1)[0]
        return (
            f"create it with `az servicebus queue create --resource-group <group> "
            f"--namespace-name {namespace} --name {queue}`"
        )
    return (
        f'add {{"Name": "{queue}"}} to "Queues" in the emulator\'s --config file '
        f"(config/servicebus.json) and restart it"
    )
