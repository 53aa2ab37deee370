"""ARRAY, MAP and ROW value columns through pyfluss, nested in each other: NULL elements, NULL
map values and NULL row fields, empty arrays and maps, NULL whole columns; upsert, lookup,
limit scan, the changelog (whole and projected), `kvtablet scan` and partial updates of a
nested column. As keys (primary, bucket or partition) they are refused with INVALID_TABLE,
naming the column, as Fluss refuses them.

pyfluss 1.0.0 reads an ARRAY as a list, a MAP as a list of (key, value) tuples (in stored
order, duplicate keys kept) and a ROW as a dict keyed by field name; it writes a MAP from a dict
or a list of (key, value) tuples and a ROW from a dict or a tuple. It refuses a NULL map key
itself; a NULL element of an ARRAY whose element type is NOT NULL it sends, and the server
refuses the batch (CORRUPT_RECORD, tested in prod/tests/format_nested.rs), but pyfluss's writer
does not surface that error (its flush waits), so it is not tested here."""

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

DB = "e2e_nested"

COLUMNS = [
    ("id", pa.int32()),
    ("tags", pa.list_(pa.string())),
    ("ints", pa.list_(pa.field("item", pa.int32(), nullable=False))),
    ("attrs", pa.map_(pa.string(), pa.list_(pa.int32()))),
    ("point", pa.struct([("x", pa.int64()), ("label", pa.string())])),
    ("events", pa.list_(pa.struct([("at", pa.timestamp("ns")), ("amount", pa.decimal128(38, 10)), ("ok", pa.bool_())]))),
    ("blobs", pa.list_(pa.list_(pa.binary()))),
    ("by_day", pa.map_(pa.int32(), pa.struct([("day", pa.date32()), ("t", pa.time32("ms")), ("score", pa.float64())]))),
]
TYPES = dict(COLUMNS)
NAMES = [name for name, _ in COLUMNS]

ROWS: List[Dict[str, Any]] = [
    {  # every column set; short (inlined) and long strings; nested NULLs everywhere
        "id": 1,
        "tags": ["a", None, "a string longer than seven bytes", ""],
        "ints": [0, -1, 2147483647, -2147483648],
        "attrs": [("k", [1, None, 3]), ("empty", []), ("none", None)],
        "point": {"x": -9223372036854775808, "label": "origin"},
        "events": [
            {"at": dt.datetime(2024, 2, 29, 12, 0, 0, 123456), "amount": Decimal("-12345678901234567890.0123456789"), "ok": True},
            None,
            {"at": None, "amount": None, "ok": None},
        ],
        "blobs": [[b"\x00\x01", None, b"\xff" * 20], [], None],
        "by_day": [
            (7, {"day": dt.date(1969, 12, 31), "t": dt.time(23, 59, 59, 999000), "score": -0.5}),
            (-1, None),
        ],
    },
    {  # empty arrays and maps, a ROW of NULLs
        "id": 2, "tags": [], "ints": [], "attrs": [], "point": {"x": None, "label": None},
        "events": [], "blobs": [[]], "by_day": [],
    },
    {"id": 3},  # every nested column NULL
    {  # long arrays (multi-byte lengths, thousands of regions), a MAP with a duplicate key
        "id": 5,
        "tags": [f"tag number {i}" for i in range(3000)],
        "ints": list(range(-1500, 1500)),
        "attrs": [("dup", [1]), ("dup", [2, None])],
        "blobs": [[bytes([i % 256]) * (i % 9)] for i in range(500)],
    },
]

PARTIAL_TAGS = [{"id": 1, "tags": ["partial"]}, {"id": 3, "tags": None}, {"id": 4, "tags": ["new", None]}]


def full(row: Dict[str, Any]) -> Dict[str, Any]:
    """A row as pyfluss reads it: every column, a MAP as a list of (key, value) tuples."""
    return {name: row.get(name) for name in NAMES}


def json_text(value: Any, ty: pa.DataType) -> Any:
    """What `kvtablet scan` prints for a value of the Arrow type `ty`."""
    if value is None:
        return None
    if pa.types.is_map(ty):
        return [[json_text(k, ty.key_type), json_text(v, ty.item_type)] for k, v in value]
    if pa.types.is_list(ty):
        return [json_text(item, ty.value_type) for item in value]
    if pa.types.is_struct(ty):
        return {field.name: json_text(value.get(field.name), field.type) for field in ty}
    if pa.types.is_binary(ty):
        return base64.b64encode(value).decode()
    if pa.types.is_decimal(ty):
        with decimal.localcontext() as context:
            context.prec = 60
            return f"{value.quantize(Decimal(1).scaleb(-ty.scale)):f}"
    if pa.types.is_timestamp(ty):
        return value.isoformat(timespec="seconds") + "." + f"{value.microsecond:06d}000"
    if pa.types.is_date(ty):
        return value.isoformat()
    if pa.types.is_time(ty):
        return value.isoformat(timespec="milliseconds")
    return value


def as_json(row: Dict[str, Any]) -> Dict[str, Any]:
    return {name: json_text(value, TYPES[name]) for name, value in full(row).items()}


def write(runner, table, rows, columns=None, deletes=(), what="upsert") -> None:
    async def go() -> None:
        builder = table.new_upsert()
        if columns is not None:
            builder = builder.partial_update_by_name(columns)
        writer = builder.create_writer()
        for row in rows:
            writer.upsert(row)
        for key in deletes:
            writer.delete({"id": key})
        await writer.flush()

    runner.run(go(), what)


def lookup_all(runner, table, keys) -> Dict[int, Any]:
    lookuper = runner.run(lambda: table.new_lookup().create_lookuper(), "create_lookuper")
    found = {}
    for key in keys:
        got = runner.run(lambda key=key: lookuper.lookup({"id": key}), f"lookup {key}")
        found[key] = dict(got) if got is not None else None
    return found


