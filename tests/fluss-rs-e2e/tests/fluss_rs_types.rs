//! Every scalar type kvtablet supports, through the official Rust client `fluss-rs` 1.0.0
//! against `kvtablet serve`: BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, STRING,
//! CHAR(n), BINARY(n), BYTES, DECIMAL (compact, precision <= 18, and wide), DATE, TIME,
//! TIMESTAMP and TIMESTAMP_LTZ of several precisions; as values (boundary values, NULLs) and as
//! primary-key columns. Every value is written with the upsert writer and read back exactly
//! (floats bit for bit) by lookup, prefix lookup and the changelog (log scanner).
//!
//! ARRAY, MAP and ROW value columns, nested in each other (ARRAY<ARRAY>, ARRAY<ROW>, MAP with
//! ARRAY and ROW values, ROW<ROW>), with NULLs at every level, empty arrays and maps, a NULL ROW
//! and NULL whole columns: written as fluss-rs encodes them (`FlussArray`, `FlussMap`,
//! `GenericRow` datums) and read back element by element by lookup, through the changelog
//! (whole and projected to one nested column) and by limit scans (whole and projected); as keys
//! they are refused at CreateTable (INVALID_TABLE), as Fluss refuses them.
//!
//! fluss-rs holds TIME in milliseconds (as Fluss stores it), so every TIME value here is whole
//! milliseconds; a TIMESTAMP(p) or TIME(p) value carries no digit finer than its precision, as
//! the changelog's Arrow columns keep only those.

mod support;

use std::sync::Arc;

use fluss::client::{FlussConnection, FlussTable, EARLIEST_OFFSET};
use fluss::metadata::{
    DataType, DataTypes, MapType, RowType, Schema, TableBucket, TableDescriptor, TablePath,
};
use fluss::record::ChangeType;
use fluss::row::field_getter::FieldGetter;
use fluss::row::{
    ArrayView, ColumnarRow, DataGetters, Date, Datum, Decimal, FlussArray, FlussArrayWriter,
    FlussMapWriter, GenericRow, InternalArray, InternalMap, InternalRow, MapView, Time,
    TimestampLtz, TimestampNtz,
};
use fluss::rpc::FlussError;

use support::{
    acknowledged, assert_api_error, assert_offsets_dense, bounded, read_changelog, refused, Change,
    Node,
};

const DB: &str = "types";

/// A row as it is written: one value per column, `Datum::Null` for NULL.
type Values = Vec<Datum<'static>>;

/// A key's changelog and its row at the end (`None`: deleted).
type KeyModel = (Vec<(ChangeType, Values)>, Option<Values>);

/// A row as it is compared: every value printed exactly (floats as their bits, decimals with
/// their unscaled value and scale).
type Exact = Vec<String>;

fn exact(datum: &Datum) -> String {
    match datum {
        Datum::Float32(f) => format!("FLOAT {:#010x} ({})", f.0.to_bits(), f.0),
        Datum::Float64(f) => format!("DOUBLE {:#018x} ({})", f.0.to_bits(), f.0),
        Datum::Decimal(d) => {
            format!("DECIMAL {d} (unscaled {:?}, scale {})", d.to_unscaled_bytes(), d.scale())
        }
        other => format!("{other:?}"),
    }
}

fn exact_values(values: &[Datum]) -> Exact {
    values.iter().map(exact).collect()
}

/// Every column of `row`, read as a column of the type it was declared with.
fn exact_row(row: &dyn InternalRow, types: &[DataType]) -> Exact {
    types
        .iter()
        .enumerate()
        .map(|(pos, data_type)| {
            let datum = FieldGetter::create(data_type, pos)
                .get_field(row)
                .unwrap_or_else(|error| panic!("column {pos} ({data_type:?}): {error}"));
            exact(&datum)
        })
        .collect()
}

fn decimal(unscaled: i64, precision: u32, scale: u32) -> Datum<'static> {
    Datum::Decimal(Decimal::from_unscaled_long(unscaled, precision, scale).expect("decimal"))
}

fn wide_decimal(unscaled: i128, precision: u32, scale: u32) -> Datum<'static> {
    let bytes = unscaled.to_be_bytes();
    Datum::Decimal(Decimal::from_unscaled_bytes(&bytes, precision, scale).expect("decimal"))
}

fn date(days_since_epoch: i32) -> Datum<'static> {
    Datum::Date(Date::new(days_since_epoch))
}

fn time(millis_of_day: i32) -> Datum<'static> {
    Datum::Time(Time::new(millis_of_day))
}

/// `(epoch millisecond, nanosecond of the millisecond)` of `nanos` since the epoch.
fn split_nanos(nanos: i64) -> (i64, i32) {
    (nanos.div_euclid(1_000_000), nanos.rem_euclid(1_000_000) as i32)
}

fn timestamp(millis: i64, nanos_of_milli: i32) -> Datum<'static> {
    Datum::TimestampNtz(TimestampNtz::from_millis_nanos(millis, nanos_of_milli).expect("timestamp"))
}

fn timestamp_ltz(millis: i64, nanos_of_milli: i32) -> Datum<'static> {
    Datum::TimestampLtz(TimestampLtz::from_millis_nanos(millis, nanos_of_milli).expect("ltz"))
}

fn string(s: &str) -> Datum<'static> {
    Datum::from(s.to_string())
}

fn bytes(b: &[u8]) -> Datum<'static> {
    Datum::from(b.to_vec())
}

/// 9999-12-31 and 0001-01-01, in days since 1970-01-01.
const DATE_MAX: i32 = 2_932_896;
const DATE_MIN: i32 = -719_162;
/// 9999-12-31T23:59:59 and 0001-01-01T00:00:00, in milliseconds since the epoch.
const TS_MAX_SECOND_MS: i64 = 253_402_300_799_000;
const TS_MIN_MS: i64 = -62_135_596_800_000;
/// 23:59:59.999 in milliseconds.
const TIME_MAX: i32 = 86_399_999;
/// 2024-02-29T12:00:00 in milliseconds since the epoch.
const LEAP_DAY_NOON_MS: i64 = 1_709_208_000_000;
/// The largest DECIMAL(38, s) unscaled value: 38 nines.
const NINES_38: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;
/// The earliest TIMESTAMP(9) tested: whole milliseconds 1677-09-21T00:12:43.146 (Arrow's
/// nanosecond range starts 775,808 ns earlier; see
/// `a_timestamp9_at_the_arrow_minimum_round_trips`).
const NS_MIN_TESTED: i64 = -9_223_372_036_854_000_000;

fn table_of(columns: &[(&str, DataType)], primary_key: &[&str]) -> Schema {
    let mut builder = Schema::builder();
    for (name, data_type) in columns {
        builder = builder.column(*name, data_type.clone());
    }
    builder.primary_key(primary_key.to_vec()).expect("primary key").build().expect("schema")
}

