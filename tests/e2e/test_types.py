"""Every scalar type through pyfluss: BYTES, BINARY(n), DECIMAL (compact and wide), DATE,
TIME, TIMESTAMP and TIMESTAMP_LTZ of every Arrow unit, as values (with NULLs and boundary
values) and as primary-key and bucket-key columns; upsert, lookup, prefix lookup, limit scan,
the changelog (whole and projected) and `kvtablet scan`. ARRAY, MAP and ROW are refused as keys,
as Fluss refuses them (as values they are tested in test_nested_types.py).

pyfluss 1.0.0 limits what this can write: no CHAR column can be declared from a pyarrow schema
(CHAR is covered by the Rust tests), TIME values must be whole milliseconds (the client refuses
finer ones; Fluss stores TIME in milliseconds), and a pre-epoch TIMESTAMP with a sub-millisecond
part is refused by the client (it computes a negative nano-of-millisecond), and it converts no
datetime after 9999-12-30T22:00:00 (a bound of its own, below Python's)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from decimal import Decimal
from typing import Any, Dict, List

import fluss
import pyarrow as pa
import pytest

import e2e_support as support

DB = "e2e_types"
UTC = dt.timezone.utc

VALUE_COLUMNS = [
    ("id", pa.int32()),
    ("c_bytes", pa.binary()),
    ("c_binary", pa.binary(4)),
    ("c_dec", pa.decimal128(10, 2)),
    ("c_dec38", pa.decimal128(38, 10)),
    ("c_date", pa.date32()),
    ("c_time0", pa.time32("s")),
    ("c_time3", pa.time32("ms")),
    ("c_time6", pa.time64("us")),
    ("c_time9", pa.time64("ns")),
    ("c_ts0", pa.timestamp("s")),
    ("c_ts3", pa.timestamp("ms")),
    ("c_ts6", pa.timestamp("us")),
    ("c_ts9", pa.timestamp("ns")),
    ("c_ltz3", pa.timestamp("ms", tz="UTC")),
    ("c_ltz9", pa.timestamp("ns", tz="UTC")),
]
PRECISION = {"c_time0": 0, "c_time3": 3, "c_time6": 6, "c_time9": 9,
             "c_ts0": 0, "c_ts3": 3, "c_ts6": 6, "c_ts9": 9, "c_ltz3": 3, "c_ltz9": 9}
SCALE = {"c_dec": 2, "c_dec38": 10, "k_dec": 4, "k_wide": 0}
WIDE = Decimal("9" * 28 + "." + "9" * 10)
NEG_WIDE = Decimal("-" + "9" * 28 + "." + "9" * 10)
NS_MAX = dt.datetime(2262, 4, 11, 23, 47, 16, 854775)
NS_MIN = dt.datetime(1677, 9, 21, 0, 12, 44)
#: The latest datetime pyfluss 1.0.0 converts (its bound is 253402207200 s since the epoch).
CLIENT_MAX = dt.datetime(9999, 12, 30, 21, 59, 59, 999999)

VALUE_ROWS: List[Dict[str, Any]] = [
    {  # the largest values of every type (TIMESTAMP(9): Arrow's nanosecond range)
        "id": 1, "c_bytes": b"\xff" * 300, "c_binary": b"\xff\xff\xff\xff",
        "c_dec": Decimal("99999999.99"), "c_dec38": WIDE, "c_date": dt.date(9999, 12, 31),
        "c_time0": dt.time(23, 59, 59), "c_time3": dt.time(23, 59, 59, 999000),
        "c_time6": dt.time(23, 59, 59, 999000), "c_time9": dt.time(23, 59, 59, 999000),
        "c_ts0": CLIENT_MAX.replace(microsecond=0), "c_ts3": CLIENT_MAX.replace(microsecond=999000),
        "c_ts6": CLIENT_MAX, "c_ts9": NS_MAX,
        "c_ltz3": CLIENT_MAX.replace(microsecond=999000, tzinfo=UTC),
        "c_ltz9": NS_MAX.replace(tzinfo=UTC),
    },
    {  # the smallest
        "id": 2, "c_bytes": b"", "c_binary": b"\x00\x00\x00\x00",
        "c_dec": Decimal("-99999999.99"), "c_dec38": NEG_WIDE, "c_date": dt.date(1, 1, 1),
        "c_time0": dt.time(0, 0, 0), "c_time3": dt.time(0, 0, 0), "c_time6": dt.time(0, 0, 0),
        "c_time9": dt.time(0, 0, 0),
        "c_ts0": dt.datetime(1, 1, 1), "c_ts3": dt.datetime(1, 1, 1), "c_ts6": dt.datetime(1, 1, 1),
        "c_ts9": NS_MIN, "c_ltz3": dt.datetime(1, 1, 1, tzinfo=UTC), "c_ltz9": NS_MIN.replace(tzinfo=UTC),
    },
    {  # ordinary values: sub-millisecond parts, pre-epoch whole milliseconds, tiny decimals
        "id": 3, "c_bytes": b"\x00\x01binary\x80", "c_binary": b"ab\x00d",
        "c_dec": Decimal("-0.01"), "c_dec38": Decimal("0.0000000001"), "c_date": dt.date(1969, 12, 31),
        "c_time0": dt.time(12, 34, 56), "c_time3": dt.time(12, 34, 56, 789000),
        "c_time6": dt.time(0, 0, 0, 1000), "c_time9": dt.time(1, 2, 3, 4000),
        "c_ts0": dt.datetime(1969, 12, 31, 23, 59, 59), "c_ts3": dt.datetime(1969, 12, 31, 23, 59, 59, 999000),
        "c_ts6": dt.datetime(2024, 2, 29, 12, 0, 0, 123456), "c_ts9": dt.datetime(2024, 2, 29, 12, 0, 0, 678901),
        "c_ltz3": dt.datetime(1970, 1, 1, tzinfo=UTC), "c_ltz9": dt.datetime(2024, 2, 29, 12, 0, 0, 678901, tzinfo=UTC),
    },
    {"id": 4},  # every value NULL
]

KEY_COLUMNS = [
    ("k_bytes", pa.binary()),
    ("k_binary", pa.binary(2)),
    ("k_dec", pa.decimal128(18, 4)),
    ("k_wide", pa.decimal128(38, 0)),
    ("k_date", pa.date32()),
    ("k_time", pa.time32("ms")),
    ("k_ts", pa.timestamp("ns")),
    ("k_ltz", pa.timestamp("us", tz="UTC")),
    ("v", pa.string()),
]
KEY_NAMES = [name for name, _ in KEY_COLUMNS if name != "v"]
BUCKET_KEY = ["k_bytes", "k_binary"]
KEY_BUCKETS = 3


def key_row(i: int) -> Dict[str, Any]:
    return {
        "k_bytes": bytes([i % 4]) * (i % 3), "k_binary": bytes([0xff, i % 2]),
        "k_dec": Decimal(i * 7 - 100).scaleb(-4 + (14 if i % 5 == 0 else 0)),
        "k_wide": Decimal(10 ** 37 * (1 if i % 2 else -1) + i),
        "k_date": dt.date(1970, 1, 1) + dt.timedelta(days=i * 1000 - 20000),
        "k_time": dt.time(i % 24, i % 60, 59, 999000),
        "k_ts": dt.datetime(2000, 1, 1, 0, 0, 0, i) + dt.timedelta(days=i),
        "k_ltz": dt.datetime(1970, 1, 1, 0, 0, 0, 999999 - i, tzinfo=UTC) + dt.timedelta(hours=i),
        "v": f"row {i}",
    }


KEY_ROWS = [key_row(i) for i in range(40)]


def key_of(row: Dict[str, Any]) -> tuple:
    return tuple(row[name] for name in KEY_NAMES)


def json_text(name: str, value: Any) -> Any:
    """What `kvtablet scan` prints for a value of the column `name`."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Decimal):
        with decimal.localcontext() as context:
            context.prec = 60
            return f"{value.quantize(Decimal(1).scaleb(-SCALE[name])):f}"
    if isinstance(value, dt.datetime):
        precision = PRECISION.get(name, 6 if name == "k_ltz" else 9)
        text = value.replace(tzinfo=None).isoformat(timespec="seconds")
        if precision:
            text += "." + f"{value.microsecond:06d}000"[:precision]
        return text + ("Z" if value.tzinfo else "")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        precision = PRECISION.get(name, 3)
        text = value.isoformat(timespec="seconds")
        return text + ("." + f"{value.microsecond:06d}000"[:precision] if precision else "")
    return value


