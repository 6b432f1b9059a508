"""Carry every row of one database into another: SQLite to PostgreSQL when the company grows.

The target is migrated to the same schema first and must be empty. Tables are copied parents first,
ids kept (so `#12` stays task 12 and every reference holds); a reference to a row not copied yet (a
department's head, a person's supervisor, a subtask's parent) is written empty and filled in once
every table is there. Everything goes in one transaction on the target: a copy that fails leaves it
empty. On PostgreSQL each id sequence then continues after the largest copied id. The installation id
comes along with the rest, so the platforms' idempotency keys of messages already sent still match.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, text, update

from collabbot.storage.db import Database
from collabbot.storage.migrate import upgrade_or_explain
from collabbot.storage.models import Base

BATCH = 1000


class TargetNotEmpty(Exception):
    """The target already holds rows: copying into it would mix two deployments."""


def copy_database(source: Database, target: Database, progress: Callable[[str, int], None] | None = None
                  ) -> dict[str, int]:
    """Copy every table of `source` into the empty `target`; rows copied per table."""
    upgrade_or_explain(source.engine)
    upgrade_or_explain(target.engine)
    tables = list(Base.metadata.sorted_tables)
    counts: dict[str, int] = {}
    with source.engine.connect() as src, target.engine.begin() as dst:
        for table in tables:
            if dst.execute(select(func.count()).select_from(table)).scalar():
                raise TargetNotEmpty(f"the target already holds rows in {table.name}: copy into an empty database")
        copied: set[str] = set()
        later: list[tuple[Table, list[str], list[dict[str, Any]]]] = []
        for table in tables:
            # references to rows not there yet: written empty now, filled in at the end
            pending = sorted({fk.parent.name for fk in table.foreign_keys
                              if fk.column.table.name not in copied or fk.column.table is table})
            key = [c.name for c in table.primary_key.columns]
            fills: list[dict[str, Any]] = []
            n = 0
            result = src.execution_options(yield_per=BATCH).execute(select(table).order_by(*table.primary_key.columns))
            for chunk in result.partitions():
                rows = [dict(row._mapping) for row in chunk]
                if pending:
                    fills += [{**{f"k_{k}": r[k] for k in key}, **{f"v_{c}": r[c] for c in pending}}
                              for r in rows if any(r[c] is not None for c in pending)]
                    rows = [{**r, **dict.fromkeys(pending)} for r in rows]
                dst.execute(insert(table), rows)
                n += len(rows)
            if fills:
                later.append((table, pending, fills))
            copied.add(table.name)
            counts[table.name] = n
            if progress is not None:
                progress(table.name, n)
        for table, columns, fills in later:
            where = [table.c[k] == bindparam(f"k_{k}") for k in (c.name for c in table.primary_key.columns)]
            stmt = update(table).where(*where).values({c: bindparam(f"v_{c}") for c in columns})
            for start in range(0, len(fills), BATCH):
                dst.execute(stmt.execution_options(synchronize_session=False), fills[start:start + BATCH])
        if dst.dialect.name == "postgresql":  # new rows continue after the copied ids
            for table in tables:
                if "id" in table.c and table.c.id.autoincrement in (True, "auto") and counts.get(table.name):
                    dst.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                     f"(SELECT max(id) FROM {table.name}))"))
    return counts
