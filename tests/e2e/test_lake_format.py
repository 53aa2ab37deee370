"""Tables with `table.datalake.format` (paimon, iceberg) and lake tiering off: pyfluss encodes
their keys and picks their buckets as the lake would (Paimon's BinaryRow and bucket function,
Iceberg's single-value form and bucket transform), and kvtablet must take those keys, check
them against the rows, and serve them by lookup, prefix lookup, limit scan, the changelog and
`kvtablet scan`. Keys of several types, one table per lake and key type, plus a composite key
with a one-column bucket key (version 2 then compacts the primary key, so prefix lookups work).

`table.kv.format=INDEXED` is accepted and kept, but pyfluss 1.0.0 cannot write or read such
values (its row encoder is a `todo!()`, its decoder refuses INDEXED), so INDEXED tables are
covered by kvtablet's own client in `prod/tests/wire_table_encodings.rs`."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Callable, Dict, List, Tuple

import fluss
import pyarrow as pa
import pytest

import e2e_support as support

DB = "e2e_lake"
BUCKETS = 3
ROWS = 24
LAKES = ["paimon", "iceberg"]

#: Key types both lakes encode (Iceberg has no BOOLEAN, TINYINT, SMALLINT or TIMESTAMP_LTZ
#: key), with a value per row index.
KEY_TYPES: Dict[str, Tuple[pa.DataType, Callable[[int], Any]]] = {
    "int": (pa.int32(), lambda i: i * 1_000_003 - 12_000_000),
    "bigint": (pa.int64(), lambda i: (i - 12) * 10 ** 15 + i),
    "string": (pa.string(), lambda i: f"key-{i}-" + "é" * (i % 12)),
    # Not empty: an empty bucket key has no bucket (the client refuses it).
    "bytes": (pa.binary(), lambda i: bytes([i, 0x80, 0xff]) * (i % 4 + 1)),
    "date": (pa.date32(), lambda i: dt.date(1970, 1, 1) + dt.timedelta(days=i * 997 - 9000)),
    "decimal": (pa.decimal128(12, 3), lambda i: Decimal(i * 7919 - 50_000).scaleb(-3)),
    "wide_decimal": (pa.decimal128(30, 0), lambda i: Decimal(10 ** 28 * (1 if i % 2 else -1) + i)),
    "timestamp": (pa.timestamp("us"), lambda i: dt.datetime(1999, 12, 31, 23, 59, 59, i * 40_000) + dt.timedelta(days=i)),
}
#: Paimon also encodes these.
PAIMON_ONLY: Dict[str, Tuple[pa.DataType, Callable[[int], Any]]] = {
    "smallint": (pa.int16(), lambda i: i * 1000 - 12_000),
    "boolean": (pa.bool_(), lambda i: i % 2 == 0),
    "ltz": (pa.timestamp("us", tz="UTC"), lambda i: dt.datetime(2024, 1, 1, 0, 0, 0, i, tzinfo=dt.timezone.utc)),
}


def normalized(row: Dict[str, Any]) -> str:
    """A row's text with every zoned datetime in one UTC form (lookups and scans name the zone
    differently)."""
    def one(value: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.astimezone(dt.timezone.utc)
        return value

    return repr({name: one(value) for name, value in row.items()})


def row_of(key_value: Any, i: int) -> Dict[str, Any]:
    return {"k": key_value, "v": f"value {i}", "n": i if i % 3 else None}


def write(runner, table, rows, deletes=()) -> None:
    async def go() -> None:
        writer = table.new_upsert().create_writer()
        for row in rows:
            writer.upsert(row)
        for key in deletes:
            writer.delete(key)
        await writer.flush()

    runner.run(go(), f"{len(rows)} upserts, {len(deletes)} deletes")


def changelog(runner, table, expected: int) -> List[Tuple[str, Dict[str, Any]]]:
    scanner = runner.run(lambda: table.new_scan().create_log_scanner(), "create_log_scanner")
    runner.run(lambda: scanner.subscribe_buckets({b: fluss.EARLIEST_OFFSET for b in range(BUCKETS)}), "subscribe")
    records: List[Tuple[str, Dict[str, Any]]] = []

    def complete() -> None:
        for _, bucket_records in runner.run(lambda: scanner.poll(500), "poll").items():
            records.extend((r.change_type.short_string(), dict(r.row)) for r in bucket_records)
        assert len(records) >= expected, f"{len(records)} of {expected} changelog records"

    support.eventually(complete, "reading the changelog")
    return records


def limit_scan_all(runner, table, table_id: int) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    for bucket in range(BUCKETS):
        batch = runner.run(
            lambda: table.new_scan().limit(1000).create_bucket_batch_scanner(fluss.TableBucket(table_id, bucket)).to_arrow(),
            f"limit scan of bucket {bucket}",
        )
        rows.extend(batch.to_pylist())
    return rows


def create(runner, client, name: str, columns, primary_keys, lake: str, bucket_keys=None):
    admin = client.admin
    runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create_database")
    options = {"bucket_keys": bucket_keys} if bucket_keys else {}
    descriptor = fluss.TableDescriptor(
        fluss.Schema(pa.schema(columns), primary_keys=primary_keys),
        bucket_count=BUCKETS,
        properties={"table.datalake.format": lake},
        **options,
    )
    path = fluss.TablePath(DB, name)
    runner.run(lambda: admin.create_table(path, descriptor), f"create {name}")
    info = runner.run(lambda: admin.get_table_info(path), f"get_table_info {name}")
    properties = info.get_properties()
    assert properties.get("table.datalake.format") == lake, properties
    assert properties.get("table.kv.format-version") == "2", properties
    table = runner.run(lambda: client.connection.get_table(path), f"get_table {name}")
    return table, info.table_id


def cases():
    for lake in LAKES:
        for name in KEY_TYPES:
            yield lake, name
    for name in PAIMON_ONLY:
        yield "paimon", name


@pytest.mark.parametrize("lake,key_type", list(cases()))
def test_keys_of_a_lake_format_round_trip_through_every_read_path(runner, client, server, kvtablet_bin, lake, key_type):
    arrow_type, value_of = {**KEY_TYPES, **PAIMON_ONLY}[key_type]
    name = f"{lake}_{key_type}"
    columns = [("k", arrow_type), ("v", pa.string()), ("n", pa.int32())]
    table, table_id = create(runner, client, name, columns, ["k"], lake)
    rows = [row_of(value_of(i), i) for i in range(ROWS)]
    unique = {repr(r["k"]) for r in rows}
    if len(unique) < len(rows):  # a BOOLEAN key has two values: the last write of each wins
        rows = list({repr(r["k"]): r for r in rows}.values())
    deleted = rows[::5]
    write(runner, table, rows)
    write(runner, table, [], deletes=[{"k": r["k"]} for r in deleted])
    live = [r for r in rows if r not in deleted]
    lookuper = runner.run(lambda: table.new_lookup().create_lookuper(), "lookuper")
    for row in rows:
        got = runner.run(lambda: lookuper.lookup({"k": row["k"]}), f"lookup {row['k']!r}")
        assert (dict(got) if got is not None else None) == (None if row in deleted else row), row["k"]
    scanned = limit_scan_all(runner, table, table_id)
    assert sorted(map(normalized, scanned)) == sorted(map(normalized, live))
    records = changelog(runner, table, len(rows) + len(deleted))
    assert sorted(t for t, _ in records) == sorted(["+I"] * len(rows) + ["-D"] * len(deleted))
    printed = []
    for bucket in range(BUCKETS):
        printed += support.run_scan_cli(kvtablet_bin, server, DB, name, bucket, support.CALL_TIMEOUT_S)
    assert sorted(r["v"] for r in printed) == sorted(r["v"] for r in live)
    if len(live) > BUCKETS * 2:
        # pyfluss spread the keys over the buckets by the lake's function: every bucket it
        # chose took its rows, and the scan of each bucket finds them there.
        assert len({r["v"] for r in printed}) == len(live)


@pytest.mark.parametrize("lake", LAKES)
def test_a_composite_key_with_a_one_column_bucket_key_supports_prefix_lookups(runner, client, lake):
    columns = [("user", pa.int64()), ("day", pa.date32()), ("tag", pa.string()), ("amount", pa.decimal128(10, 2))]
    name = f"{lake}_composite"
    table, table_id = create(runner, client, name, columns, ["user", "day", "tag"], lake, bucket_keys=["user"])

    def row(i: int) -> Dict[str, Any]:
        return {"user": i % 5 - 2, "day": dt.date(2024, 1, 1) + dt.timedelta(days=i), "tag": f"t{i % 3}", "amount": Decimal(i * 101).scaleb(-2)}

    rows = [row(i) for i in range(30)]
    deleted = rows[::7]
    write(runner, table, rows)
    write(runner, table, [], deletes=[{k: r[k] for k in ("user", "day", "tag")} for r in deleted])
    live = [r for r in rows if r not in deleted]
    lookuper = runner.run(lambda: table.new_lookup().create_lookuper(), "lookuper")
    for r in rows:
        got = runner.run(lambda: lookuper.lookup({k: r[k] for k in ("user", "day", "tag")}), "lookup")
        assert (dict(got) if got is not None else None) == (None if r in deleted else r)
    prefix = runner.run(lambda: table.new_lookup().lookup_by(["user"]).create_lookuper(), "prefix lookuper")
    for user in range(-2, 3):
        got = runner.run(lambda: prefix.lookup([user]), f"prefix lookup {user}")
        want = [r for r in live if r["user"] == user]
        assert sorted(map(repr, (dict(g) for g in got))) == sorted(map(repr, want)), user
    assert sorted(map(repr, limit_scan_all(runner, table, table_id))) == sorted(map(repr, live))
    records = changelog(runner, table, len(rows) + len(deleted))
    assert sorted(t for t, _ in records) == sorted(["+I"] * len(rows) + ["-D"] * len(deleted))


def test_indexed_values_are_accepted_and_kept(runner, client):
    admin = client.admin
    runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create_database")
    schema = fluss.Schema(pa.schema([("id", pa.int32()), ("v", pa.string())]), primary_keys=["id"])
    path = fluss.TablePath(DB, "indexed")
    runner.run(lambda: admin.create_table(path, fluss.TableDescriptor(schema, kv_format="INDEXED")), "create indexed")
    properties = runner.run(lambda: admin.get_table_info(path), "get_table_info").get_properties()
    assert properties.get("table.kv.format") == "INDEXED", properties
    # What pyfluss 1.0.0 itself can do with such a table: read its changelog (Arrow, whatever
    # the KV format), but neither write nor look up its values; it says so, it does not crash.
    table = runner.run(lambda: client.connection.get_table(path), "get_table")
    runner.run(lambda: table.new_scan().create_log_scanner(), "create_log_scanner")
    with pytest.raises(fluss.FlussError):
        runner.run(lambda: table.new_upsert().create_writer(), "create_writer")


def test_options_the_clients_cannot_honour_are_refused_at_create_table(runner, client):
    admin = client.admin
    runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create_database")
    cases = {
        # Iceberg hashes one bucket-key column; with the default bucket key that is the whole
        # primary key.
        "iceberg_composite": ([("a", pa.int32()), ("b", pa.string())], ["a", "b"], {"table.datalake.format": "iceberg"}, "exactly one column"),
        "iceberg_boolean": ([("a", pa.bool_()), ("b", pa.string())], ["a"], {"table.datalake.format": "iceberg"}, "BOOLEAN"),
        "hudi": ([("a", pa.int32())], ["a"], {"table.datalake.format": "hudi"}, "table.datalake.format"),
        "tiering": ([("a", pa.int32())], ["a"], {"table.datalake.format": "paimon", "table.datalake.enabled": "true"}, "lake tiering"),
    }
    for name, (columns, primary_key, properties, message) in cases.items():
        descriptor = fluss.TableDescriptor(fluss.Schema(pa.schema(columns), primary_keys=primary_key), properties=properties)
        with pytest.raises(fluss.FlussError) as caught:
            runner.run(lambda: admin.create_table(fluss.TablePath(DB, name), descriptor), f"create {name}")
        assert caught.value.error_code == fluss.ErrorCode.INVALID_CONFIG_EXCEPTION, caught.value
        assert message in str(caught.value), caught.value