def full(row: Dict[str, Any], columns) -> Dict[str, Any]:
    return {name: row.get(name) for name, _ in columns}


def write(runner, table, rows, deletes=()) -> None:
    async def go() -> None:
        writer = table.new_upsert().create_writer()
        for row in rows:
            writer.upsert(row)
        for key in deletes:
            writer.delete(key)
        await writer.flush()

    runner.run(go(), f"{len(rows)} upserts, {len(deletes)} deletes")


def changelog(runner, table, buckets: int, expected: int, projection=None) -> List[tuple]:
    def create():
        scan = table.new_scan()
        if projection is not None:
            scan = scan.project_by_name(projection)
        return scan.create_log_scanner()

    scanner = runner.run(create, "create_log_scanner")
    runner.run(lambda: scanner.subscribe_buckets({b: fluss.EARLIEST_OFFSET for b in range(buckets)}), "subscribe")
    records: List[tuple] = []

    def complete() -> None:
        for _, bucket_records in runner.run(lambda: scanner.poll(500), "poll").items():
            records.extend((r.change_type.short_string(), dict(r.row)) for r in bucket_records)
        assert len(records) >= expected, f"{len(records)} of {expected} changelog records"

    support.eventually(complete, "reading the changelog")
    return records


def limit_scan_all(runner, table, table_id: int, buckets: int) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    for bucket in range(buckets):
        batch = runner.run(
            lambda: table.new_scan().limit(1000).create_bucket_batch_scanner(fluss.TableBucket(table_id, bucket)).to_arrow(),
            f"limit scan of bucket {bucket}",
        )
        rows.extend(batch.to_pylist())
    return rows


