"""Moving a lake's tables from one Iceberg catalog to another by pointer: no data file is rewritten.

Each table of the namespace is registered in the target catalog at the metadata file the source
catalog points to, so both catalogs name the same files. Run it while nothing writes to the
source (a commit landing after its table was copied would be seen by the source only).
Re-running is safe: a table the target already has at the same metadata file is skipped; one it
has at another file (it has moved on since) is left alone and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyiceberg.catalog import Catalog

from catalog.connection import ensure_namespace


@dataclass(frozen=True)
class MovedTable:
    """One table's outcome: ``registered``, ``already`` (same pointer) or ``diverged`` (target moved on)."""

    name: str
    metadata_location: str
    outcome: str


def copy_pointers(source: Catalog, target: Catalog, namespace: str, *, dry_run: bool = False) -> list[MovedTable]:
    """Register every table of ``namespace`` of ``source`` in ``target`` at its current metadata file."""
    if not dry_run:
        ensure_namespace(target, namespace)
    existing = {ident[-1] for ident in target.list_tables(namespace)} if target.namespace_exists(namespace) else set()
    moved: list[MovedTable] = []
    for identifier in sorted(source.list_tables(namespace)):
        name = identifier[-1]
        location = source.load_table(identifier).metadata_location
        if name in existing:
            there = target.load_table((namespace, name)).metadata_location
            moved.append(MovedTable(name, location, "already" if there == location else "diverged"))
            continue
        if not dry_run:
            target.register_table((namespace, name), location)
        moved.append(MovedTable(name, location, "registered"))
    return moved