async fn create_table(
    connection: &FlussConnection,
    name: &str,
    schema: Schema,
    buckets: i32,
    bucket_key: &[&str],
) -> TablePath {
    let admin = connection.get_admin().expect("admin");
    bounded("create_database", admin.create_database(DB, None, true)).await;
    let path = TablePath::new(DB, name);
    let descriptor = TableDescriptor::builder()
        .schema(schema)
        .distributed_by(Some(buckets), bucket_key.iter().map(|key| key.to_string()).collect())
        .build()
        .expect("descriptor");
    bounded(&format!("create_table {name}"), admin.create_table(&path, &descriptor, false)).await;
    path
}

/// Upserts `rows` then deletes `deletes` (whole rows; only their keys count) through one
/// writer, and waits until every write is acknowledged.
async fn write(table: &FlussTable<'_>, rows: &[Values], deletes: &[Values]) {
    let writer = table.new_upsert().expect("new_upsert").create_writer().expect("writer");
    let mut acks = Vec::new();
    for row in rows {
        acks.push(writer.upsert(&GenericRow::from_data(row.clone())).expect("upsert queued"));
    }
    for row in deletes {
        acks.push(writer.delete(&GenericRow::from_data(row.clone())).expect("delete queued"));
    }
    acknowledged(&writer, acks).await;
}

// ------------------------------------------------------------------------------------------
// Values of every scalar type.

fn value_columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("id", DataTypes::int()),
        ("c_bool", DataTypes::boolean()),
        ("c_tinyint", DataTypes::tinyint()),
        ("c_smallint", DataTypes::smallint()),
        ("c_int", DataTypes::int()),
        ("c_bigint", DataTypes::bigint()),
        ("c_float", DataTypes::float()),
        ("c_double", DataTypes::double()),
        ("c_string", DataTypes::string()),
        ("c_char", DataTypes::char(5)),
        ("c_binary", DataTypes::binary(4)),
        ("c_bytes", DataTypes::bytes()),
        ("c_dec", DataTypes::decimal(10, 2)),
        ("c_dec18", DataTypes::decimal(18, 4)),
        ("c_dec38", DataTypes::decimal(38, 10)),
        ("c_date", DataTypes::date()),
        ("c_time0", DataTypes::time()),
        ("c_time3", DataTypes::time_with_precision(3)),
        ("c_time6", DataTypes::time_with_precision(6)),
        ("c_time9", DataTypes::time_with_precision(9)),
        ("c_ts0", DataTypes::timestamp_with_precision(0)),
        ("c_ts3", DataTypes::timestamp_with_precision(3)),
        ("c_ts6", DataTypes::timestamp()),
        ("c_ts9", DataTypes::timestamp_with_precision(9)),
        ("c_ltz3", DataTypes::timestamp_ltz_with_precision(3)),
        ("c_ltz6", DataTypes::timestamp_ltz()),
        ("c_ltz9", DataTypes::timestamp_ltz_with_precision(9)),
    ]
}

/// The largest value of every type (TIMESTAMP(9): the end of Arrow's nanosecond range).
fn largest(id: i32) -> Values {
    let (ns_max_ms, ns_max_nanos) = split_nanos(i64::MAX);
    vec![
        Datum::Int32(id),
        Datum::Bool(true),
        Datum::Int8(i8::MAX),
        Datum::Int16(i16::MAX),
        Datum::Int32(i32::MAX),
        Datum::Int64(i64::MAX),
        Datum::from(f32::MAX),
        Datum::from(f64::MAX),
        string(&format!("{}\u{10FFFF}", "ü€😀".repeat(400))),
        string("ÄÖÜßé"),
        bytes(&[0xff; 4]),
        bytes(&[0xff; 300]),
        decimal(9_999_999_999, 10, 2),
        decimal(999_999_999_999_999_999, 18, 4),
        wide_decimal(NINES_38, 38, 10),
        date(DATE_MAX),
        time(86_399_000),
        time(TIME_MAX),
        time(TIME_MAX),
        time(TIME_MAX),
        timestamp(TS_MAX_SECOND_MS, 0),
        timestamp(TS_MAX_SECOND_MS + 999, 0),
        timestamp(TS_MAX_SECOND_MS + 999, 999_000),
        timestamp(ns_max_ms, ns_max_nanos),
        timestamp_ltz(TS_MAX_SECOND_MS + 999, 0),
        timestamp_ltz(TS_MAX_SECOND_MS + 999, 999_000),
        timestamp_ltz(ns_max_ms, ns_max_nanos),
    ]
}

/// The smallest value of every type.
fn smallest(id: i32) -> Values {
    let (ns_min_ms, ns_min_nanos) = split_nanos(NS_MIN_TESTED);
    vec![
        Datum::Int32(id),
        Datum::Bool(false),
        Datum::Int8(i8::MIN),
        Datum::Int16(i16::MIN),
        Datum::Int32(i32::MIN),
        Datum::Int64(i64::MIN),
        Datum::from(f32::MIN),
        Datum::from(f64::MIN),
        string(""),
        string(""),
        bytes(&[0; 4]),
        bytes(&[]),
        decimal(-9_999_999_999, 10, 2),
        decimal(-999_999_999_999_999_999, 18, 4),
        wide_decimal(-NINES_38, 38, 10),
        date(DATE_MIN),
        time(0),
        time(0),
        time(0),
        time(0),
        timestamp(TS_MIN_MS, 0),
        timestamp(TS_MIN_MS, 0),
        timestamp(TS_MIN_MS, 0),
        timestamp(ns_min_ms, ns_min_nanos),
        timestamp_ltz(TS_MIN_MS, 0),
        timestamp_ltz(TS_MIN_MS, 0),
        timestamp_ltz(ns_min_ms, ns_min_nanos),
    ]
}

/// Ordinary values: the smallest positive float and a subnormal double, text shorter than its
/// CHAR, bytes with zeros and high bits, tiny decimals, pre-epoch dates and timestamps with
/// sub-millisecond parts, times with milliseconds.
fn ordinary(id: i32) -> Values {
    vec![
        Datum::Int32(id),
        Datum::Bool(true),
        Datum::Int8(-1),
        Datum::Int16(1),
        Datum::Int32(0),
        Datum::Int64(-1),
        Datum::from(f32::MIN_POSITIVE),
        Datum::from(f64::from_bits(1)),
        string("Grüße, 世界 🦀"),
        string("ab"),
        bytes(b"ab\0d"),
        bytes(b"\x00\x01binary\x80"),
        decimal(-1, 10, 2),
        decimal(1, 18, 4),
        wide_decimal(1, 38, 10),
        date(-1),
        time(45_296_000),
        time(45_296_789),
        time(1),
        time(3_723_004),
        timestamp(-1_000, 0),
        timestamp(-1, 0),
        timestamp(-1, 999_000),
        timestamp(-1, 999_999),
        timestamp_ltz(0, 0),
        timestamp_ltz(LEAP_DAY_NOON_MS + 123, 456_000),
        timestamp_ltz(LEAP_DAY_NOON_MS + 123, 456_789),
    ]
}

