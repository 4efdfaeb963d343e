"""Request/response nodes: CBS ``put-token`` on ``$cbs`` and ``<entity>/$management``.

Sources: https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide
(claims-based authorization) and
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-request-response
"""

from __future__ import annotations

import uuid
from typing import Any

from proton import Disposition, Endpoint

from emulator import codec
from emulator.codec import AmqpDecodeError
from emulator.errors import EmulatorError
from emulator.management import handle_management_request
from emulator.server.amqp import log, text
from emulator.server.core import HandlerCore
from emulator.server.link_roles import ConnectionState, RequestReceiverLink, connection_state

__all__ = ["RequestResponse"]


class RequestResponse(HandlerCore):
    """Answers a request and sends the reply on the connection's reply link."""

    def _answer_request(
        self, link: Any, role: RequestReceiverLink, delivery: Any, payload: bytes
    ) -> None:
        delivery.update(Disposition.ACCEPTED)
        delivery.settle()
        try:
            request = codec.decode_request(payload)
        except AmqpDecodeError as exc:
            log.info("undecodable request on %s: %s", role.address, exc)
            return
        connection = link.connection
        state = connection_state(connection)
        now = self._clock()
        if role.entity is None:
            body, properties = self._put_token(state, request, now)
        else:
            response = handle_management_request(role.entity, request, now, scope=connection)
            properties = codec.status_properties(
                response.status_code,
                response.description,
                code_key="statusCode",
                description_key="statusDescription",
                condition=response.condition,
            )
            body = response.body
            if response.status_code >= 300:
                log.info(
                    "management %s on %s -> %s %s",
                    request.application_properties.get("operation"),
                    role.address,
                    response.status_code,
                    response.description,
                )
        encoded = codec.encode_response(
            correlation_id=request.message_id, application_properties=properties, body=body
        )

        def reply() -> None:
            reply_link = state.reply_links.get(request.reply_to or "") or state.reply_links.get(
                role.address
            )
            if reply_link is None or reply_link.state & Endpoint.LOCAL_CLOSED:
                log.warning(
                    "no reply link for %r on %s; dropping the response",
                    request.reply_to,
                    role.address,
                )
                return
            out = reply_link.delivery(uuid.uuid4().bytes)
            reply_link.stream(encoded)
            reply_link.advance()
            out.settle()

        if role.entity is None:
            reply()
        else:
            self._after_commit(reply)

    def _put_token(
        self, state: ConnectionState, request: codec.Request, now: float
    ) -> tuple[Any, dict[str, Any]]:
        operation = text(request.application_properties.get("operation"))
        if operation != "put-token":
            code, description = 400, f"Unsupported CBS operation {operation!r}."
        else:
            token = text(request.body) or ""
            audience = text(request.application_properties.get("name")) or ""
            try:
                state.grants.add(self._validator.validate(token, audience, now))
                code, description = 200, "OK"
            except EmulatorError as exc:
                log.info("CBS put-token for %r refused: %s", audience, exc.description)
                code, description = exc.status_code, exc.description
        properties = codec.status_properties(
            code, description, code_key="status-code", description_key="status-description"
        )
        return None, properties
