"""Durable queues for ``--data-dir``: a write-behind journal in SQLite.

It also keeps the definitions of entities created, changed or deleted through the
administration API (table ``definitions``, applied by :mod:`emulator.admin.records`), and
forgets a deleted entity's messages in the same transaction.

The entities stay in memory (they are the emulator's working state); this store receives
every durable change through :class:`emulator.entity.Journal`, coalesces them, and writes
them in one transaction per reactor iteration (:meth:`SqliteStore.commit`). The protocol
layer only acknowledges what depends on a change (``accepted`` for a send, the echo of a
settlement, a management reply) *after* that commit, as Azure acknowledges a send only once
it is stored (https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement).
So after a crash or ``kill -9`` nothing acknowledged is lost; a message that was locked comes
back available with its delivery count raised by one, as after any lost lock.

Why the standard library's ``sqlite3`` and not SQLAlchemy (used elsewhere in the project):
this is the emulator's private file with six fixed tables, written from one thread; an ORM
or engine adds nothing there but a dependency and per-row overhead on the hot path.

Durability settings: WAL journal with ``synchronous=FULL`` by default: every commit is
fsynced before anything it covers is acknowledged, the closest match to Azure (which acks
after a durable, replicated write). ``synchronous=NORMAL`` (``durability="normal"``) skips
the fsync per commit: still safe against the emulator process being killed (the WAL is in
the OS page cache), but a power loss or kernel crash can lose the last acknowledged
transactions. Commits are batched per reactor iteration either way, so the fsync cost is
paid once per burst, not once per message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from emulator import codec
from emulator.entity import Entity
from emulator.model import MessageState, SessionInfo, StoredMessage
from emulator.namespace import Namespace

__all__ = ["DB_FILE_NAME", "SqliteStore", "StoredDefinition"]

_log = logging.getLogger(__name__)

#: File created in the data directory.
DB_FILE_NAME = "servicebus-emulator.sqlite3"
_SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    entity TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL,
    locked INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    ttl REAL,
    scheduled_at REAL,
    session_id TEXT,
    content BLOB NOT NULL,
    PRIMARY KEY (entity, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sequences (entity TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    entity TEXT NOT NULL,
    session_id TEXT NOT NULL,
    state BLOB,
    updated_at REAL NOT NULL,
    PRIMARY KEY (entity, session_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS definitions (
    path TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    body TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS duplicates (
    entity TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (entity, message_id)
) WITHOUT ROWID;
"""

_DELETE, _UPDATE, _PUT = 0, 1, 2
#: How often expired duplicate-detection history is purged from the file, seconds.
_PURGE_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class StoredDefinition:
    """An entity defined, changed or deleted through the administration API.

    Attributes:
        path: Lower-cased entity path.
        kind: ``"queue"``, ``"topic"`` or ``"subscription"``.
        body: The definition as JSON (see :mod:`emulator.admin.records`), ``None`` once deleted.
        created_at: Seconds since the epoch.
        updated_at: Seconds since the epoch.
    """

    path: str
    kind: str
    body: str | None
    created_at: float
    updated_at: float


def _encode_id(message_id: Hashable) -> str:
    if isinstance(message_id, uuid.UUID):
        return f"u:{message_id}"
    if isinstance(message_id, bytes):
        return f"b:{message_id.hex()}"
    if isinstance(message_id, int):
        return f"i:{message_id}"
    return f"s:{message_id}"


def _decode_id(text: str) -> Hashable:
    kind, _, value = text.partition(":")
    if kind == "u":
        return uuid.UUID(value)
    if kind == "b":
        return bytes.fromhex(value)
    if kind == "i":
        return int(value)
    return value