/// Special floats (negative zero, infinities, NaN) and NULLs in every other value column.
fn specials(id: i32) -> Values {
    let mut row = vec![Datum::Null; value_columns().len()];
    row[0] = Datum::Int32(id);
    row[2] = Datum::Int8(0);
    row[6] = Datum::from(-0.0f32);
    row[7] = Datum::from(f64::NEG_INFINITY);
    row[8] = string("x");
    row[14] = wide_decimal(0, 38, 10);
    row[23] = timestamp(0, 1);
    row
}

fn nan_and_infinity(id: i32) -> Values {
    let mut row = specials(id);
    row[6] = Datum::from(f32::NAN);
    row[7] = Datum::from(f64::INFINITY);
    row
}

fn all_null(id: i32) -> Values {
    let mut row = vec![Datum::Null; value_columns().len()];
    row[0] = Datum::Int32(id);
    row
}

#[test]
fn every_scalar_type_round_trips_exactly_through_upsert_lookup_and_the_changelog() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let columns = value_columns();
        let types: Vec<DataType> = columns.iter().map(|(_, data_type)| data_type.clone()).collect();
        let schema = table_of(&columns, &["id"]);
        let path = create_table(&connection, "values", schema.clone(), 1, &[]).await;

        // The schema comes back with every type, length and precision as declared.
        let admin = connection.get_admin().expect("admin");
        let info = bounded("get_table_info", admin.get_table_info(&path)).await;
        let declared: Vec<(&str, &DataType)> =
            schema.row_type().fields().iter().map(|f| (f.name(), f.data_type())).collect();
        let stored: Vec<(&str, &DataType)> =
            info.get_row_type().fields().iter().map(|f| (f.name(), f.data_type())).collect();
        assert_eq!(stored, declared);

        let table = bounded("get_table", connection.get_table(&path)).await;
        let first = [largest(1), smallest(2), ordinary(3), all_null(4), specials(5)];
        write(&table, &first, &[]).await;
        // Updates of keys 1 and 4 (to other types' extremes and from all NULL), a delete of 2.
        let mut one = ordinary(1);
        one[8] = string("updated");
        let four = nan_and_infinity(4);
        write(&table, &[one.clone(), four.clone()], &[smallest(2)]).await;

        let mut lookuper =
            table.new_lookup().expect("new_lookup").create_lookuper().expect("lookuper");
        let expected = [
            (1, Some(&one)),
            (2, None),
            (3, Some(&first[2])),
            (4, Some(&four)),
            (5, Some(&first[4])),
            (6, None),
        ];
        for (id, want) in expected {
            let key = GenericRow::from_data(vec![Datum::Int32(id)]);
            let result = bounded(&format!("lookup {id}"), lookuper.lookup(&key)).await;
            let got = result.get_single_row().expect("one row at most");
            assert_eq!(
                got.map(|row| exact_row(&row, &types)),
                want.map(|row| exact_values(row)),
                "lookup of id {id}"
            );
        }

        let scanner = table.new_scan().create_log_scanner().expect("log scanner");
        bounded("subscribe", scanner.subscribe(0, EARLIEST_OFFSET)).await;
        let want: Vec<(ChangeType, &Values)> = vec![
            (ChangeType::Insert, &first[0]),
            (ChangeType::Insert, &first[1]),
            (ChangeType::Insert, &first[2]),
            (ChangeType::Insert, &first[3]),
            (ChangeType::Insert, &first[4]),
            (ChangeType::UpdateBefore, &first[0]),
            (ChangeType::UpdateAfter, &one),
            (ChangeType::UpdateBefore, &first[3]),
            (ChangeType::UpdateAfter, &four),
            (ChangeType::Delete, &first[1]),
        ];
        let changes = read_changelog(&scanner, want.len(), |row| exact_row(row, &types)).await;
        assert_offsets_dense(&changes);
        let got: Vec<(ChangeType, Exact)> = changes
            .into_values()
            .flatten()
            .map(|Change { change, row, .. }| (change, row))
            .collect();
        let want: Vec<(ChangeType, Exact)> =
            want.into_iter().map(|(change, row)| (change, exact_values(row))).collect();
        assert_eq!(got, want);
    });
    drop(node);
}

/// The earliest nanosecond timestamp: its milliseconds times 10^6 leave the i64 range before its
/// nanoseconds bring it back (kvtablet once refused it with CORRUPT_RECORD, which fluss-rs
/// retries without end).
#[test]
fn a_timestamp9_at_the_arrow_minimum_round_trips() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let columns = [
            ("id", DataTypes::int()),
            ("ts9", DataTypes::timestamp_with_precision(9)),
            ("ltz9", DataTypes::timestamp_ltz_with_precision(9)),
        ];
        let types: Vec<DataType> = columns.iter().map(|(_, data_type)| data_type.clone()).collect();
        let path = create_table(&connection, "ns_min", table_of(&columns, &["id"]), 1, &[]).await;
        let table = bounded("get_table", connection.get_table(&path)).await;
        // 1677-09-21T00:12:43.145224192, i64::MIN nanoseconds since the epoch.
        let (millis, nanos) = split_nanos(i64::MIN);
        let row = vec![Datum::Int32(1), timestamp(millis, nanos), timestamp_ltz(millis, nanos)];
        write(&table, std::slice::from_ref(&row), &[]).await;
        let mut lookuper =
            table.new_lookup().expect("new_lookup").create_lookuper().expect("lookuper");
        let key = GenericRow::from_data(vec![Datum::Int32(1)]);
        let result = bounded("lookup", lookuper.lookup(&key)).await;
        let got = result.get_single_row().expect("one row at most");
        assert_eq!(got.map(|found| exact_row(&found, &types)), Some(exact_values(&row)));
        let scanner = table.new_scan().create_log_scanner().expect("log scanner");
        bounded("subscribe", scanner.subscribe(0, EARLIEST_OFFSET)).await;
        let changes = read_changelog(&scanner, 1, |found| exact_row(found, &types)).await;
        let got: Vec<Exact> = changes.into_values().flatten().map(|change| change.row).collect();
        assert_eq!(got, vec![exact_values(&row)]);
    });
    drop(node);
}

// ------------------------------------------------------------------------------------------
// Primary keys of many types.

