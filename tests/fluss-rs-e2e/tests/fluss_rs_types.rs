//! Every scalar type kvtablet supports, through the official Rust client `fluss-rs` 1.0.0
//! against `kvtablet serve`: BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, STRING,
//! CHAR(n), BINARY(n), BYTES, DECIMAL (compact, precision <= 18, and wide), DATE, TIME,
//! TIMESTAMP and TIMESTAMP_LTZ of several precisions; as values (boundary values, NULLs) and as
//! primary-key columns. Every value is written with the upsert writer and read back exactly
//! (floats bit for bit) by lookup, prefix lookup and the changelog (log scanner). ARRAY, MAP and
//! ROW columns are refused at CreateTable (INVALID_TABLE).
//!
//! fluss-rs holds TIME in milliseconds (as Fluss stores it), so every TIME value here is whole
//! milliseconds; a TIMESTAMP(p) or TIME(p) value carries no digit finer than its precision, as
//! the changelog's Arrow columns keep only those.

mod support;

use fluss::client::{FlussConnection, FlussTable, EARLIEST_OFFSET};
use fluss::metadata::{DataType, DataTypes, Schema, TableDescriptor, TablePath};
use fluss::record::ChangeType;
use fluss::row::field_getter::FieldGetter;
use fluss::row::{Date, Datum, Decimal, GenericRow, InternalRow, Time, TimestampLtz, TimestampNtz};
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
        // Value columns of the nested types are accepted (their rows round-trip in the pyfluss
        // suite's test_nested_types.py).
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
