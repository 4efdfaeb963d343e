"""What `make run` checks in the consumer's delivery log: one line per delivered
notification, no other, and how many carried a template."""

import json
import sqlite3
from collections import Counter
from pathlib import Path


def delivery_log(path: Path) -> list[dict[str, object]]:
    """The consumer's delivery log: one entry per delivered notification."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as log:
        return [json.loads(line) for line in log if line.strip()]


def delivered_rows(consumer_db: Path) -> set[str]:
    """Event ids the consumer recorded as delivered."""
    with sqlite3.connect(consumer_db) as db:
        rows = db.execute("SELECT event_id FROM deliveries WHERE status = 'delivered'")
        return {event_id for (event_id,) in rows}


def by_template(entries: list[dict[str, object]], channel: str) -> str:
    """``"<n> (<template> <n>, ...)"`` for delivered ``channel`` notifications with a
    template."""
    counts = Counter(
        str(e["template"]) for e in entries if e["channel"] == channel and e.get("template")
    )
    detail = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    return f"{sum(counts.values())} ({detail})" if counts else "0"


def check_delivery_log(log: Path, consumer_db: Path) -> str | None:
    """``None`` when the delivery log has one line per delivered row and no other;
    otherwise what is wrong."""
    lines = Counter(str(entry["event_id"]) for entry in delivery_log(log))
    rows = delivered_rows(consumer_db)
    duplicated = sum(1 for n in lines.values() if n > 1)
    missing, extra = len(rows - set(lines)), len(set(lines) - rows)
    if duplicated or missing or extra:
        return (
            f"delivery log disagrees with the delivered rows: {missing} missing, "
            f"{extra} not delivered, {duplicated} duplicated"
        )
    return None