fn key_columns() -> Vec<(&'static str, DataType)> {
    vec![
        ("k_int", DataTypes::int()),
        ("k_str", DataTypes::string()),
        ("k_bool", DataTypes::boolean()),
        ("k_tiny", DataTypes::tinyint()),
        ("k_small", DataTypes::smallint()),
        ("k_big", DataTypes::bigint()),
        ("k_char", DataTypes::char(3)),
        ("k_bin", DataTypes::binary(2)),
        ("k_bytes", DataTypes::bytes()),
        ("k_dec", DataTypes::decimal(18, 4)),
        ("k_wide", DataTypes::decimal(38, 0)),
        ("k_date", DataTypes::date()),
        ("k_time", DataTypes::time_with_precision(3)),
        ("k_ts3", DataTypes::timestamp_with_precision(3)),
        ("k_ts9", DataTypes::timestamp_with_precision(9)),
        ("k_ltz", DataTypes::timestamp_ltz()),
        ("v", DataTypes::string()),
    ]
}

const KEY_ROWS: i32 = 40;
const KEY_BUCKETS: i32 = 3;
/// The bucket key, a prefix of the primary key (every column but `v`, in column order).
const BUCKET_KEY: [&str; 2] = ["k_int", "k_str"];

/// Key row `i` (every key distinct in `k_small`; extremes of several types among them) with
/// the value `v`.
fn key_row(i: i32, v: &str) -> Values {
    let i64_of = i64::from(i);
    let dec = match i {
        38 => -999_999_999_999_999_999,
        39 => 999_999_999_999_999_999,
        _ => (i64_of * 7 - 100) * if i % 5 == 0 { 10_000_000_000_000 } else { 1 },
    };
    let ts9 = match i {
        1 => i64::MAX,
        2 => NS_MIN_TESTED,
        _ => 946_684_800_000_000_000 + i64_of * 86_400_000_000_000 + i64_of,
    };
    let (ts9_ms, ts9_nanos) = split_nanos(ts9);
    let ltz_micros = -i64_of * 3_600_000_000 + 999_999 - i64_of;
    vec![
        Datum::Int32([i32::MIN, -1, 0, 1, i32::MAX][(i % 5) as usize]),
        string(["", "ä", "zz"][(i % 3) as usize]),
        Datum::Bool(i % 2 == 0),
        Datum::Int8([i8::MIN, 0, i8::MAX][(i % 3) as usize]),
        Datum::Int16(i as i16 - 20),
        Datum::Int64([i64::MIN, i64::MAX, 0, -1][(i % 4) as usize]),
        string(["", "a", "abc", "äöü"][(i % 4) as usize]),
        bytes(&[i as u8, 0xff]),
        bytes(&vec![(i % 4) as u8; (i % 3) as usize]),
        decimal(dec, 18, 4),
        wide_decimal(10i128.pow(37) * if i % 2 == 0 { -1 } else { 1 } + i128::from(i), 38, 0),
        date(i * 1000 - 20_000),
        time((i % 24) * 3_600_000 + (i % 60) * 60_000 + 59_999),
        timestamp(-62_135_596_800_000 + i64_of * 31_557_600_000 * 250, 0),
        timestamp(ts9_ms, ts9_nanos),
        timestamp_ltz(ltz_micros.div_euclid(1000), (ltz_micros.rem_euclid(1000) * 1000) as i32),
        string(v),
    ]
}

fn key_of(row: &[Datum]) -> Vec<Datum<'static>> {
    row[..row.len() - 1].iter().map(|datum| datum.clone().into_owned()).collect()
}

#[test]
fn primary_keys_of_many_types_are_written_looked_up_prefix_looked_up_and_logged() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let columns = key_columns();
        let types: Vec<DataType> = columns.iter().map(|(_, data_type)| data_type.clone()).collect();
        let key_names: Vec<&str> = columns[..columns.len() - 1].iter().map(|(n, _)| *n).collect();
        let schema = table_of(&columns, &key_names);
        let path = create_table(&connection, "keys", schema, KEY_BUCKETS, &BUCKET_KEY).await;
        let table = bounded("get_table", connection.get_table(&path)).await;

        // Every key inserted; every 7th deleted; every 5th written again (an update, or an
        // insert of a deleted key).
        let first: Vec<Values> = (0..KEY_ROWS).map(|i| key_row(i, &format!("row {i}"))).collect();
        let deleted: Vec<i32> = (0..KEY_ROWS).filter(|i| i % 7 == 0).collect();
        let rewritten: Vec<i32> = (0..KEY_ROWS).filter(|i| i % 5 == 0).collect();
        let second = |i: i32| key_row(i, &format!("row {i}, second"));
        write(&table, &first, &[]).await;
        let deletes: Vec<Values> = deleted.iter().map(|&i| first[i as usize].clone()).collect();
        write(&table, &[], &deletes).await;
        let again: Vec<Values> = rewritten.iter().map(|&i| second(i)).collect();
        write(&table, &again, &[]).await;

        // The model: each key's changelog and its final row.
        let mut model: Vec<KeyModel> = Vec::new();
        for i in 0..KEY_ROWS {
            let row = first[i as usize].clone();
            let mut log = vec![(ChangeType::Insert, row.clone())];
            let mut live = Some(row.clone());
            if deleted.contains(&i) {
                log.push((ChangeType::Delete, row.clone()));
                live = None;
            }
            if rewritten.contains(&i) {
                if live.is_some() {
                    log.push((ChangeType::UpdateBefore, row.clone()));
                    log.push((ChangeType::UpdateAfter, second(i)));
                } else {
                    log.push((ChangeType::Insert, second(i)));
                }
                live = Some(second(i));
            }
            model.push((log, live));
        }

        let mut lookuper =
            table.new_lookup().expect("new_lookup").create_lookuper().expect("lookuper");
        for (i, (_, live)) in model.iter().enumerate() {
            let key = GenericRow::from_data(key_of(&first[i]));
            let result = bounded(&format!("lookup of key row {i}"), lookuper.lookup(&key)).await;
            let got = result.get_single_row().expect("one row at most");
            assert_eq!(
                got.map(|row| exact_row(&row, &types)),
                live.as_ref().map(|row| exact_values(row)),
                "lookup of key row {i}"
            );
        }

        let bucket_key: Vec<String> = BUCKET_KEY.iter().map(|key| key.to_string()).collect();
        let mut prefix_lookuper = table
            .new_lookup()
            .expect("new_lookup")
            .lookup_by(bucket_key)
            .create_lookuper()
            .expect("prefix lookuper");
        let mut prefixes: Vec<Values> = first.iter().map(|row| row[..2].to_vec()).collect();
        prefixes.sort_by_key(|prefix| exact_values(prefix));
        prefixes.dedup_by_key(|prefix| exact_values(prefix));
        for prefix in prefixes {
            let what = format!("prefix lookup of {:?}", exact_values(&prefix));
            let key = GenericRow::from_data(prefix.clone());
            let result = bounded(&what, prefix_lookuper.lookup(&key)).await;
            let mut got: Vec<Exact> =
                result.get_rows().expect("rows").iter().map(|row| exact_row(row, &types)).collect();
            let mut want: Vec<Exact> = model
                .iter()
                .filter_map(|(_, live)| live.as_ref())
                .filter(|row| exact_values(&row[..2]) == exact_values(&prefix))
                .map(|row| exact_values(row))
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{what}");
        }

        // The changelog of every bucket: each key's changes in order, in one bucket.
        let scanner = table.new_scan().create_log_scanner().expect("log scanner");
        for bucket in 0..KEY_BUCKETS {
            bounded("subscribe", scanner.subscribe(bucket, EARLIEST_OFFSET)).await;
        }
        let total = model.iter().map(|(log, _)| log.len()).sum();
        let changes = read_changelog(&scanner, total, |row| exact_row(row, &types)).await;
        assert_offsets_dense(&changes);
        let key_len = types.len() - 1;
        for (i, (log, _)) in model.iter().enumerate() {
            let key = exact_values(&key_of(&first[i]));
            let buckets: Vec<&(Option<i64>, i32)> = changes
                .iter()
                .filter(|(_, records)| records.iter().any(|c| c.row[..key_len] == key[..]))
                .map(|(bucket, _)| bucket)
                .collect();
            assert_eq!(buckets.len(), 1, "key row {i} is in one bucket: {buckets:?}");
            let got: Vec<(ChangeType, Exact)> = changes[buckets[0]]
                .iter()
                .filter(|c| c.row[..key_len] == key[..])
                .map(|c| (c.change, c.row.clone()))
                .collect();
            let want: Vec<(ChangeType, Exact)> =
                log.iter().map(|(change, row)| (*change, exact_values(row))).collect();
            assert_eq!(got, want, "changelog of key row {i}");
        }
    });
    drop(node);
}