class SqliteStore:
    """Keeps a namespace's queues in ``<directory>/servicebus-emulator.sqlite3``.

    Args:
        directory: Data directory (created if missing).
        durability: ``"full"`` (fsync every commit, default) or ``"normal"``; see the
            module docstring.

    Raises:
        OSError: the directory cannot be created.
        sqlite3.Error: the file cannot be opened or is not an emulator store.
    """

    def __init__(
        self, directory: str | os.PathLike[str], durability: Literal["full", "normal"] = "full"
    ) -> None:
        self.path = Path(directory) / DB_FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN ... COMMIT in commit()).
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
        elif row[0] != _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"{self.path}: unsupported store version {row[0]}")
        self._messages: dict[tuple[str, int], tuple[int, StoredMessage | None]] = {}
        self._sequences: dict[str, int] = {}
        self._sessions: dict[tuple[str, str], SessionInfo] = {}
        self._duplicates: list[tuple[str, str, float]] = []
        self._windows: dict[str, float] = {}
        self._definitions: dict[str, tuple[str, str | None, float, float]] = {}
        self._purged: list[str] = []
        self._last_purge = time.monotonic()
        self.commits = 0

    # --- loading --------------------------------------------------------------------------

    def load(self, namespace: Namespace, now: float) -> int:
        """Restore every configured entity's messages, sequence counter, session state and
        duplicate-detection history, then journal later changes here.

        Entities in the file but no longer configured are left untouched in the file.

        Returns:
            The number of messages restored.
        """
        db = self._db
        restored = 0
        # Journal from the start: restore() records the delivery count of messages that
        # were locked when the process stopped.
        namespace.attach_journal(self)
        over_limit: list[tuple[Entity, list[StoredMessage]]] = []
        for entity in namespace:
            key = entity.key
            row = db.execute("SELECT next FROM sequences WHERE entity=?", (key,)).fetchone()
            next_sequence = int(row[0]) if row else 1
            messages = [
                self._message(r)
                for r in db.execute(
                    "SELECT seq, state, delivery_count, locked, enqueued_at, ttl, scheduled_at, "
                    "session_id, content FROM messages WHERE entity=? ORDER BY seq",
                    (key,),
                )
            ]
            sessions = [
                SessionInfo(session_id=sid, state=bytes(state), updated_at=updated)
                for sid, state, updated in db.execute(
                    "SELECT session_id, state, updated_at FROM sessions WHERE entity=?", (key,)
                )
                if state is not None
            ]
            window = entity.settings.duplicate_detection_window
            duplicates: list[tuple[Hashable, float]] = []
            if window is not None:
                self._windows[key] = window
                duplicates = [
                    (_decode_id(mid), at)
                    for mid, at in db.execute(
                        "SELECT message_id, seen_at FROM duplicates WHERE entity=? AND seen_at>?",
                        (key, now - window),
                    )
                ]
            if messages:
                next_sequence = max(next_sequence, messages[-1].sequence_number + 1)
            lost = entity.restore(messages, next_sequence, sessions, duplicates, now)
            over_limit.append((entity, lost))
            restored += len(messages)
        for entity, messages in over_limit:
            if messages:
                entity.dead_letter_restored(messages)
        self.commit()
        return restored

    @staticmethod
    def _message(row: tuple[Any, ...]) -> StoredMessage:
        seq, state, count, locked, enqueued_at, ttl, scheduled_at, session_id, content = row
        return StoredMessage(
            sequence_number=int(seq),
            content=codec.decode_message(bytes(content)),
            enqueued_at=float(enqueued_at),
            ttl=None if ttl is None else float(ttl),
            state=MessageState(int(state)),
            delivery_count=int(count),
            scheduled_at=None if scheduled_at is None else float(scheduled_at),
            # A marker for restore(): "was locked when the process stopped".
            lock_token=uuid.UUID(int=0) if locked else None,
            session_id=session_id,
        )

    # --- Journal --------------------------------------------------------------------------

    def message_stored(self, entity: str, message: StoredMessage) -> None:
        """Journal: a new message or new content."""
        self._messages[(entity, message.sequence_number)] = (_PUT, message)

    def message_updated(self, entity: str, message: StoredMessage) -> None:
        """Journal: metadata changed."""
        key = (entity, message.sequence_number)
        previous = self._messages.get(key)
        if previous is None or previous[0] == _UPDATE:
            self._messages[key] = (_UPDATE, message)
        else:  # a pending PUT already writes the latest state; after a DELETE, re-add
            self._messages[key] = (_PUT, message)

    def message_removed(self, entity: str, sequence_number: int) -> None:
        """Journal: the message left the entity."""
        self._messages[(entity, sequence_number)] = (_DELETE, None)

    def sequence_advanced(self, entity: str, next_sequence: int) -> None:
        """Journal: the sequence counter moved."""
        self._sequences[entity] = next_sequence

    def session_changed(self, entity: str, session: SessionInfo) -> None:
        """Journal: session state set or cleared."""
        self._sessions[(entity, session.session_id)] = session

    def duplicate_recorded(self, entity: str, message_id: Hashable, at: float) -> None:
        """Journal: duplicate detection remembered a message id."""
        self._duplicates.append((entity, _encode_id(message_id), at))

    # --- entity definitions (administration API) -----------------------------------------

    def load_definitions(self) -> list[StoredDefinition]:
        """Entities created, updated or deleted at run time, in path order."""
        return [
            StoredDefinition(path, kind, body, created_at, updated_at)
            for path, kind, body, created_at, updated_at in self._db.execute(
                "SELECT path, kind, body, created_at, updated_at FROM definitions ORDER BY path"
            )
        ]

    def definition_changed(self, definition: StoredDefinition) -> None:
        """Keep an entity's definition (``body`` ``None``: the entity was deleted)."""
        self._definitions[definition.path] = (
            definition.kind,
            definition.body,
            definition.created_at,
            definition.updated_at,
        )

    def entity_purged(self, entity: str) -> None:
        """Forget everything kept for the lower-cased entity path ``entity`` (it was deleted):
        its messages, sequence counter, sessions and duplicate-detection history."""
        for key in [k for k in self._messages if k[0] == entity]:
            del self._messages[key]
        self._sequences.pop(entity, None)
        for session_key in [k for k in self._sessions if k[0] == entity]:
            del self._sessions[session_key]
        self._duplicates = [d for d in self._duplicates if d[0] != entity]
        self._windows.pop(entity, None)
        self._purged.append(entity)

    # --- writing --------------------------------------------------------------------------

    @property
    def has_pending(self) -> bool:
        """Whether :meth:`commit` has anything to write."""
        return bool(
            self._messages
            or self._sequences
            or self._sessions
            or self._duplicates
            or self._definitions
            or self._purged
        )

    def commit(self) -> None:
        """Write everything journaled since the last commit in one transaction.

        Raises:
            sqlite3.Error: the write failed (disk full, file removed ...); nothing pending
                is dropped, so a later commit retries it.
        """
        if not self.has_pending:
            self._maybe_purge()
            return
        deletes: list[tuple[str, int]] = []
        puts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        for (entity, seq), (op, message) in self._messages.items():
            if op == _DELETE or message is None:
                deletes.append((entity, seq))
                continue
            meta = (
                int(message.state),
                message.delivery_count,
                1 if message.lock_token is not None else 0,
                message.enqueued_at,
                message.ttl,
                message.scheduled_at,
            )
            if op == _PUT:
                puts.append(
                    (entity, seq, *meta, message.session_id, codec.encode_content(message.content))
                )
            else:
                updates.append((*meta, entity, seq))
        sessions = [
            (entity, sid, info.state, info.updated_at)
            for (entity, sid), info in self._sessions.items()
        ]
        db = self._db
        db.execute("BEGIN")
        try:
            for entity in self._purged:  # first: later changes may belong to a new entity
                for table in ("messages", "sequences", "sessions", "duplicates"):
                    db.execute(f"DELETE FROM {table} WHERE entity=?", (entity,))
            if self._definitions:
                db.executemany(
                    "INSERT OR REPLACE INTO definitions VALUES (?, ?, ?, ?, ?)",
                    [(path, *row) for path, row in self._definitions.items()],
                )
            if deletes:
                db.executemany("DELETE FROM messages WHERE entity=? AND seq=?", deletes)
            if puts:
                db.executemany(
                    "INSERT OR REPLACE INTO messages (entity, seq, state, delivery_count, locked, "
                    "enqueued_at, ttl, scheduled_at, session_id, content) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    puts,
                )
            if updates:
                db.executemany(
                    "UPDATE messages SET state=?, delivery_count=?, locked=?, enqueued_at=?, "
                    "ttl=?, scheduled_at=? WHERE entity=? AND seq=?",
                    updates,
                )
            if self._sequences:
                db.executemany(
                    "INSERT OR REPLACE INTO sequences (entity, next) VALUES (?, ?)",
                    list(self._sequences.items()),
                )
            for entity, sid, state, updated in sessions:
                if state is None:
                    db.execute(
                        "DELETE FROM sessions WHERE entity=? AND session_id=?", (entity, sid)
                    )
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?)",
                        (entity, sid, state, updated),
                    )
            if self._duplicates:
                db.executemany(
                    "INSERT OR REPLACE INTO duplicates VALUES (?, ?, ?)", self._duplicates
                )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self._messages.clear()
        self._sequences.clear()
        self._sessions.clear()
        self._duplicates.clear()
        self._definitions.clear()
        self._purged.clear()
        self.commits += 1
        self._maybe_purge()

    def _maybe_purge(self) -> None:
        if not self._windows or time.monotonic() - self._last_purge < _PURGE_INTERVAL:
            return
        self._last_purge = time.monotonic()
        now = time.time()
        for entity, window in self._windows.items():
            self._db.execute(
                "DELETE FROM duplicates WHERE entity=? AND seen_at<=?", (entity, now - window)
            )

    def close(self) -> None:
        """Commit what is pending (best effort) and close the file."""
        try:
            self.commit()
        except sqlite3.Error:
            _log.exception("could not write the last changes to %s", self.path)
        self._db.close()
