"""The administration API's operations on the namespace: create, get, update, list and
delete queues, topics, subscriptions and rules, with runtime counts.

Requests and answers follow https://learn.microsoft.com/rest/api/servicebus/ as
``azure-servicebus``'s ``ServiceBusAdministrationClient`` calls it:

=================================================  ===============================
``PUT|GET|DELETE /<queue or topic>``                an entity (``If-Match: *`` on
                                                    ``PUT`` updates, else creates)
``GET /$Resources/queues|topics?$skip&$top``        a page of entities
``PUT|GET|DELETE /<topic>/Subscriptions/<sub>``     a subscription
``GET /<topic>/Subscriptions``                      its subscriptions
``PUT|GET|DELETE <sub path>/Rules/<rule>``          a rule
``GET <sub path>/Rules``                            its rules
``GET /$namespaceinfo``                             the namespace
=================================================  ===============================

Errors answer as Azure does: 404 missing (``ResourceNotFoundError``), 409 exists
(``ResourceExistsError``), 400 invalid (a filter that does not parse says where and why).
Everything here runs on the reactor thread, which owns the namespace and the store.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from pydantic import ValidationError

from emulator.admin import atom
from emulator.admin.records import deleted_definition, stored_definition
from emulator.admin.requests import (
    parse_description,
    parse_queue,
    parse_rule,
    parse_subscription,
    parse_topic,
)
from emulator.config import QueueConfig, TopicConfig
from emulator.entity import Entity
from emulator.errors import ArgumentError, EmulatorError, EntityNotFoundError
from emulator.model import MessageState
from emulator.namespace import EntityExistsError, EntityRecord, Namespace, subscription_path
from emulator.rules import RuleSyntaxError
from emulator.store import SqliteStore

__all__ = ["AdminOperations", "AdminRequest", "AdminResponse"]

_ENTRY = "application/atom+xml;type=entry;charset=utf-8"
_FEED = "application/atom+xml;type=feed;charset=utf-8"
_XML = "application/xml;charset=utf-8"
_SUB = r"(?P<topic>.+?)/subscriptions/(?P<sub>[^/]+)"
_ROUTES = [
    ("rule", re.compile(rf"^{_SUB}/rules/(?P<rule>[^/]+)$", re.IGNORECASE)),
    ("rules", re.compile(rf"^{_SUB}/rules$", re.IGNORECASE)),
    ("subscription", re.compile(rf"^{_SUB}$", re.IGNORECASE)),
    ("subscriptions", re.compile(r"^(?P<topic>.+?)/subscriptions$", re.IGNORECASE)),
    ("resources", re.compile(r"^\$resources/(?P<kind>queues|topics)$", re.IGNORECASE)),
    ("namespace_info", re.compile(r"^\$namespaceinfo$", re.IGNORECASE)),
]
_DEFAULT_TOP = 100


@dataclass(frozen=True, slots=True)
class AdminRequest:
    """One HTTP request.

    Attributes:
        method: ``GET``, ``PUT`` or ``DELETE``.
        path: Percent-decoded path without the leading ``/`` and the query.
        query: Query parameters (``api-version``, ``$skip``, ``$top``).
        body: Request body (ATOM XML for ``PUT``).
        base: ``https://host:port`` as the client addressed us.
        if_match: Whether ``If-Match`` was sent (an update rather than a create).
    """

    method: str
    path: str
    query: Mapping[str, str]
    body: bytes
    base: str
    if_match: bool = False


@dataclass(frozen=True, slots=True)
class AdminResponse:
    """Status code, body and content type of the answer."""

    status: int
    body: str
    content_type: str = _ENTRY


def _counts(entity: Entity | None) -> atom.Counts:
    if entity is None:
        return atom.Counts()
    messages = entity.peek(0, len(entity))
    dead = entity.dead_letter_queue
    dead_messages = dead.peek(0, len(dead)) if dead is not None else []
    scheduled = sum(1 for m in messages if m.state is MessageState.SCHEDULED)
    size = sum(m.content.encoded_size for m in (*messages, *dead_messages))
    # Deferred messages count as active, as in Azure.
    return atom.Counts(len(messages) - scheduled, len(dead_messages), scheduled, size)


def _error_text(exc: ValidationError) -> str:
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    return f"{location}: {first['msg'].removeprefix('Value error, ')}"


class AdminOperations:
    """Answers administration requests against ``namespace``.

    Args:
        namespace: The served namespace.
        store: The durable store (definitions are kept there), or ``None``.
        close_links: Detaches every client link on the given lower-cased entity paths
            (called when entities are deleted).
        clock: Seconds since the epoch.
    """

    def __init__(
        self,
        namespace: Namespace,
        store: SqliteStore | None,
        close_links: Callable[[list[str]], None],
        clock: Callable[[], float],
    ) -> None:
        self._namespace = namespace
        self._store = store
        self._close_links = close_links
        self._clock = clock
        self._started = clock()

    def handle(self, request: AdminRequest) -> AdminResponse:
        """Answer ``request``; never raises for the client's mistakes."""
        try:
            return self._route(request)
        except EmulatorError as exc:
            return self._error(exc.status_code, exc.description)
        except RuleSyntaxError as exc:
            return self._error(400, str(exc))
        except ValidationError as exc:
            return self._error(400, _error_text(exc))

    @staticmethod
    def _error(status: int, detail: str) -> AdminResponse:
        return AdminResponse(status, atom.error(status, detail), _XML)

    def _route(self, request: AdminRequest) -> AdminResponse:
        path = request.path.strip("/")
        for name, pattern in _ROUTES:
            match = pattern.match(path)
            if match is not None:
                answer: AdminResponse = getattr(self, f"_{name}")(request, **match.groupdict())
                return answer
        if not path:
            raise EntityNotFoundError("No entity was named.")
        return self._entity(request, path)

    # --- helpers ------------------------------------------------------------------------------

    def _uri(self, request: AdminRequest, path: str) -> str:
        version = request.query.get("api-version", "2021-05")
        return f"{request.base}/{quote(path, safe='/$')}?api-version={version}"

    def _keep(self, record: EntityRecord) -> None:
        if self._store is not None:
            self._store.definition_changed(stored_definition(self._namespace, record))

    def _entry(self, request: AdminRequest, record: EntityRecord) -> str:
        ns = self._namespace
        config = record.config
        entity = ns.get(record.path.lower())
        if isinstance(config, QueueConfig):
            content = atom.queue_description(
                config, _counts(entity), record.created_at, record.updated_at, request.base
            )
        elif isinstance(config, TopicConfig):
            prefix = record.path.lower() + "/"
            subs = [k for k, r in ns.records.items() if k.startswith(prefix)]
            counts = _counts(entity)
            size = counts.size + sum(_counts(ns.get(k)).size for k in subs)
            content = atom.topic_description(
                config,
                atom.Counts(0, 0, counts.scheduled, size),
                len(subs),
                record.created_at,
                record.updated_at,
            )
        else:
            content = atom.subscription_description(
                config, _counts(entity), record.created_at, record.updated_at, request.base
            )
        title = record.path.rsplit("/", 1)[-1] if record.kind == "subscription" else record.path
        return atom.entry(
            self._uri(request, record.path), title, record.created_at, record.updated_at, content
        )

    def _page(
        self, request: AdminRequest, title: str, items: list[str], path: str
    ) -> AdminResponse:
        try:
            skip = int(request.query.get("$skip", "0"))
            top = int(request.query.get("$top", str(_DEFAULT_TOP)))
        except ValueError:
            raise ArgumentError("$skip and $top must be integers.") from None
        page = items[skip : skip + top]
        version = request.query.get("api-version", "2021-05")
        base = f"{request.base}/{quote(path, safe='/$')}"
        uri = f"{base}?$skip={skip}&$top={top}&api-version={version}"
        following = f"{base}?$skip={skip + top}&$top={top}&api-version={version}"
        more = skip + top < len(items)
        body = atom.feed(uri, title, page, following if more else None, self._clock())
        return AdminResponse(200, body, _FEED)

    def _record(self, path: str, kind: str) -> EntityRecord:
        record = self._namespace.records.get(path.lower())
        if record is None or record.kind != kind:
            raise EntityNotFoundError(f"The messaging entity '{path}' could not be found.")
        return record

    def _delete(self, path: str) -> AdminResponse:
        ns = self._namespace
        key = path.lower()
        if key not in ns.records:
            raise EntityNotFoundError(f"The messaging entity '{path}' could not be found.")
        now = self._clock()
        gone = [r for k, r in ns.records.items() if k == key or k.startswith(key + "/")]
        removed = ns.remove(path)
        if self._store is not None:
            for record in gone:
                self._store.definition_changed(deleted_definition(record, now))
            for entity_key in removed:
                self._store.entity_purged(entity_key)
        self._close_links(removed)
        return AdminResponse(200, "", _XML)

    # --- queues and topics ----------------------------------------------------------------------

    def _entity(self, request: AdminRequest, path: str) -> AdminResponse:
        ns = self._namespace
        if request.method == "GET":
            record = ns.records.get(path.lower())
            if record is None or record.kind == "subscription":
                raise EntityNotFoundError(f"The messaging entity '{path}' could not be found.")
            return AdminResponse(200, self._entry(request, record))
        if request.method == "DELETE":
            return self._delete(path)
        if request.method != "PUT":
            return self._error(405, f"{request.method} is not supported here.")
        element = parse_description(request.body)
        kind = element.tag.rpartition("}")[2]
        now = self._clock()
        if kind == "QueueDescription":
            queue = parse_queue(path, element)
            if request.if_match:
                ns.update_queue(queue, now)
            else:
                ns.add_queue(queue, now)
        elif kind == "TopicDescription":
            topic = parse_topic(path, element)
            if request.if_match:
                ns.update_topic(topic, now)
            else:
                ns.add_topic(topic, now)
        else:
            raise ArgumentError(f"Expected a QueueDescription or TopicDescription, not {kind}.")
        record = ns.records[path.lower()]
        self._keep(record)
        return AdminResponse(200 if request.if_match else 201, self._entry(request, record))

    def _resources(self, request: AdminRequest, kind: str) -> AdminResponse:
        wanted = "queue" if kind.lower() == "queues" else "topic"
        records = sorted(
            (r for r in self._namespace.records.values() if r.kind == wanted),
            key=lambda r: r.path.lower(),
        )
        entries = [self._entry(request, r) for r in records]
        title = "Queues" if wanted == "queue" else "Topics"
        return self._page(request, title, entries, f"$Resources/{title.lower()}")

    def _namespace_info(self, request: AdminRequest) -> AdminResponse:
        info = atom.namespace_info("sbemulatorns", self._started)
        uri = f"{request.base}/$namespaceinfo"
        return AdminResponse(
            200, atom.entry(uri, "sbemulatorns", self._started, self._started, info)
        )

    # --- subscriptions --------------------------------------------------------------------------

    def _subscription(self, request: AdminRequest, topic: str, sub: str) -> AdminResponse:
        ns = self._namespace
        topic_entity = ns.topic(topic)
        path = subscription_path(topic_entity.name, sub)
        if request.method == "GET":
            return AdminResponse(200, self._entry(request, self._record(path, "subscription")))
        if request.method == "DELETE":
            self._record(path, "subscription")
            return self._delete(path)
        if request.method != "PUT":
            return self._error(405, f"{request.method} is not supported here.")
        config, default_rule = parse_subscription(sub, parse_description(request.body))
        now = self._clock()
        if request.if_match:
            ns.update_subscription(topic_entity.name, config, now)
        else:
            rules = None if default_rule is None else [default_rule]
            ns.add_subscription(topic_entity.name, config, now, rules)
        record = ns.records[path.lower()]
        self._keep(record)
        return AdminResponse(200 if request.if_match else 201, self._entry(request, record))

    def _subscriptions(self, request: AdminRequest, topic: str) -> AdminResponse:
        ns = self._namespace
        topic_entity = ns.topic(topic)
        prefix = topic_entity.key + "/"
        records = sorted(
            (r for k, r in ns.records.items() if k.startswith(prefix)),
            key=lambda r: r.path.lower(),
        )
        entries = [self._entry(request, r) for r in records]
        return self._page(request, "Subscriptions", entries, f"{topic_entity.name}/Subscriptions")

    # --- rules ----------------------------------------------------------------------------------

    def _rule_entry(self, request: AdminRequest, record: EntityRecord, name: str) -> str:
        ns = self._namespace
        for rule in ns.rules(record.path):
            if rule.name.lower() == name.lower():
                created = record.rule_created_at.get(rule.name.lower(), record.created_at)
                uri = self._uri(request, f"{record.path}/Rules/{rule.name}")
                content = atom.rule_description(rule, created)
                return atom.entry(uri, rule.name, created, created, content)
        raise EntityNotFoundError(f"The rule '{name}' of '{record.path}' could not be found.")

    def _rule(self, request: AdminRequest, topic: str, sub: str, rule: str) -> AdminResponse:
        ns = self._namespace
        record = self._record(subscription_path(ns.topic(topic).name, sub), "subscription")
        if request.method == "GET":
            return AdminResponse(200, self._rule_entry(request, record, rule))
        rules = list(ns.rules(record.path))
        index = next((i for i, r in enumerate(rules) if r.name.lower() == rule.lower()), None)
        now = self._clock()
        if request.method == "DELETE":
            if index is None:
                raise EntityNotFoundError(
                    f"The rule '{rule}' of '{record.path}' could not be found."
                )
            del rules[index]
            ns.set_rules(record.path, rules, now)
            self._keep(record)
            return AdminResponse(200, "", _XML)
        if request.method != "PUT":
            return self._error(405, f"{request.method} is not supported here.")
        new_rule = parse_rule(rule, parse_description(request.body))
        if request.if_match:
            if index is None:
                raise EntityNotFoundError(
                    f"The rule '{rule}' of '{record.path}' could not be found."
                )
            rules[index] = new_rule
        elif index is not None:
            raise EntityExistsError(f"The rule '{rule}' of '{record.path}' already exists.")
        else:
            rules.append(new_rule)
        ns.set_rules(record.path, rules, now)
        self._keep(record)
        status = 200 if request.if_match else 201
        return AdminResponse(status, self._rule_entry(request, record, rule))

    def _rules(self, request: AdminRequest, topic: str, sub: str) -> AdminResponse:
        ns = self._namespace
        record = self._record(subscription_path(ns.topic(topic).name, sub), "subscription")
        entries = [self._rule_entry(request, record, r.name) for r in ns.rules(record.path)]
        return self._page(request, "Rules", entries, f"{record.path}/Rules")