// ------------------------------------------------------------------------------------------
// Nested types.

#[test]
fn array_map_and_row_value_columns_are_created_and_nested_keys_refused() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let admin = connection.get_admin().expect("admin");
        bounded("create_database", admin.create_database(DB, None, true)).await;
        let array = DataTypes::array(DataTypes::int());
        let map = DataTypes::map(DataTypes::string(), DataTypes::int());
        let row = DataTypes::row(vec![
            DataTypes::field("x", DataTypes::int()),
            DataTypes::field("y", DataTypes::string()),
        ]);
        // Value columns of the nested types are accepted (their rows round-trip in
        // `nested_values_round_trip_through_lookup_the_changelog_and_limit_scans`).
        let values = [
            ("array_value", ("v", array.clone())),
            ("map_value", ("v", map.clone())),
            ("row_value", ("v", row.clone())),
        ];
        for (name, value) in values {
            create_table(
                &connection,
                name,
                table_of(&[("k", DataTypes::int()), value], &["k"]),
                1,
                &[],
            )
            .await;
            let path = TablePath::new(DB, name);
            assert!(bounded("table_exists", admin.table_exists(&path)).await, "{name} missing");
        }
        // As keys they are refused, as Fluss refuses them, and nothing is left behind.
        let keys = [("array_key", array), ("map_key", map), ("row_key", row)];
        for (name, key) in keys {
            let schema = table_of(&[("k", key), ("v", DataTypes::int())], &["k"]);
            let descriptor = TableDescriptor::builder()
                .schema(schema)
                .distributed_by(Some(1), vec![])
                .build()
                .expect("descriptor");
            let path = TablePath::new(DB, name);
            let what = format!("create_table {name}");
            let error = refused(&what, admin.create_table(&path, &descriptor, false)).await;
            assert_api_error(&what, &error, FlussError::InvalidTableException);
            assert!(!bounded("table_exists", admin.table_exists(&path)).await, "{name} exists");
        }
        let mut tables = bounded("list_tables", admin.list_tables(DB)).await;
        tables.sort();
        assert_eq!(tables, vec!["array_value", "map_value", "row_value"]);
    });
    drop(node);
}

/// A value as the nested tests write and compare it: a scalar leaf, NULL, or an ARRAY, MAP
/// (entries in stored order, duplicate keys kept) or ROW of such values. Written as `Nested<Datum>`;
/// compared as `Nested<String>`, every leaf printed exactly by `exact`.
#[derive(Clone, Debug, PartialEq)]
enum Nested<L> {
    Null,
    Leaf(L),
    Array(Vec<Nested<L>>),
    Map(Vec<(Nested<L>, Nested<L>)>),
    Row(Vec<Nested<L>>),
}

type Value = Nested<Datum<'static>>;
type Shown = Nested<String>;

fn shown(value: &Value) -> Shown {
    match value {
        Nested::Null => Nested::Null,
        Nested::Leaf(datum) => Nested::Leaf(exact(datum)),
        Nested::Array(items) => Nested::Array(items.iter().map(shown).collect()),
        Nested::Map(entries) => {
            Nested::Map(entries.iter().map(|(key, value)| (shown(key), shown(value))).collect())
        }
        Nested::Row(fields) => Nested::Row(fields.iter().map(shown).collect()),
    }
}

fn leaf(datum: Datum<'static>) -> Value {
    Nested::Leaf(datum)
}

fn int(i: i32) -> Value {
    leaf(Datum::Int32(i))
}

fn big(i: i64) -> Value {
    leaf(Datum::Int64(i))
}

fn text(s: &str) -> Value {
    leaf(string(s))
}

fn double(f: f64) -> Value {
    leaf(Datum::from(f))
}

fn array(items: Vec<Value>) -> Value {
    Nested::Array(items)
}

fn map(entries: Vec<(Value, Value)>) -> Value {
    Nested::Map(entries)
}

fn row(fields: Vec<Value>) -> Value {
    Nested::Row(fields)
}

/// `datum` (already of `element_type`, or NULL) as element `pos` of `writer`.
fn write_element(writer: &mut FlussArrayWriter, pos: usize, datum: Datum, element_type: &DataType) {
    match (element_type, &datum) {
        (_, Datum::Null) => writer.set_null_at(pos),
        (DataType::Boolean(_), Datum::Bool(b)) => writer.write_boolean(pos, *b),
        (DataType::Int(_), Datum::Int32(i)) => writer.write_int(pos, *i),
        (DataType::BigInt(_), Datum::Int64(i)) => writer.write_long(pos, *i),
        (DataType::Double(_), Datum::Float64(f)) => writer.write_double(pos, f.0),
        (DataType::String(_), Datum::String(s)) => writer.write_string(pos, s),
        (DataType::Decimal(d), Datum::Decimal(v)) => writer.write_decimal(pos, v, d.precision()),
        (DataType::Date(_), Datum::Date(d)) => writer.write_date(pos, *d),
        (DataType::Timestamp(t), Datum::TimestampNtz(ts)) => {
            writer.write_timestamp_ntz(pos, ts, t.precision())
        }
        (DataType::Array(_), Datum::Array(a)) => writer.write_array(pos, a),
        (DataType::Map(_), Datum::Map(m)) => writer.write_map(pos, m),
        (DataType::Row(_), Datum::Row(r)) => {
            writer.write_row(pos, r.as_ref()).expect("row element")
        }
        (element_type, datum) => panic!("no {element_type:?} element from {datum:?}"),
    }
}

