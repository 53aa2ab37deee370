"""Partitioned primary-key tables through pyfluss: partitions created, listed (whole and by a
partial spec) and dropped; upserts, lookups, prefix lookups, limit scans, list offsets and the
changelog of every partition; a dropped partition's data gone and its buckets refused while
the other partitions keep working; a write to a missing partition refused; partition ids never
reused; and partitions kept across a SIGKILL and restart of the node."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import fluss
import pyarrow as pa
import pytest

import e2e_support as support

DB = "parts"
PATH = fluss.TablePath(DB, "events")
BUCKETS = 2
COLUMNS = [
    ("id", pa.int32()),
    ("sub", pa.string()),
    ("region", pa.string()),
    ("day", pa.string()),
    ("v", pa.string()),
]
PRIMARY_KEY = ["id", "sub", "region", "day"]
PARTITION_KEYS = ["region", "day"]
BUCKET_KEY = ["id"]
PARTITIONS = [("EU", "d1"), ("EU", "d2"), ("US", "d1")]
IDS = 20
SUBS = ["a", "b"]

Partition = Tuple[str, str]
Row = Dict[str, Any]


def spec_of(partition: Partition) -> Dict[str, str]:
    return {"region": partition[0], "day": partition[1]}


def name_of(partition: Partition) -> str:
    return f"{partition[0]}${partition[1]}"


def rows_of(partition: Partition, version: int = 1) -> List[Row]:
    region, day = partition
    return [
        {"id": i, "sub": sub, "region": region, "day": day, "v": f"{region}-{day}-{i}-{sub}-v{version}"}
        for i in range(IDS)
        for sub in SUBS
    ]


def expect_error(runner, call, code: int, what: str) -> "fluss.FlussError":
    with pytest.raises(fluss.FlussError) as caught:
        runner.run(call, what)
    assert caught.value.error_code == code, f"{what}: expected code {code}, got {caught.value}"
    return caught.value


def upsert(runner, table, rows: List[Row], what: str) -> None:
    """Upserts `rows` and waits for every one to be acknowledged (a refused write raises its
    FlussError from its handle)."""

    async def write() -> None:
        writer = table.new_upsert().create_writer()
        handles = [writer.upsert(row) for row in rows]
        await writer.flush()
        for handle in handles:
            await handle.wait()

    runner.run(write(), what, timeout=support.CALL_TIMEOUT_S * 2)


def partition_ids(runner, admin, partial=None) -> Dict[str, int]:
    infos = runner.run(lambda: admin.list_partition_infos(PATH, partial), f"list_partition_infos {partial}")
    return {info.partition_name: info.partition_id for info in infos}


def limit_scan(runner, table, table_id: int, partition_id: int, bucket: int) -> List[Row]:
    def scan():
        table_bucket = fluss.TableBucket.with_partition(table_id, partition_id, bucket)
        return table.new_scan().limit(10 * IDS * len(SUBS)).create_bucket_batch_scanner(table_bucket).to_arrow()

    return runner.run(scan, f"limit scan of partition {partition_id} bucket {bucket}").to_pylist()


def sort_rows(rows: List[Row]) -> List[Row]:
    return sorted(rows, key=lambda row: (row["region"], row["day"], row["id"], row["sub"]))


def check_lookups(runner, table, partition: Partition, expected: List[Row]) -> None:
    lookuper = runner.run(lambda: table.new_lookup().create_lookuper(), "create_lookuper")
    prefix = runner.run(
        lambda: table.new_lookup().lookup_by(PARTITION_KEYS + BUCKET_KEY).create_lookuper(),
        "prefix lookuper",
    )
    by_key = {(row["id"], row["sub"]): row for row in expected}
    region, day = partition

    def compare() -> None:
        for i in range(IDS):
            for sub in SUBS:
                got = runner.run(lambda: lookuper.lookup([i, sub, region, day]), "lookup")
                want = by_key.get((i, sub))
                assert (dict(got) if got is not None else None) == want, f"lookup {(i, sub, partition)}"
            rows = runner.run(lambda: prefix.lookup([region, day, i]), "prefix lookup")
            want = sort_rows([row for row in expected if row["id"] == i])
            assert sort_rows([dict(row) for row in rows]) == want, f"prefix lookup {(region, day, i)}"

    support.eventually(compare, f"lookups in partition {name_of(partition)}")


def read_changelog(runner, table, partition_id: int, expected_total: int) -> List[Tuple[str, Row]]:
    scanner = runner.run(lambda: table.new_scan().create_log_scanner(), "create_log_scanner")
    for bucket in range(BUCKETS):
        runner.run(
            lambda: scanner.subscribe_partition(partition_id, bucket, fluss.EARLIEST_OFFSET),
            "subscribe_partition",
        )
    entries: List[Tuple[str, Row]] = []

    def poll(timeout_ms: int) -> int:
        records = runner.run(lambda: scanner.poll(timeout_ms), "LogScanner.poll")
        count = 0
        for bucket, bucket_records in records.items():
            assert bucket.partition_id == partition_id, bucket
            for record in bucket_records:
                entries.append((record.change_type.short_string(), dict(record.row)))
                count += 1
        return count

    def complete() -> None:
        poll(500)
        assert len(entries) >= expected_total, f"{len(entries)} of {expected_total} records so far"

    support.eventually(complete, f"changelog of partition {partition_id}")
    assert poll(500) == 0 and len(entries) == expected_total, f"{len(entries)} records"
    return entries


class Ctx:
    table: Any = None
    table_id: int = -1
    ids: Dict[str, int] = {}
    dropped_id: int = -1


@pytest.mark.incremental
class TestPartitionedTable:
    def test_create_a_partitioned_table(self, runner, client):
        admin = client.admin
        runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create_database")
        schema = fluss.Schema(pa.schema(COLUMNS), primary_keys=PRIMARY_KEY)
        descriptor = fluss.TableDescriptor(
            schema, partition_keys=PARTITION_KEYS, bucket_count=BUCKETS, bucket_keys=BUCKET_KEY
        )
        runner.run(lambda: admin.create_table(PATH, descriptor), "create_table")
        Ctx.table = runner.run(lambda: client.connection.get_table(PATH), "get_table")
        info = Ctx.table.get_table_info()
        Ctx.table_id = info.table_id
        assert info.is_partitioned() and info.get_partition_keys() == PARTITION_KEYS
        assert partition_ids(runner, admin) == {}

    def test_create_and_list_partitions(self, runner, client):
        admin = client.admin
        for partition in PARTITIONS:
            runner.run(lambda: admin.create_partition(PATH, spec_of(partition)), "create_partition")
        expect_error(runner, lambda: admin.create_partition(PATH, spec_of(PARTITIONS[0])),
                     fluss.ErrorCode.PARTITION_ALREADY_EXISTS, "create an existing partition")
        runner.run(lambda: admin.create_partition(PATH, spec_of(PARTITIONS[0]), True), "create, ignore if exists")
        expect_error(runner, lambda: admin.create_partition(PATH, {"region": "EU"}),
                     fluss.ErrorCode.PARTITION_SPEC_INVALID_EXCEPTION, "a spec without every partition key")
        expect_error(runner, lambda: admin.create_partition(PATH, {"region": "E U", "day": "d"}),
                     fluss.ErrorCode.PARTITION_SPEC_INVALID_EXCEPTION, "an invalid partition value")
        Ctx.ids = partition_ids(runner, admin)
        assert sorted(Ctx.ids) == sorted(name_of(p) for p in PARTITIONS), Ctx.ids
        assert len(set(Ctx.ids.values())) == len(PARTITIONS), "partition ids are distinct"
        assert sorted(partition_ids(runner, admin, {"region": "EU"})) == ["EU$d1", "EU$d2"]
        assert sorted(partition_ids(runner, admin, {"day": "d1"})) == ["EU$d1", "US$d1"]
        assert partition_ids(runner, admin, {"region": "XX"}) == {}

    def test_a_write_to_a_missing_partition_is_never_acknowledged(self, runner, client, server):
        """pyfluss 1.0 looks the partition up by name first (Metadata by partition path); the
        server answers PARTITION_NOT_EXISTS, which the client takes as "not yet" and keeps the
        write pending without sending it: it is never acknowledged, and nothing is created.
        A connection of its own keeps the pending write away from the other steps' flushes."""
        connection = support.connect(runner, server)
        try:
            table = runner.run(lambda: connection.get_table(PATH), "get_table")

            async def write() -> None:
                writer = table.new_upsert().create_writer()
                handle = writer.upsert(rows_of(("XX", "d1"))[0])
                await handle.wait()

            with pytest.raises(AssertionError, match="did not finish"):
                runner.run(write(), "upsert into a missing partition", timeout=3)
            assert sorted(partition_ids(runner, client.admin)) == sorted(Ctx.ids)
        finally:
            try:
                runner.run(lambda: connection.close(), "close the connection", timeout=10)
            except Exception:  # noqa: BLE001 - closing with a pending write may report it
                pass

    def test_upsert_into_every_partition(self, runner):
        rows = [row for partition in PARTITIONS for row in rows_of(partition)]
        upsert(runner, Ctx.table, rows, "upsert into every partition")

    def test_lookup_and_prefix_lookup_in_every_partition(self, runner):
        for partition in PARTITIONS:
            check_lookups(runner, Ctx.table, partition, rows_of(partition))

    def test_limit_scan_every_partition_bucket(self, runner):
        for partition in PARTITIONS:
            partition_id = Ctx.ids[name_of(partition)]
            rows: List[Row] = []
            for bucket in range(BUCKETS):
                rows += limit_scan(runner, Ctx.table, Ctx.table_id, partition_id, bucket)
            assert sort_rows(rows) == sort_rows(rows_of(partition)), name_of(partition)

    def test_changelog_and_offsets_of_a_partition(self, runner, client):
        partition = PARTITIONS[1]
        partition_id = Ctx.ids[name_of(partition)]
        upsert(runner, Ctx.table, rows_of(partition, version=2)[:5], "update five rows")
        expected = len(rows_of(partition)) + 2 * 5
        entries = read_changelog(runner, Ctx.table, partition_id, expected)
        changes = [change for change, _ in entries]
        assert changes.count("+I") == len(rows_of(partition)), changes
        assert changes.count("-U") == 5 and changes.count("+U") == 5, changes
        assert all((row["region"], row["day"]) == partition for _, row in entries)
        latest = runner.run(
            lambda: client.admin.list_partition_offsets(PATH, name_of(partition), list(range(BUCKETS)),
                                                        fluss.OffsetSpec.latest()),
            "list_partition_offsets",
        )
        assert sum(latest.values()) == expected, latest

    def test_drop_a_partition_mid_test(self, runner, client):
        admin = client.admin
        dropped = PARTITIONS[2]
        Ctx.dropped_id = Ctx.ids[name_of(dropped)]
        runner.run(lambda: admin.drop_partition(PATH, spec_of(dropped)), "drop_partition")
        expect_error(runner, lambda: admin.drop_partition(PATH, spec_of(dropped)),
                     fluss.ErrorCode.PARTITION_NOT_EXISTS, "drop a dropped partition")
        runner.run(lambda: admin.drop_partition(PATH, spec_of(dropped), True), "drop, ignore if missing")
        assert sorted(partition_ids(runner, admin)) == ["EU$d1", "EU$d2"]
        # Its buckets are refused: a scan of one, and a changelog subscription.
        with pytest.raises(Exception) as caught:
            limit_scan(runner, Ctx.table, Ctx.table_id, Ctx.dropped_id, 0)
        assert "partition does not exist" in str(caught.value), caught.value
        # The client knows the dropped partition's id already, so it asks its buckets directly;
        # an id no partition ever had is refused by the metadata.
        scanner = runner.run(lambda: Ctx.table.new_scan().create_log_scanner(), "create_log_scanner")
        expect_error(runner, lambda: scanner.subscribe_partition(10**12, 0, fluss.EARLIEST_OFFSET),
                     fluss.ErrorCode.PARTITION_NOT_EXISTS, "subscribe to a partition id never given")
        # A write to it is refused with PARTITION_NOT_EXISTS; its data is gone.
        with pytest.raises(fluss.FlussError) as caught:
            upsert(runner, Ctx.table, rows_of(dropped)[:1], "upsert into a dropped partition")
        assert caught.value.error_code == fluss.ErrorCode.PARTITION_NOT_EXISTS, caught.value
        # A lookup there is refused too (pyfluss reports the bucket's code 36 in its message).
        lookuper = runner.run(lambda: Ctx.table.new_lookup().create_lookuper(), "create_lookuper")
        with pytest.raises(fluss.FlussError) as caught:
            runner.run(lambda: lookuper.lookup([0, "a", *dropped]), "lookup in a dropped partition")
        assert "code=36" in str(caught.value), caught.value
        # The other partitions keep working.
        check_lookups(runner, Ctx.table, PARTITIONS[0], rows_of(PARTITIONS[0]))

    def test_a_partition_created_again_gets_a_new_id_and_no_data(self, runner, client):
        recreated = PARTITIONS[2]
        runner.run(lambda: client.admin.create_partition(PATH, spec_of(recreated)), "create_partition again")
        ids = partition_ids(runner, client.admin)
        new_id = ids[name_of(recreated)]
        assert new_id != Ctx.dropped_id and new_id > max(Ctx.ids.values()), (new_id, Ctx.ids)
        Ctx.ids = ids
        # pyfluss 1.0 keeps the dropped partition's id for its name in its metadata cache (a
        # refusal does not invalidate it): a new connection sees the new id.
        client.reconnect()
        Ctx.table = runner.run(lambda: client.connection.get_table(PATH), "get_table")
        check_lookups(runner, Ctx.table, recreated, [])
        upsert(runner, Ctx.table, rows_of(recreated, version=3)[:4], "upsert into the new partition")
        check_lookups(runner, Ctx.table, recreated, rows_of(recreated, version=3)[:4])

    def test_sigkill_and_restart_keep_the_partitions(self, runner, client, server):
        server.restart()
        client.reconnect()
        Ctx.table = runner.run(lambda: client.connection.get_table(PATH), "get_table after restart")
        assert Ctx.table.get_table_info().table_id == Ctx.table_id
        assert partition_ids(runner, client.admin) == Ctx.ids
        check_lookups(runner, Ctx.table, PARTITIONS[0], rows_of(PARTITIONS[0]))
        check_lookups(runner, Ctx.table, PARTITIONS[2], rows_of(PARTITIONS[2], version=3)[:4])
        upsert(runner, Ctx.table, rows_of(PARTITIONS[0], version=4)[:3], "upsert after restart")
        expected = rows_of(PARTITIONS[0], version=4)[:3] + rows_of(PARTITIONS[0])[3:]
        check_lookups(runner, Ctx.table, PARTITIONS[0], expected)

    def test_full_scan_kv_dump_of_a_partition_matches(self, kvtablet_bin, server):
        partition = PARTITIONS[0]
        expected = rows_of(partition, version=4)[:3] + rows_of(partition)[3:]
        rows: List[Row] = []
        for bucket in range(BUCKETS):
            rows += support.run_scan_cli(
                kvtablet_bin, server, DB, "events", bucket, support.CALL_TIMEOUT_S, partition=name_of(partition)
            )
        assert sort_rows(rows) == sort_rows(expected)


