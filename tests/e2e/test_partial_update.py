"""Partial updates through pyfluss (`new_upsert().partial_update_by_name(...)`): the columns a
write does not target keep their values, the changelog carries whole rows, and a partial
delete clears its columns or removes the row."""

from __future__ import annotations

from typing import Any, Dict, List

import fluss
import pyarrow as pa
import pytest

import e2e_support as support

DB = "e2e_partial"
PATH = fluss.TablePath(DB, "profiles")
COLUMNS = ["id", "name", "score", "city"]


def descriptor() -> "fluss.TableDescriptor":
    schema = fluss.Schema(
        pa.schema([("id", pa.int32()), ("name", pa.string()), ("score", pa.int64()), ("city", pa.string())]),
        primary_keys=["id"],
    )
    return fluss.TableDescriptor(schema, bucket_count=1)


def upsert(runner, table, rows: List[Dict[str, Any]], columns=None, deletes=(), what="upsert") -> None:
    async def write() -> None:
        builder = table.new_upsert()
        if columns is not None:
            builder = builder.partial_update_by_name(columns)
        writer = builder.create_writer()
        for row in rows:
            writer.upsert(row)
        for key in deletes:
            writer.delete({"id": key})
        await writer.flush()

    runner.run(write(), what)


def lookup_all(runner, table, keys) -> Dict[int, Any]:
    lookuper = runner.run(lambda: table.new_lookup().create_lookuper(), "create_lookuper")
    found = {}
    for key in keys:
        row = runner.run(lambda key=key: lookuper.lookup([key]), f"lookup {key}")
        found[key] = dict(row) if row is not None else None
    return found


def changelog(runner, table, expected_total: int) -> List[tuple]:
    scanner = runner.run(lambda: table.new_scan().create_log_scanner(), "create_log_scanner")
    runner.run(lambda: scanner.subscribe_buckets({0: fluss.EARLIEST_OFFSET}), "subscribe_buckets")
    entries: List[tuple] = []

    def complete() -> None:
        records = runner.run(lambda: scanner.poll(500), "LogScanner.poll")
        for bucket_records in records.values():
            for record in bucket_records:
                entries.append((record.change_type.short_string(), dict(record.row)))
        assert len(entries) >= expected_total, f"{len(entries)} of {expected_total} records so far"

    support.eventually(complete, "reading the changelog")
    assert len(entries) == expected_total, entries
    return entries


def row(id_, name, score, city) -> Dict[str, Any]:
    return {"id": id_, "name": name, "score": score, "city": city}


@pytest.mark.incremental
class TestPartialUpdate:
    table = None

    def test_create_table_and_write_whole_rows(self, runner, client):
        admin = client.admin
        runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create_database")
        runner.run(lambda: admin.create_table(PATH, descriptor()), "create_table")
        TestPartialUpdate.table = runner.run(lambda: client.connection.get_table(PATH), "get_table")
        upsert(runner, self.table, [row(1, "ann", 10, "oslo"), row(2, "bob", 20, "rome")])

    def test_a_partial_update_keeps_the_columns_it_does_not_target(self, runner):
        # 1 and 2 exist; 3 is new, so its untargeted columns are NULL.
        upsert(
            runner,
            self.table,
            [{"id": 1, "score": 11}, {"id": 2, "score": 21}, {"id": 3, "score": 31}],
            columns=["id", "score"],
            what="partial upsert of score",
        )
        upsert(runner, self.table, [{"id": 1, "city": "bergen"}], columns=["id", "city"], what="partial upsert of city")

        def check() -> None:
            assert lookup_all(runner, self.table, [1, 2, 3]) == {
                1: row(1, "ann", 11, "bergen"),
                2: row(2, "bob", 21, "rome"),
                3: row(3, None, 31, None),
            }

        support.eventually(check, "lookups after partial updates")

    def test_a_partial_delete_clears_its_columns_or_removes_a_row_with_nothing_else(self, runner):
        # Row 2 still has name and city: the delete targeting score clears score only.
        # Row 3 has nothing but score: the same delete removes it.
        upsert(runner, self.table, [], columns=["id", "score"], deletes=[2, 3], what="partial deletes")

        def check() -> None:
            assert lookup_all(runner, self.table, [1, 2, 3]) == {
                1: row(1, "ann", 11, "bergen"),
                2: row(2, "bob", None, "rome"),
                3: None,
            }

        support.eventually(check, "lookups after partial deletes")

    def test_the_changelog_carries_whole_rows(self, runner):
        entries = changelog(runner, self.table, 12)
        assert entries == [
            ("+I", row(1, "ann", 10, "oslo")),
            ("+I", row(2, "bob", 20, "rome")),
            ("-U", row(1, "ann", 10, "oslo")),
            ("+U", row(1, "ann", 11, "oslo")),
            ("-U", row(2, "bob", 20, "rome")),
            ("+U", row(2, "bob", 21, "rome")),
            ("+I", row(3, None, 31, None)),
            ("-U", row(1, "ann", 11, "oslo")),
            ("+U", row(1, "ann", 11, "bergen")),
            ("-U", row(2, "bob", 21, "rome")),
            ("+U", row(2, "bob", None, "rome")),
            ("-D", row(3, None, 31, None)),
        ], entries

    def test_target_columns_without_the_key_are_refused_by_the_client(self, runner):
        # pyfluss refuses these target columns itself (illegal argument, -2) before sending;
        # the server's own INVALID_TARGET_COLUMN for them is tested in
        # prod/tests/gateway_changelog.rs.
        with pytest.raises(fluss.FlussError) as caught:
            upsert(runner, self.table, [{"id": 4, "score": 1}], columns=["score"], what="no key column")
        assert caught.value.error_code == -2, caught.value
        assert "primary key" in str(caught.value), caught.value
        assert lookup_all(runner, self.table, [4]) == {4: None}