def by(rows, key) -> Dict[Any, Dict[str, Any]]:
    return {key(row): row for row in rows}


@pytest.mark.incremental
class TestScalarTypes:
    tables: dict = {}

    def test_tables_with_every_scalar_type_are_created(self, runner, client):
        admin = client.admin
        runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create_database")
        values = fluss.TableDescriptor(fluss.Schema(pa.schema(VALUE_COLUMNS), primary_keys=["id"]), bucket_count=1)
        keys = fluss.TableDescriptor(
            fluss.Schema(pa.schema(KEY_COLUMNS), primary_keys=KEY_NAMES),
            bucket_count=KEY_BUCKETS, bucket_keys=BUCKET_KEY,
        )
        for name, descriptor in [("values", values), ("keys", keys)]:
            path = fluss.TablePath(DB, name)
            runner.run(lambda: admin.create_table(path, descriptor), f"create {name}")
            info = runner.run(lambda: admin.get_table_info(path), f"get_table_info {name}")
            table = runner.run(lambda: client.connection.get_table(path), f"get_table {name}")
            self.tables[name] = (table, info.table_id)
        types = runner.run(lambda: admin.get_table_info(fluss.TablePath(DB, "values")), "info").get_schema().get_column_types()
        assert types[1:5] == ["bytes", "binary(4)", "decimal(10,2)", "decimal(38,10)"], types

    def test_values_of_every_type_round_trip(self, runner):
        table, _ = self.tables["values"]
        write(runner, table, VALUE_ROWS)
        lookuper = runner.run(lambda: table.new_lookup().create_lookuper(), "lookuper")
        for row in VALUE_ROWS:
            got = runner.run(lambda: lookuper.lookup({"id": row["id"]}), f"lookup {row['id']}")
            assert got is not None and dict(got) == full(row, VALUE_COLUMNS), (row["id"], got)

    def test_values_come_back_from_limit_scan_changelog_and_scan_cli(self, runner, server, kvtablet_bin):
        table, table_id = self.tables["values"]
        want = by([full(r, VALUE_COLUMNS) for r in VALUE_ROWS], lambda r: r["id"])
        assert by(limit_scan_all(runner, table, table_id, 1), lambda r: r["id"]) == want
        records = changelog(runner, table, 1, len(VALUE_ROWS))
        assert [t for t, _ in records] == ["+I"] * len(VALUE_ROWS)
        assert by([r for _, r in records], lambda r: r["id"]) == want
        projected = changelog(runner, table, 1, len(VALUE_ROWS), projection=["c_binary", "c_dec38", "c_ts9", "c_ltz3"])
        assert sorted((r["c_dec38"] is None, str(r["c_dec38"])) for _, r in projected) == sorted(
            (w["c_dec38"] is None, str(w["c_dec38"])) for w in want.values()
        )
        assert all(set(r) == {"c_binary", "c_dec38", "c_ts9", "c_ltz3"} for _, r in projected)
        printed = support.run_scan_cli(kvtablet_bin, server, DB, "values", 0, support.CALL_TIMEOUT_S)
        assert by(printed, lambda r: r["id"]) == {
            i: {name: json_text(name, value) for name, value in row.items()} for i, row in want.items()
        }

    def test_key_columns_of_every_key_type_lookup_prefix_lookup_and_scan(self, runner, server, kvtablet_bin):
        table, table_id = self.tables["keys"]
        deleted = KEY_ROWS[::7]
        write(runner, table, KEY_ROWS)
        write(runner, table, [], deletes=[{n: r[n] for n in KEY_NAMES} for r in deleted])
        live = [r for r in KEY_ROWS if r not in deleted]
        lookuper = runner.run(lambda: table.new_lookup().create_lookuper(), "lookuper")
        for row in KEY_ROWS:
            got = runner.run(lambda: lookuper.lookup({n: row[n] for n in KEY_NAMES}), "lookup")
            assert (dict(got) if got is not None else None) == (None if row in deleted else row), key_of(row)
        prefix = runner.run(lambda: table.new_lookup().lookup_by(BUCKET_KEY).create_lookuper(), "prefix lookuper")
        for bucket_key in {(r["k_bytes"], r["k_binary"]) for r in KEY_ROWS}:
            got = runner.run(lambda: prefix.lookup(list(bucket_key)), f"prefix lookup {bucket_key}")
            want = [r for r in live if (r["k_bytes"], r["k_binary"]) == bucket_key]
            assert by([dict(r) for r in got], key_of) == by(want, key_of), bucket_key
        assert by(limit_scan_all(runner, table, table_id, KEY_BUCKETS), key_of) == by(live, key_of)
        records = changelog(runner, table, KEY_BUCKETS, len(KEY_ROWS) + len(deleted))
        assert sorted(t for t, _ in records) == sorted(["+I"] * len(KEY_ROWS) + ["-D"] * len(deleted))
        printed = []
        for bucket in range(KEY_BUCKETS):
            printed += support.run_scan_cli(kvtablet_bin, server, DB, "keys", bucket, support.CALL_TIMEOUT_S)
        as_json = [{n: json_text(n, v) for n, v in r.items()} for r in live]
        assert by(printed, lambda r: tuple(r[n] for n in KEY_NAMES)) == by(as_json, lambda r: tuple(r[n] for n in KEY_NAMES))

    def test_nested_types_are_refused_as_keys(self, runner, client):
        # pyfluss sends the primary key as the bucket key, and Fluss checks the bucket key first.
        admin = client.admin
        cases = {
            "array_key": ([("k", pa.list_(pa.int32())), ("v", pa.int32())], ["k"], "Bucket key column 'k'"),
            "map_key": ([("k", pa.map_(pa.string(), pa.int32())), ("v", pa.int32())], ["k"], "Bucket key column 'k'"),
            "row_key": ([("k", pa.struct([("x", pa.int32())])), ("v", pa.int32())], ["k"], "Bucket key column 'k'"),
        }
        for name, (columns, primary_key, message) in cases.items():
            descriptor = fluss.TableDescriptor(fluss.Schema(pa.schema(columns), primary_keys=primary_key))
            with pytest.raises(fluss.FlussError) as caught:
                runner.run(lambda: admin.create_table(fluss.TablePath(DB, name), descriptor), f"create {name}")
            assert caught.value.error_code == fluss.ErrorCode.INVALID_TABLE_EXCEPTION, caught.value
            assert message in str(caught.value), caught.value