def test_an_automatically_partitioned_table_gets_its_partitions_at_creation(runner, client):
    """`table.auto-partition.*`: partitions of the current day (UTC) and the next one (the
    default `num-precreate` 2) exist as soon as the table does, and take writes."""
    from datetime import datetime, timedelta, timezone

    admin = client.admin
    path = fluss.TablePath(DB, "daily")
    schema = fluss.Schema(pa.schema([("id", pa.int32()), ("day", pa.string()), ("v", pa.string())]),
                          primary_keys=["id", "day"])
    descriptor = fluss.TableDescriptor(
        schema, partition_keys=["day"], bucket_count=1,
        properties={"table.auto-partition.enabled": "true", "table.auto-partition.time-unit": "DAY"},
    )
    before = datetime.now(timezone.utc)
    runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create_database")
    runner.run(lambda: admin.create_table(path, descriptor), "create_table (auto-partitioned)")
    after = datetime.now(timezone.utc)
    infos = runner.run(lambda: admin.list_partition_infos(path), "list_partition_infos")
    names = sorted(info.partition_name for info in infos)
    expected = [
        sorted([day.strftime("%Y%m%d"), (day + timedelta(days=1)).strftime("%Y%m%d")]) for day in (before, after)
    ]
    assert names in expected, names
    table = runner.run(lambda: client.connection.get_table(path), "get_table")
    upsert(runner, table, [{"id": 1, "day": names[0], "v": "x"}], "upsert into an automatic partition")
    lookuper = runner.run(lambda: table.new_lookup().create_lookuper(), "create_lookuper")
    found = runner.run(lambda: lookuper.lookup([1, names[0]]), "lookup")
    assert found is not None and dict(found)["v"] == "x", found
    schema_int = fluss.Schema(pa.schema([("id", pa.int32()), ("day", pa.int32())]), primary_keys=["id", "day"])
    refused = fluss.TableDescriptor(schema_int, partition_keys=["day"], properties={"table.auto-partition.enabled": "true"})
    expect_error(runner, lambda: admin.create_table(fluss.TablePath(DB, "daily_int"), refused),
                 fluss.ErrorCode.INVALID_CONFIG_EXCEPTION, "an automatic partition key that is not a STRING")