/// `value` as the client writes a value of `data_type`: a `FlussArray`, a `FlussMap`, a
/// `GenericRow` or a scalar datum.
fn to_datum(value: &Value, data_type: &DataType) -> Datum<'static> {
    match (value, data_type) {
        (Nested::Null, _) => Datum::Null,
        (Nested::Leaf(datum), _) => datum.clone(),
        (Nested::Array(items), DataType::Array(array_type)) => {
            let element_type = array_type.get_element_type();
            let mut writer = FlussArrayWriter::new(items.len(), element_type);
            for (pos, item) in items.iter().enumerate() {
                write_element(&mut writer, pos, to_datum(item, element_type), element_type);
            }
            Datum::Array(writer.complete().expect("array"))
        }
        (Nested::Map(entries), DataType::Map(map_type)) => {
            let (key_type, value_type) = (map_type.key_type(), map_type.value_type());
            let mut writer = FlussMapWriter::new(entries.len(), key_type, value_type);
            for (key, value) in entries {
                writer
                    .write_entry(to_datum(key, key_type), to_datum(value, value_type))
                    .expect("map entry");
            }
            Datum::Map(writer.complete().expect("map"))
        }
        (Nested::Row(fields), DataType::Row(row_type)) => {
            assert_eq!(fields.len(), row_type.fields().len(), "fields of {row_type:?}");
            let data = fields
                .iter()
                .zip(row_type.fields())
                .map(|(field, declared)| to_datum(field, declared.data_type()))
                .collect();
            Datum::Row(Box::new(GenericRow::from_data(data)))
        }
        (value, data_type) => panic!("{value:?} is no {data_type:?}"),
    }
}

/// Field or element `pos` of `getters` (a row, an array, a map's keys or values; binary or
/// columnar), read recursively through the client's typed getters as a value of `data_type`.
fn read_nested<G: DataGetters + ?Sized>(getters: &G, pos: usize, data_type: &DataType) -> Shown {
    let what = |error: fluss::error::Error| format!("{data_type:?} at {pos}: {error}");
    if getters.is_null_at(pos).unwrap_or_else(|e| panic!("{}", what(e))) {
        return Nested::Null;
    }
    let scalar = |datum: fluss::error::Result<Datum>| {
        Nested::Leaf(exact(&datum.unwrap_or_else(|e| panic!("{}", what(e)))))
    };
    match data_type {
        DataType::Boolean(_) => scalar(getters.get_boolean(pos).map(Datum::Bool)),
        DataType::Int(_) => scalar(getters.get_int(pos).map(Datum::Int32)),
        DataType::BigInt(_) => scalar(getters.get_long(pos).map(Datum::Int64)),
        DataType::Double(_) => scalar(getters.get_double(pos).map(Datum::from)),
        DataType::String(_) => scalar(getters.get_string(pos).map(|s| string(s))),
        DataType::Decimal(d) => scalar(
            getters
                .get_decimal(pos, d.precision() as usize, d.scale() as usize)
                .map(Datum::Decimal),
        ),
        DataType::Date(_) => scalar(getters.get_date(pos).map(Datum::Date)),
        DataType::Timestamp(t) => {
            scalar(getters.get_timestamp_ntz(pos, t.precision()).map(Datum::TimestampNtz))
        }
        DataType::Array(array_type) => read_array(
            getters.get_array(pos).unwrap_or_else(|e| panic!("{}", what(e))),
            array_type.get_element_type(),
        ),
        DataType::Map(map_type) => {
            read_map(getters.get_map(pos).unwrap_or_else(|e| panic!("{}", what(e))), map_type)
        }
        DataType::Row(row_type) => {
            let nested = getters.get_row(pos).unwrap_or_else(|e| panic!("{}", what(e)));
            assert_eq!(nested.get_field_count(), row_type.fields().len(), "fields of {row_type:?}");
            Nested::Row(
                row_type
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, field)| read_nested(&nested, i, field.data_type()))
                    .collect(),
            )
        }
        other => panic!("the nested test reads no {other:?}"),
    }
}

/// An array read in the form the client hands it out: a binary array (from a lookup, a limit
/// scan or a binary row) or a columnar one (from the changelog's Arrow batches).
fn read_array(array: ArrayView, element_type: &DataType) -> Shown {
    match array {
        ArrayView::Binary(array) => Nested::Array(
            (0..array.size()).map(|i| read_binary_element(&array, i, element_type)).collect(),
        ),
        ArrayView::Columnar(array) => Nested::Array(
            (0..InternalArray::size(&array))
                .map(|i| read_nested(&array, i, element_type))
                .collect(),
        ),
    }
}

fn read_map(map: MapView, map_type: &MapType) -> Shown {
    let (key_type, value_type) = (map_type.key_type(), map_type.value_type());
    match map {
        MapView::Binary(map) => Nested::Map(
            (0..map.size())
                .map(|i| {
                    (
                        read_binary_element(map.key_array(), i, key_type),
                        read_binary_element(map.value_array(), i, value_type),
                    )
                })
                .collect(),
        ),
        MapView::Columnar(map) => {
            let (keys, values) = (map.key_array(), map.value_array());
            Nested::Map(
                (0..InternalMap::size(&map))
                    .map(|i| (read_nested(keys, i, key_type), read_nested(values, i, value_type)))
                    .collect(),
            )
        }
    }
}

/// Element `pos` of a binary array. fluss-rs 1.0.0's `DataGetters` for `FlussArray` has no
/// `get_map` or `get_row` (the trait's defaults refuse them: "get_row not supported"), so MAP
/// and ROW elements are read with `FlussArray`'s own getters, which take the element type.
fn read_binary_element(array: &FlussArray, pos: usize, element_type: &DataType) -> Shown {
    let what = |error: fluss::error::Error| format!("{element_type:?} element {pos}: {error}");
    if array.is_null_at(pos) {
        return Nested::Null;
    }
    match element_type {
        DataType::Map(map_type) => {
            let map = array
                .get_map(pos, map_type.key_type(), map_type.value_type())
                .unwrap_or_else(|e| panic!("{}", what(e)));
            read_map(MapView::Binary(map), map_type)
        }
        DataType::Row(row_type) => {
            let nested = array.get_row(pos, row_type).unwrap_or_else(|e| panic!("{}", what(e)));
            Nested::Row(
                row_type
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(i, field)| read_nested(&nested, i, field.data_type()))
                    .collect(),
            )
        }
        _ => read_nested(array, pos, element_type),
    }
}

