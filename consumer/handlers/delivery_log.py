"""The delivery log: one JSON line per delivered notification, kept equal to the
``delivered`` rows of ``deliveries`` across crashes.

A line is written from what the store recorded, after the row is marked delivered, and
then the row is marked logged (``logged_at``). A process killed between the two leaves a
delivered row not marked logged; :meth:`DeliveryLog.catch_up`, run at start-up before any
handler, appends the lines of such rows unless the file already has them (the kill came
after the write, before the mark). So after any crash and restart the file holds each
delivered event once, and only delivered events. A line torn by a crash mid-write (the
file does not end with a newline) is cut off at start-up before anything is appended.

Lines are flushed and fsynced before they are marked logged, and lines that arrive while
a write is under way are written with the next one (one fsync per group).

Each line: ``{"event_id", "channel", "recipient", "subject", "priority", "template",
"accepted_at", "delivered_at"}``; times ISO-8601 UTC; ``template`` is ``null`` for a plain
body; rows delivered before the schema revision 0002 have ``null`` subject and priority.

Rows delivered while the log is off (``CONSUMER_DELIVERY_LOG_PATH`` empty) stay unmarked:
turning it on writes those still kept (``CONSUMER_INBOX_RETENTION``) at the next start-up.

Several consumers sharing one database each write their own file. A consumer starting
while another is between its delivered mark and its line may write that event too, so
dedupe on ``event_id`` when merging the files of several consumers.
"""

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import BinaryIO

from common.batching import Batcher
from consumer.stores.deliveries import DeliveredRecord, DeliveryStore

logger = logging.getLogger(__name__)


def log_line(record: DeliveredRecord) -> str:
    """The JSON line (without its newline) for ``record``."""
    return json.dumps(
        {
            "event_id": record.event_id,
            "channel": record.channel,
            "recipient": record.recipient,
            "subject": record.subject,
            "priority": record.priority,
            "template": record.template,
            "accepted_at": record.accepted_at.isoformat(),
            "delivered_at": record.delivered_at.isoformat(),
        }
    )


class DeliveryLog:
    """Appends delivered notifications to the JSON-lines file ``path``.

    Args:
        path: The log file (created when missing; its directory must exist).
        store: The delivery records the lines come from and are marked in.
    """

    def __init__(self, path: Path, store: DeliveryStore) -> None:
        self._path = path
        self._store = store
        self._unwritten: list[DeliveredRecord] = []  # a failed write's records, retried
        # One write at a time, in arrival order: a group's lines are fsynced before its
        # rows are marked logged, and the next group starts after both.
        self._writer: Batcher[DeliveredRecord, None] = Batcher(self._write, name="delivery-log")

    async def catch_up(self) -> int:
        """Bring the file up to the store: call once at start-up, before :meth:`record`.

        Returns:
            Lines appended (delivered rows whose line a crash had kept out of the file).

        Raises:
            OSError: the file cannot be read, repaired or appended to.
        """
        pending = await self._store.unlogged()
        wanted = {record.event_id for record in pending}
        present = await asyncio.to_thread(self._repair_and_find, wanted)
        missing = [record for record in pending if record.event_id not in present]
        if missing:
            await asyncio.to_thread(self._append, [log_line(record) for record in missing])
            logger.warning(
                "delivery log %s: appended %d line(s) a crash had left out",
                self._path,
                len(missing),
            )
        await self._store.mark_logged(wanted)
        return len(missing)

    async def record(self, record: DeliveredRecord) -> None:
        """Append ``record``'s line and mark it logged; returns once that is done.

        Never raises for the file or the database: a failed write is retried with the
        next record (and, after a restart, by :meth:`catch_up`); a failed mark is
        repaired by :meth:`catch_up`.

        A cancelled handler stops waiting, but its line is still written with its group.
        """
        await self._writer.submit(record)

    async def _write(self, records: list[DeliveredRecord]) -> list[None]:
        try:
            await self._flush(records)
        except Exception:  # never reaches the handlers; catch_up repairs at start-up
            logger.exception("delivery log %s: writing %d line(s) failed", self._path, len(records))
        return [None] * len(records)

    async def _flush(self, records: list[DeliveredRecord]) -> None:
        records = [*self._unwritten, *records]
        try:
            await asyncio.to_thread(self._append, [log_line(record) for record in records])
        except OSError as exc:
            self._unwritten = records
            logger.error(
                "delivery log %s: cannot write %d line(s), retrying with the next: %s",
                self._path,
                len(records),
                exc,
            )
            return
        self._unwritten = []
        try:
            await self._store.mark_logged(record.event_id for record in records)
        except Exception as exc:  # the lines are written: catch_up marks them at start-up
            logger.warning("delivery log: marking %d line(s) failed: %r", len(records), exc)

    def _append(self, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode()
        with self._path.open("ab") as log:
            start = log.tell()
            try:
                log.write(data)
                log.flush()
                os.fsync(log.fileno())
            except OSError:
                log.truncate(start)  # no half-written line for the next append to follow
                raise

    def _repair_and_find(self, wanted: set[str]) -> set[str]:
        """Cut a torn last line; return which of ``wanted`` event ids have a line."""
        if not self._path.exists():
            return set()
        found: set[str] = set()
        with self._path.open("rb+") as log:
            size = log.seek(0, os.SEEK_END)
            if size:
                log.seek(size - 1)
                if log.read(1) != b"\n":
                    end = _after_last_newline(log, size)
                    log.truncate(end)
                    logger.warning(
                        "delivery log %s: cut a torn last line (%d bytes)", self._path, size - end
                    )
            if not wanted:
                return found
            log.seek(0)
            for raw in log:
                try:
                    event_id = json.loads(raw).get("event_id")
                except (ValueError, AttributeError):
                    continue
                if event_id in wanted:
                    found.add(event_id)
        return found


def _after_last_newline(log: BinaryIO, size: int, chunk: int = 65536) -> int:
    """Offset just past the last newline of the file (0 if none), reading backwards."""
    position = size
    while position > 0:
        start = max(0, position - chunk)
        log.seek(start)
        index = log.read(position - start).rfind(b"\n")
        if index >= 0:
            return start + index + 1
        position = start
    return 0
