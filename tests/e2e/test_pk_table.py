"""The primary-key scenario through pyfluss: every column type, NULLs, a composite key with a
bucket key, 4 buckets; 10,000 upserts, an update of a third, a delete of a tenth; then lookups,
prefix lookups, limit scans, list_offsets and the whole changelog (with and without projection)
are compared with a model, before and after a SIGKILL of the node, and with a full ScanKv dump
through `kvtablet scan`."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import fluss
import pytest

import e2e_support as support
from e2e_support import BUCKETS, ROWS, key_of, key_of_row, make_row

PATH = fluss.TablePath(support.DATABASE, support.TABLE)
#: Larger than any bucket: a limit scan with it returns the whole bucket.
WHOLE_BUCKET_LIMIT = 2 * ROWS
PROJECTIONS_BY_NAME = [["k_int", "c_double", "c_text"], ["k_str"]]
PROJECTION_BY_INDEX = [1, 4, 7]  # k_str, c_bool, c_float

Entry = Tuple[int, str, Dict[str, Any]]  # (offset, change type, row)


def write_all(runner, table, rows=None, deletes=None, what="write") -> None:
    """Queues every upsert and delete on one writer, then flushes: acknowledged when it returns."""

    async def write() -> None:
        writer = table.new_upsert().create_writer()
        for row in rows or []:
            writer.upsert(row)
        for key in deletes or []:
            writer.delete({"k_int": key[0], "k_str": key[1]})
        await writer.flush()

    runner.run(write(), f"{what}: {len(rows or [])} upserts, {len(deletes or [])} deletes, flush",
               timeout=support.CALL_TIMEOUT_S * 2)


def read_changelog(runner, table, expected_total: int, projection=None, by_index=False) -> Dict[int, List[Entry]]:
    """Every bucket's changelog from the earliest offset, until `expected_total` records came
    (bounded), then one more poll to see that nothing else comes."""
    def create():
        scan = table.new_scan()
        if projection is not None:
            scan = scan.project(projection) if by_index else scan.project_by_name(projection)
        return scan.create_log_scanner()

    scanner = runner.run(create, f"create_log_scanner (projection {projection})")
    runner.run(
        lambda: scanner.subscribe_buckets({bucket: fluss.EARLIEST_OFFSET for bucket in range(BUCKETS)}),
        "subscribe_buckets",
    )
    per_bucket: Dict[int, List[Entry]] = {bucket: [] for bucket in range(BUCKETS)}
    timestamps: List[int] = []

    def poll(timeout_ms: int) -> int:
        records = runner.run(lambda: scanner.poll(timeout_ms), "LogScanner.poll")
        count = 0
        for bucket, bucket_records in records.items():
            assert bucket.table_id == table.get_table_info().table_id
            for record in bucket_records:
                per_bucket[bucket.bucket_id].append(
                    (record.offset, record.change_type.short_string(), dict(record.row))
                )
                timestamps.append(record.timestamp)
                count += 1
        return count

    def complete() -> None:
        poll(500)
        total = sum(len(entries) for entries in per_bucket.values())
        assert total >= expected_total, f"{total} of {expected_total} changelog records so far"

    support.eventually(complete, "reading the changelog", timeout=support.CONVERGE_TIMEOUT_S * 2)
    extra = poll(1000)
    total = sum(len(entries) for entries in per_bucket.values())
    assert extra == 0 and total == expected_total, f"{total} changelog records, expected {expected_total}"
    assert all(timestamp > 0 for timestamp in timestamps), "a record has no commit timestamp"
    return per_bucket


class Ctx:
    """What the steps share."""

    table: Any = None
    table_id: int = -1
    bucket_of: Dict[Tuple[int, str], int] = {}
    changelog: Dict[int, List[Entry]] = {}
    offsets: Dict[int, int] = {}
    limit_scans: Dict[int, List[Dict[str, Any]]] = {}


def expected_total() -> int:
    return sum(len(phase) for phase in support.expected_changes_by_phase())


LOOKUPERS = 100


def check_lookups(runner, table) -> None:
    expected = support.expected_state()
    # pyfluss 1.0.0 runs the lookups of one Lookuper one at a time (a lock is held across
    # each lookup, which waits for the client's ~100 ms lookup batch), so one Lookuper needs
    # about 1,000 s for 10,000 keys; a pool of them looks the keys up concurrently.
    lookupers = [
        runner.run(lambda: table.new_lookup().create_lookuper(), "create_lookuper")
        for _ in range(LOOKUPERS)
    ]
    lookuper = lookupers[0]
    keys = [key_of(i) for i in range(ROWS)]

    def compare() -> None:
        found = runner.gather(
            lambda item: lookupers[item[0] % LOOKUPERS].lookup(list(item[1])),
            list(enumerate(keys)),
            "lookup",
            chunk=LOOKUPERS * 10,
        )
        wrong = [
            (key, got, expected.get(key))
            for key, got in zip(keys, found)
            if (dict(got) if got is not None else None) != expected.get(key)
        ]
        assert not wrong, f"{len(wrong)} of {len(keys)} lookups differ; first: {wrong[0]}"
        missing = runner.run(lambda: lookuper.lookup([10_000, "s0"]), "lookup of an absent key")
        assert missing is None

    support.eventually(compare, "lookups")


def check_prefix_lookups(runner, table) -> None:
    expected: Dict[int, List[Dict[str, Any]]] = {}
    for row in support.expected_state().values():
        expected.setdefault(row["k_int"], []).append(row)
    prefixes = list(range(-500, 500)) + [500, -501, 2**31 - 1]
    lookuper = runner.run(
        lambda: table.new_lookup().lookup_by(support.BUCKET_KEY).create_lookuper(), "prefix lookuper"
    )

    def compare() -> None:
        found = runner.gather(lambda prefix: lookuper.lookup([prefix]), prefixes, "prefix lookup")
        for prefix, rows in zip(prefixes, found):
            got = support.sort_rows([dict(row) for row in rows])
            want = support.sort_rows(expected.get(prefix, []))
            assert got == want, f"prefix k_int={prefix}: {support.first_difference(got, want)}"

    support.eventually(compare, "prefix lookups")


def limit_scan(runner, table, table_id: int, bucket: int, limit: int) -> List[Dict[str, Any]]:
    def scan():
        bucket_of_table = fluss.TableBucket(table_id, bucket)
        return table.new_scan().limit(limit).create_bucket_batch_scanner(bucket_of_table).to_arrow()

    return runner.run(scan, f"limit scan of bucket {bucket} (limit {limit})").to_pylist()


def check_limit_scans(runner, table, table_id: int) -> Dict[int, List[Dict[str, Any]]]:
    """Every bucket scanned whole: together exactly the model's state, each key once, every
    bucket-key value in one bucket. A small limit gives that many rows of the bucket."""
    expected = support.expected_state()
    scans: Dict[int, List[Dict[str, Any]]] = {}

    def compare() -> None:
        scans.clear()
        for bucket in range(BUCKETS):
            scans[bucket] = limit_scan(runner, table, table_id, bucket, WHOLE_BUCKET_LIMIT)
        seen: Dict[Tuple[int, str], int] = {}
        home_of_bucket_key: Dict[int, int] = {}
        for bucket, rows in scans.items():
            for row in rows:
                key = key_of_row(row)
                assert key not in seen, f"key {key} in buckets {seen[key]} and {bucket}"
                seen[key] = bucket
                assert home_of_bucket_key.setdefault(row["k_int"], bucket) == bucket, (
                    f"bucket key {row['k_int']} in buckets {home_of_bucket_key[row['k_int']]} and {bucket}"
                )
        got = support.sort_rows([row for rows in scans.values() for row in rows])
        want = support.sort_rows(list(expected.values()))
        assert got == want, f"limit scans: {support.first_difference(got, want)}"

    support.eventually(compare, "limit scans")
    assert all(scans[bucket] for bucket in range(BUCKETS)), "a bucket is empty"
    for bucket in range(BUCKETS):
        small = limit_scan(runner, table, table_id, bucket, 7)
        assert len(small) == min(7, len(scans[bucket]))
        assert all(row in scans[bucket] for row in small)
    return scans


def list_offsets(runner, admin, spec) -> Dict[int, int]:
    return runner.run(lambda: admin.list_offsets(PATH, list(range(BUCKETS)), spec), "list_offsets")


@pytest.mark.incremental
class TestPrimaryKeyTable:
    def test_create_database_and_table(self, runner, client):
        admin = client.admin
        runner.run(lambda: admin.create_database(support.DATABASE, ignore_if_exists=True), "create_database")
        runner.run(lambda: admin.create_table(PATH, support.table_descriptor()), "create_table")
        info = runner.run(lambda: admin.get_table_info(PATH), "get_table_info")
        assert info.num_buckets == BUCKETS
        assert info.get_primary_keys() == support.PRIMARY_KEY
        assert info.get_bucket_keys() == support.BUCKET_KEY
        assert info.get_column_names() == support.COLUMN_NAMES
        Ctx.table = runner.run(lambda: client.connection.get_table(PATH), "get_table")
        Ctx.table_id = Ctx.table.get_table_info().table_id
        assert Ctx.table_id == info.table_id
        assert Ctx.table.has_primary_key()

    def test_upsert_ten_thousand_rows(self, runner):
        write_all(runner, Ctx.table, rows=[make_row(i, 0) for i in range(ROWS)], what="upsert")

    def test_update_a_third(self, runner):
        rows = [make_row(i, 1) for i in range(ROWS) if support.is_updated(i)]
        write_all(runner, Ctx.table, rows=rows, what="update")

    def test_delete_a_tenth(self, runner):
        keys = [key_of(i) for i in range(ROWS) if support.is_deleted(i)]
        write_all(runner, Ctx.table, deletes=keys, what="delete")

    def test_lookup_every_key(self, runner):
        check_lookups(runner, Ctx.table)

    def test_prefix_lookup_by_bucket_key(self, runner):
        check_prefix_lookups(runner, Ctx.table)

    def test_limit_scan_every_bucket(self, runner):
        Ctx.limit_scans = check_limit_scans(runner, Ctx.table, Ctx.table_id)

    def test_changelog_from_earliest(self, runner):
        changelog = read_changelog(runner, Ctx.table, expected_total())
        bucket_of: Dict[Tuple[int, str], int] = {}
        for bucket, entries in changelog.items():
            for _offset, _change, row in entries:
                key = key_of_row(row)
                assert bucket_of.setdefault(key, bucket) == bucket, f"key {key} in two buckets"
        assert len(bucket_of) == ROWS, f"{len(bucket_of)} keys in the changelog, expected {ROWS}"
        for key, bucket in bucket_of.items():
            assert bucket_of[(key[0], "s0")] == bucket, f"bucket key {key[0]} split over buckets"
        for bucket, rows in Ctx.limit_scans.items():
            assert all(bucket_of[key_of_row(row)] == bucket for row in rows), "scan and log disagree"
        expected = support.expected_changelog(bucket_of)
        for bucket in range(BUCKETS):
            entries = changelog[bucket]
            offsets = [offset for offset, _, _ in entries]
            assert offsets == list(range(len(entries))), f"bucket {bucket}: offsets not 0..n"
            got = [(change, row) for _, change, row in entries]
            assert got == expected[bucket], f"bucket {bucket}: {support.first_difference(got, expected[bucket])}"
        Ctx.bucket_of = bucket_of
        Ctx.changelog = changelog

    def test_changelog_with_projection(self, runner):
        for columns in PROJECTIONS_BY_NAME:
            changelog = read_changelog(runner, Ctx.table, expected_total(), projection=columns)
            for bucket in range(BUCKETS):
                want = [(o, c, support.project(row, columns)) for o, c, row in Ctx.changelog[bucket]]
                got = changelog[bucket]
                assert got == want, f"projection {columns}, bucket {bucket}: {support.first_difference(got, want)}"
        names = [support.COLUMN_NAMES[index] for index in PROJECTION_BY_INDEX]
        changelog = read_changelog(runner, Ctx.table, expected_total(), projection=PROJECTION_BY_INDEX, by_index=True)
        for bucket in range(BUCKETS):
            want = [(o, c, support.project(row, names)) for o, c, row in Ctx.changelog[bucket]]
            assert changelog[bucket] == want, f"projection {PROJECTION_BY_INDEX}, bucket {bucket}"

    def test_list_offsets(self, runner, client):
        earliest = list_offsets(runner, client.admin, fluss.OffsetSpec.earliest())
        latest = list_offsets(runner, client.admin, fluss.OffsetSpec.latest())
        assert earliest == {bucket: 0 for bucket in range(BUCKETS)}
        assert latest == {bucket: len(Ctx.changelog[bucket]) for bucket in range(BUCKETS)}
        Ctx.offsets = latest

    def test_sigkill_and_restart_change_nothing(self, runner, client, server):
        server.restart()
        client.reconnect()
        Ctx.table = runner.run(lambda: client.connection.get_table(PATH), "get_table after restart")
        assert Ctx.table.get_table_info().table_id == Ctx.table_id
        check_lookups(runner, Ctx.table)
        check_prefix_lookups(runner, Ctx.table)
        scans = check_limit_scans(runner, Ctx.table, Ctx.table_id)
        for bucket in range(BUCKETS):
            assert support.sort_rows(scans[bucket]) == support.sort_rows(Ctx.limit_scans[bucket])
        assert list_offsets(runner, client.admin, fluss.OffsetSpec.latest()) == Ctx.offsets
        changelog = read_changelog(runner, Ctx.table, expected_total())
        for bucket in range(BUCKETS):
            got, want = changelog[bucket], Ctx.changelog[bucket]
            assert got == want, f"bucket {bucket} after restart: {support.first_difference(got, want)}"

    def test_full_scan_kv_dump_matches(self, kvtablet_bin, server):
        expected = support.expected_state()
        for bucket in range(BUCKETS):
            rows = support.run_scan_cli(
                kvtablet_bin, server, support.DATABASE, support.TABLE, bucket, support.CALL_TIMEOUT_S
            )
            got = support.sort_rows(rows)
            assert len({key_of_row(row) for row in rows}) == len(rows), f"bucket {bucket}: a key twice"
            assert got == support.sort_rows(Ctx.limit_scans[bucket]), f"bucket {bucket}: ScanKv != limit scan"
            want = support.sort_rows([row for key, row in expected.items() if Ctx.bucket_of[key] == bucket])
            assert got == want, f"bucket {bucket}: {support.first_difference(got, want)}"