def changelog(runner, table, expected: int, projection=None) -> List[tuple]:
    def create():
        scan = table.new_scan()
        if projection is not None:
            scan = scan.project_by_name(projection)
        return scan.create_log_scanner()

    scanner = runner.run(create, "create_log_scanner")
    runner.run(lambda: scanner.subscribe_buckets({0: fluss.EARLIEST_OFFSET}), "subscribe")
    records: List[tuple] = []

    def complete() -> None:
        for _, bucket_records in runner.run(lambda: scanner.poll(500), "poll").items():
            records.extend((r.change_type.short_string(), dict(r.row)) for r in bucket_records)
        assert len(records) >= expected, f"{len(records)} of {expected} changelog records"

    support.eventually(complete, "reading the changelog")
    assert len(records) == expected, records
    return records


@pytest.mark.incremental
class TestNestedTypes:
    table = None
    table_id = None

    def test_a_table_with_nested_value_columns_is_created(self, runner, client):
        admin = client.admin
        runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create_database")
        path = fluss.TablePath(DB, "nested")
        descriptor = fluss.TableDescriptor(fluss.Schema(pa.schema(COLUMNS), primary_keys=["id"]), bucket_count=1)
        runner.run(lambda: admin.create_table(path, descriptor), "create_table")
        info = runner.run(lambda: admin.get_table_info(path), "get_table_info")
        TestNestedTypes.table_id = info.table_id
        TestNestedTypes.table = runner.run(lambda: client.connection.get_table(path), "get_table")
        assert info.get_schema().get_column_types() == [
            "int NOT NULL",
            "array<string>",
            "array<int NOT NULL>",
            "map<string NOT NULL,array<int>>",
            "row<x: bigint, label: string>",
            "array<row<at: timestamp(9), amount: decimal(38,10), ok: boolean>>",
            "array<array<bytes>>",
            "map<int NOT NULL,row<day: date, t: time(3), score: double>>",
        ]

    def test_nested_values_round_trip_through_lookup(self, runner):
        write(runner, self.table, ROWS)
        assert lookup_all(runner, self.table, [r["id"] for r in ROWS]) == {r["id"]: full(r) for r in ROWS}

    def test_nested_values_come_back_from_limit_scan_changelog_and_scan_cli(self, runner, server, kvtablet_bin):
        want = {r["id"]: full(r) for r in ROWS}
        batch = runner.run(
            lambda: self.table.new_scan().limit(100).create_bucket_batch_scanner(fluss.TableBucket(self.table_id, 0)).to_arrow(),
            "limit scan",
        )
        assert {r["id"]: r for r in batch.to_pylist()} == want
        records = changelog(runner, self.table, len(ROWS))
        assert [t for t, _ in records] == ["+I"] * len(ROWS)
        assert {r["id"]: r for _, r in records} == want
        projected = changelog(runner, self.table, len(ROWS), projection=["attrs", "events", "by_day"])
        assert sorted((r for _, r in projected), key=repr) == sorted(
            ({n: w[n] for n in ("attrs", "events", "by_day")} for w in want.values()), key=repr
        )
        printed = support.run_scan_cli(kvtablet_bin, server, DB, "nested", 0, support.CALL_TIMEOUT_S)
        assert {r["id"]: r for r in printed} == {r["id"]: as_json(r) for r in ROWS}

    def test_a_partial_update_of_a_nested_column_keeps_the_others(self, runner):
        write(runner, self.table, PARTIAL_TAGS, columns=["id", "tags"], what="partial upsert of tags")
        expected = {
            1: dict(full(ROWS[0]), tags=["partial"]),
            2: full(ROWS[1]),
            3: full(ROWS[2]),
            4: full({"id": 4, "tags": ["new", None]}),
        }
        assert lookup_all(runner, self.table, [1, 2, 3, 4]) == expected
        records = changelog(runner, self.table, len(ROWS) + 5)
        assert records[len(ROWS):] == [
            ("-U", full(ROWS[0])),
            ("+U", expected[1]),
            ("-U", full(ROWS[2])),
            ("+U", full(ROWS[2])),
            ("+I", expected[4]),
        ], records[len(ROWS):]

    def test_nested_types_are_refused_as_keys(self, runner, client):
        admin = client.admin
        runner.run(lambda: admin.create_database(DB, ignore_if_exists=True), "create_database")
        nested = {
            "array": pa.list_(pa.int32()),
            "map": pa.map_(pa.string(), pa.int32()),
            "row": pa.struct([("x", pa.int32())]),
        }
        for kind, ty in nested.items():
            cases = {
                f"{kind}_primary_key": fluss.TableDescriptor(
                    fluss.Schema(pa.schema([("k", ty), ("v", pa.int32())]), primary_keys=["k"])
                ),
                f"{kind}_bucket_key": fluss.TableDescriptor(
                    fluss.Schema(pa.schema([("id", pa.int32()), ("k", ty), ("v", pa.int32())]), primary_keys=["id", "k"]),
                    bucket_keys=["k"],
                ),
                f"{kind}_partition_key": fluss.TableDescriptor(
                    fluss.Schema(pa.schema([("id", pa.int32()), ("k", ty), ("v", pa.int32())]), primary_keys=["id", "k"]),
                    partition_keys=["k"],
                ),
            }
            for name, descriptor in cases.items():
                with pytest.raises(fluss.FlussError) as caught:
                    runner.run(lambda: admin.create_table(fluss.TablePath(DB, name), descriptor), f"create {name}")
                assert caught.value.error_code == fluss.ErrorCode.INVALID_TABLE_EXCEPTION, (name, caught.value)
                assert "column 'k'" in str(caught.value), (name, caught.value)