/// Every column of `row`, read as a column of the type it was declared with.
/// Every column of `row`, read in place through the typed getters; the same columns
/// materialized as datums (`FieldGetter`, which re-encodes Arrow values as binary arrays, maps
/// and rows) must read the same.
fn read_nested_row<R: InternalRow>(row: &R, types: &[DataType]) -> Vec<Shown> {
    let in_place =
        types.iter().enumerate().map(|(pos, data_type)| read_nested(row, pos, data_type));
    let in_place: Vec<Shown> = in_place.collect();
    let datums: Values = types
        .iter()
        .enumerate()
        .map(|(pos, data_type)| {
            let datum = FieldGetter::create(data_type, pos)
                .get_field(row)
                .unwrap_or_else(|error| panic!("column {pos} ({data_type:?}): {error}"));
            datum.into_owned()
        })
        .collect();
    let materialized = GenericRow::from_data(datums);
    let materialized: Vec<Shown> = types
        .iter()
        .enumerate()
        .map(|(pos, data_type)| read_nested(&materialized, pos, data_type))
        .collect();
    assert_eq!(materialized, in_place, "a row read as datums and in place");
    in_place
}

fn nested_columns() -> Vec<(&'static str, DataType)> {
    let f = DataTypes::field;
    vec![
        ("id", DataTypes::int()),
        ("tags", DataTypes::array(DataTypes::string())),
        ("ints", DataTypes::array(DataTypes::int().as_non_nullable())),
        ("matrix", DataTypes::array(DataTypes::array(DataTypes::bigint()))),
        ("attrs", DataTypes::map(DataTypes::string(), DataTypes::int())),
        ("lists", DataTypes::map(DataTypes::int(), DataTypes::array(DataTypes::string()))),
        (
            "point",
            DataTypes::row(vec![
                f("x", DataTypes::bigint()),
                f("label", DataTypes::string()),
                f(
                    "inner",
                    DataTypes::row(vec![
                        f("d", DataTypes::double()),
                        f("at", DataTypes::timestamp_with_precision(9)),
                    ]),
                ),
            ]),
        ),
        (
            "events",
            DataTypes::array(DataTypes::row(vec![
                f("at", DataTypes::timestamp()),
                f("amount", DataTypes::decimal(38, 10)),
                f("ok", DataTypes::boolean()),
            ])),
        ),
        (
            "by_day",
            DataTypes::map(
                DataTypes::int(),
                DataTypes::row(vec![f("day", DataTypes::date()), f("score", DataTypes::double())]),
            ),
        ),
    ]
}

/// Column positions in `nested_columns`.
const MATRIX: usize = 3;
const POINT: usize = 6;
const EVENTS: usize = 7;
const BY_DAY: usize = 8;

/// Every column set, with NULLs at every level: NULL array elements (strings short enough to
/// be inlined and longer), a NULL inner array, NULL map values, NULL row fields, a NULL row in
/// an array, a NULL row as a map value; extremes of each element type.
fn nested_full(id: i32, label: &str) -> Vec<Value> {
    let event = |millis, nanos, unscaled, ok| {
        row(vec![
            leaf(timestamp(millis, nanos)),
            leaf(wide_decimal(unscaled, 38, 10)),
            leaf(Datum::Bool(ok)),
        ])
    };
    vec![
        int(id),
        array(vec![text("a"), Nested::Null, text("a string longer than seven bytes"), text("")]),
        array(vec![int(0), int(-1), int(i32::MAX), int(i32::MIN)]),
        array(vec![
            array(vec![big(1), Nested::Null, big(i64::MIN)]),
            array(vec![]),
            Nested::Null,
            array(vec![big(i64::MAX)]),
        ]),
        map(vec![(text("k"), int(1)), (text("none"), Nested::Null), (text(""), int(i32::MIN))]),
        map(vec![
            (int(7), array(vec![text("x"), Nested::Null])),
            (int(-1), array(vec![])),
            (int(0), Nested::Null),
        ]),
        row(vec![
            big(i64::MIN),
            text(label),
            row(vec![double(-0.5), leaf(timestamp(LEAP_DAY_NOON_MS + 123, 456_789))]),
        ]),
        array(vec![
            event(LEAP_DAY_NOON_MS, 123_000, -123_456_789_012_345_678_900_123_456_789, true),
            Nested::Null,
            row(vec![Nested::Null, Nested::Null, Nested::Null]),
            event(-1, 999_000, NINES_38, false),
        ]),
        map(vec![
            (int(7), row(vec![leaf(date(-1)), double(f64::MIN_POSITIVE)])),
            (int(-1), Nested::Null),
            (int(i32::MAX), row(vec![Nested::Null, double(f64::MAX)])),
        ]),
    ]
}

/// Empty arrays and maps (an array holding one empty array, a map holding an empty array), a
/// ROW whose fields are all NULL.
fn nested_empty(id: i32) -> Vec<Value> {
    vec![
        int(id),
        array(vec![]),
        array(vec![]),
        array(vec![array(vec![])]),
        map(vec![]),
        map(vec![(int(1), array(vec![]))]),
        row(vec![Nested::Null, Nested::Null, Nested::Null]),
        array(vec![]),
        map(vec![]),
    ]
}

/// NULL for every nested column.
fn nested_null(id: i32) -> Vec<Value> {
    let mut values = vec![Nested::Null; nested_columns().len()];
    values[0] = int(id);
    values
}

/// Long arrays (lengths and offsets of several bytes), a map with a duplicate key, a ROW with
/// a long string and a NULL nested ROW.
fn nested_long(id: i32) -> Vec<Value> {
    let tags = (0..300)
        .map(|i| if i % 50 == 7 { Nested::Null } else { text(&format!("tag number {i}")) })
        .collect();
    let matrix = (0..200).map(|i| array((0..i % 5).map(big).collect())).collect();
    let mut values = nested_null(id);
    values[1] = array(tags);
    values[2] = array((-1500..1500).map(int).collect());
    values[3] = array(matrix);
    values[4] = map(vec![(text("dup"), int(1)), (text("dup"), Nested::Null)]);
    values[6] = row(vec![big(0), text(&"long label ".repeat(40)), Nested::Null]);
    values
}

/// A NULL ROW column, an array of only a NULL element, an array of only a NULL row, a map of
/// only a row of NULLs.
fn nested_null_row(id: i32) -> Vec<Value> {
    let mut values = nested_null(id);
    values[1] = array(vec![Nested::Null]);
    values[3] = array(vec![Nested::Null]);
    values[6] = Nested::Null;
    values[7] = array(vec![Nested::Null]);
    values[8] = map(vec![(int(0), row(vec![Nested::Null, Nested::Null]))]);
    values
}

fn nested_datums(values: &[Value], types: &[DataType]) -> Values {
    values.iter().zip(types).map(|(value, data_type)| to_datum(value, data_type)).collect()
}

fn shown_row(values: &[Value]) -> Vec<Shown> {
    values.iter().map(shown).collect()
}

/// ARRAY, MAP and ROW values, nested in each other, written by the upsert writer as fluss-rs
/// encodes them (`FlussArray`, `FlussMap`, `GenericRow` datums) and read back exactly, element
/// by element through the client's typed getters: by lookup (binary rows), through the
/// changelog (Arrow batches, whole and projected to one nested column) and by limit scans
/// (whole and projected); with an update of a nested row, an update from all NULL and a delete
/// of a row with a NULL ROW.
#[test]
fn nested_values_round_trip_through_lookup_the_changelog_and_limit_scans() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let columns = nested_columns();
        let types: Vec<DataType> = columns.iter().map(|(_, data_type)| data_type.clone()).collect();
        let schema = table_of(&columns, &["id"]);
        let path = create_table(&connection, "nested", schema.clone(), 1, &[]).await;

        // The schema comes back with every nested type as declared (field names, nullability).
        let admin = connection.get_admin().expect("admin");
        let info = bounded("get_table_info", admin.get_table_info(&path)).await;
        assert_eq!(info.get_row_type(), schema.row_type());

        let table = bounded("get_table", connection.get_table(&path)).await;
        let first = [
            nested_full(1, "origin"),
            nested_empty(2),
            nested_null(3),
            nested_long(4),
            nested_null_row(5),
        ];
        let datums = |rows: &[Vec<Value>]| -> Vec<Values> {
            rows.iter().map(|values| nested_datums(values, &types)).collect()
        };
        write(&table, &datums(&first), &[]).await;
        // An update of a nested row, an update of the all-NULL row, a delete of the NULL ROW.
        let one = {
            let mut values = nested_full(1, "moved");
            values[1] = array(vec![text("updated")]);
            values[4] = map(vec![]);
            values
        };
        let three = nested_full(3, "from null");
        write(&table, &datums(&[one.clone(), three.clone()]), &datums(&first[4..])).await;

        let live = [&one, &first[1], &three, &first[3]];

        let mut lookuper =
            table.new_lookup().expect("new_lookup").create_lookuper().expect("lookuper");
        let expected = [
            (1, Some(&one)),
            (2, Some(&first[1])),
            (3, Some(&three)),
            (4, Some(&first[3])),
            (5, None),
        ];
        for (id, want) in expected {
            let key = GenericRow::from_data(vec![Datum::Int32(id)]);
            let result = bounded(&format!("lookup {id}"), lookuper.lookup(&key)).await;
            let got = result.get_single_row().expect("one row at most");
            assert_eq!(
                got.map(|found| read_nested_row(&found, &types)),
                want.map(|values| shown_row(values)),
                "lookup of id {id}"
            );
        }

        // The changelog, whole.
        let want: Vec<(ChangeType, &Vec<Value>)> = vec![
            (ChangeType::Insert, &first[0]),
            (ChangeType::Insert, &first[1]),
            (ChangeType::Insert, &first[2]),
            (ChangeType::Insert, &first[3]),
            (ChangeType::Insert, &first[4]),
            (ChangeType::UpdateBefore, &first[0]),
            (ChangeType::UpdateAfter, &one),
            (ChangeType::UpdateBefore, &first[2]),
            (ChangeType::UpdateAfter, &three),
            (ChangeType::Delete, &first[4]),
        ];
        let scanner = table.new_scan().create_log_scanner().expect("log scanner");
        bounded("subscribe", scanner.subscribe(0, EARLIEST_OFFSET)).await;
        let changes =
            read_changelog(&scanner, want.len(), |found| read_nested_row(found, &types)).await;
        assert_offsets_dense(&changes);
        let got: Vec<(ChangeType, Vec<Shown>)> =
            changes.into_values().flatten().map(|c| (c.change, c.row)).collect();
        let whole: Vec<(ChangeType, Vec<Shown>)> =
            want.iter().map(|(change, values)| (*change, shown_row(values))).collect();
        assert_eq!(got, whole, "the whole changelog");

        // The changelog projected to one nested column (the server's Arrow batches carry that
        // column only).
        for column in [MATRIX, POINT, EVENTS, BY_DAY] {
            let what = format!("the changelog projected to {}", columns[column].0);
            let scanner = table
                .new_scan()
                .project(&[column])
                .expect("projection")
                .create_log_scanner()
                .expect("projected log scanner");
            bounded("subscribe", scanner.subscribe(0, EARLIEST_OFFSET)).await;
            let only = std::slice::from_ref(&types[column]);
            let changes = read_changelog(&scanner, want.len(), |found| {
                assert_eq!(found.get_field_count(), 1, "{what}: columns");
                read_nested_row(found, only)
            })
            .await;
            assert_offsets_dense(&changes);
            let got: Vec<(ChangeType, Vec<Shown>)> =
                changes.into_values().flatten().map(|c| (c.change, c.row)).collect();
            let projected: Vec<(ChangeType, Vec<Shown>)> = want
                .iter()
                .map(|(change, values)| (*change, vec![shown(&values[column])]))
                .collect();
            assert_eq!(got, projected, "{what}");
        }

        // Limit scans of the bucket: the live rows, whole and projected to one nested column.
        let bucket = TableBucket::new(info.table_id, 0);
        let fields = info.get_row_type().fields().clone();
        for projection in [None, Some(vec![EVENTS]), Some(vec![POINT, 0])] {
            let what = format!("limit scan projected to {projection:?}");
            let mut scan = table.new_scan().limit(10).expect("limit");
            let picked: Vec<usize> = match &projection {
                Some(picked) => {
                    scan = scan.project(picked).expect("projection");
                    picked.clone()
                }
                None => (0..columns.len()).collect(),
            };
            let mut scanner =
                scan.create_bucket_batch_scanner(bucket.clone()).expect("batch scanner");
            let batches = bounded(&what, scanner.collect_all_batches()).await;
            let row_type =
                Arc::new(RowType::new(picked.iter().map(|&i| fields[i].clone()).collect()));
            let picked_types: Vec<DataType> = picked.iter().map(|&i| types[i].clone()).collect();
            let mut got: Vec<Vec<Shown>> = Vec::new();
            for batch in &batches {
                let batch = Arc::new(batch.batch().clone());
                assert_eq!(batch.num_columns(), picked.len(), "{what}: columns");
                for row_id in 0..batch.num_rows() {
                    let found = ColumnarRow::new(batch.clone(), row_type.clone(), row_id, None)
                        .unwrap_or_else(|error| panic!("{what}: row {row_id}: {error}"));
                    got.push(read_nested_row(&found, &picked_types));
                }
            }
            let mut want: Vec<Vec<Shown>> = live
                .iter()
                .map(|values| picked.iter().map(|&i| shown(&values[i])).collect())
                .collect();
            got.sort_by_key(|row| format!("{row:?}"));
            want.sort_by_key(|row| format!("{row:?}"));
            assert_eq!(got, want, "{what}");
        }
    });
    drop(node);
}
