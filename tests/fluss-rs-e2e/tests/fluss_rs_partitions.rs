//! Partitioned primary-key tables through the official Rust client `fluss-rs` 1.0.0 against
//! `kvtablet serve`: a table partitioned by two STRING columns of its primary key, partitions
//! created explicitly (CreatePartition), listed whole and by a partial spec, and dropped;
//! upserts, lookups, prefix lookups, list offsets and the changelog of each partition apart; a
//! dropped partition's rows gone and its buckets refused (PARTITION_NOT_EXISTS, 36) while the
//! other partitions keep working; a partition that never existed refused.
//!
//! fluss-rs 1.0 resolves a partition by name through the metadata before it sends anything to
//! a bucket: when the server answers PARTITION_NOT_EXISTS there, a lookup gives no row and a
//! write is kept pending (never sent, never acknowledged). Once it knows a partition's id, it
//! asks that partition's buckets directly, and a dropped partition's refusal reaches the
//! caller.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use fluss::client::{FlussConnection, FlussTable, EARLIEST_OFFSET};
use fluss::metadata::{DataTypes, PartitionSpec, Schema, TableDescriptor, TablePath};
use fluss::record::ChangeType;
use fluss::row::{DataGetters, Datum, GenericRow};
use fluss::rpc::message::OffsetSpec;
use fluss::rpc::FlussError;

use support::{
    acknowledged, assert_api_error, assert_offsets_dense, bounded, read_changelog, refused, Change,
    Node,
};

const DB: &str = "parts";
const TABLE: &str = "events";
const BUCKETS: i32 = 2;
/// Rows per partition: `IDS` ids times `SUBS`.
const IDS: i32 = 10;
const SUBS: [&str; 2] = ["a", "b"];
/// `(region, day)`, the partition keys.
const PARTITIONS: [Partition; 3] = [("EU", "d1"), ("EU", "d2"), ("US", "d1")];
/// How long a write to a partition that never existed is watched for an acknowledgement.
const NEVER_ACKNOWLEDGED_WAIT: Duration = Duration::from_secs(3);

type Partition = (&'static str, &'static str);

/// A row of the table: `(id, sub)` is its key within its partition `(region, day)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    region: String,
    day: String,
    id: i32,
    sub: String,
    v: Option<String>,
}

fn event(partition: Partition, id: i32, sub: &str, v: Option<String>) -> Event {
    let (region, day) = partition;
    Event { region: region.to_string(), day: day.to_string(), id, sub: sub.to_string(), v }
}

/// Every row of `partition` at `version`.
fn rows_of(partition: Partition, version: u32) -> Vec<Event> {
    let (region, day) = partition;
    (0..IDS)
        .flat_map(|id| {
            SUBS.map(|sub| {
                event(partition, id, sub, Some(format!("{region}-{day}-{id}-{sub}-v{version}")))
            })
        })
        .collect()
}

/// The columns in table order: `id, sub, region, day, v`.
fn generic(event: &Event) -> GenericRow<'static> {
    let mut row = GenericRow::new(5);
    row.set_field(0, event.id);
    row.set_field(1, event.sub.clone());
    row.set_field(2, event.region.clone());
    row.set_field(3, event.day.clone());
    if let Some(v) = &event.v {
        row.set_field(4, v.clone());
    }
    row
}

fn read(row: &dyn DataGetters) -> Event {
    let text = |pos: usize| row.get_string(pos).expect("a STRING column").to_string();
    Event {
        id: row.get_int(0).expect("id"),
        sub: text(1),
        region: text(2),
        day: text(3),
        v: (!row.is_null_at(4).expect("v")).then(|| text(4)),
    }
}

/// The lookup key: the primary key `(id, sub, region, day)`.
fn key_of(partition: Partition, id: i32, sub: &str) -> GenericRow<'static> {
    let (region, day) = partition;
    GenericRow::from_data(vec![
        Datum::Int32(id),
        Datum::from(sub.to_string()),
        Datum::from(region.to_string()),
        Datum::from(day.to_string()),
    ])
}

fn spec_of(pairs: &[(&str, &str)]) -> PartitionSpec {
    PartitionSpec::new(pairs.iter().copied().collect())
}

fn full_spec(partition: Partition) -> PartitionSpec {
    spec_of(&[("region", partition.0), ("day", partition.1)])
}

fn name_of(partition: Partition) -> String {
    format!("{}${}", partition.0, partition.1)
}

fn path() -> TablePath {
    TablePath::new(DB, TABLE)
}

/// The partitioned table, created empty: primary key `(id, sub, region, day)`, partitioned by
/// `(region, day)`, bucketed by `id` into `BUCKETS` buckets.
async fn create_table(connection: &FlussConnection) {
    let admin = connection.get_admin().expect("admin");
    bounded("create_database", admin.create_database(DB, None, true)).await;
    let schema = Schema::builder()
        .column("id", DataTypes::int())
        .column("sub", DataTypes::string())
        .column("region", DataTypes::string())
        .column("day", DataTypes::string())
        .column("v", DataTypes::string())
        .primary_key(vec!["id", "sub", "region", "day"])
        .expect("primary key")
        .build()
        .expect("schema");
    let descriptor = TableDescriptor::builder()
        .schema(schema)
        .partitioned_by(vec!["region", "day"])
        .distributed_by(Some(BUCKETS), vec!["id".to_string()])
        .build()
        .expect("descriptor");
    bounded("create_table", admin.create_table(&path(), &descriptor, false)).await;
}

/// The table's partitions (matching `partial`), by name.
async fn partition_ids(
    connection: &FlussConnection,
    partial: Option<&PartitionSpec>,
) -> BTreeMap<String, i64> {
    let admin = connection.get_admin().expect("admin");
    let infos =
        bounded("list_partition_infos", admin.list_partition_infos_with_spec(&path(), partial))
            .await;
    infos.iter().map(|info| (info.get_partition_name(), info.get_partition_id())).collect()
}

/// The table with every partition of `PARTITIONS` created and its rows (version 1) upserted;
/// the partition ids by name.
async fn table_with_rows(connection: &FlussConnection) -> BTreeMap<String, i64> {
    create_table(connection).await;
    let admin = connection.get_admin().expect("admin");
    for partition in PARTITIONS {
        let what = format!("create_partition {}", name_of(partition));
        bounded(&what, admin.create_partition(&path(), &full_spec(partition), false)).await;
    }
    let table = bounded("get_table", connection.get_table(&path())).await;
    let rows: Vec<Event> = PARTITIONS.iter().flat_map(|&p| rows_of(p, 1)).collect();
    upsert(&table, &rows).await;
    partition_ids(connection, None).await
}

/// Upserts `rows` through one writer and waits until every one is acknowledged.
async fn upsert(table: &FlussTable<'_>, rows: &[Event]) {
    let writer = table.new_upsert().expect("new_upsert").create_writer().expect("writer");
    let acks =
        rows.iter().map(|row| writer.upsert(&generic(row)).expect("upsert queued")).collect();
    acknowledged(&writer, acks).await;
}

/// Checks the lookup of every key `(id, sub)` of `partition` and the prefix lookup of every
/// `id` there against `expected` (the partition's live rows).
async fn check_lookups(table: &FlussTable<'_>, partition: Partition, expected: &[Event]) {
    let mut lookuper = table.new_lookup().expect("new_lookup").create_lookuper().expect("lookuper");
    let prefix_columns = ["region", "day", "id"].map(str::to_string).to_vec();
    let mut prefix_lookuper = table
        .new_lookup()
        .expect("new_lookup")
        .lookup_by(prefix_columns)
        .create_lookuper()
        .expect("prefix lookuper");
    let name = name_of(partition);
    for id in 0..IDS {
        for sub in SUBS {
            let what = format!("lookup of ({id}, {sub}) in {name}");
            let result = bounded(&what, lookuper.lookup(&key_of(partition, id, sub))).await;
            let got = result.get_single_row().expect("one row at most").map(|row| read(&row));
            let want = expected.iter().find(|row| row.id == id && row.sub == sub).cloned();
            assert_eq!(got, want, "{what}");
        }
        let what = format!("prefix lookup of id {id} in {name}");
        let prefix = GenericRow::from_data(vec![
            Datum::from(partition.0.to_string()),
            Datum::from(partition.1.to_string()),
            Datum::Int32(id),
        ]);
        let result = bounded(&what, prefix_lookuper.lookup(&prefix)).await;
        let mut got: Vec<Event> =
            result.get_rows().expect("rows").iter().map(|row| read(row)).collect();
        got.sort();
        let want: Vec<Event> = expected.iter().filter(|row| row.id == id).cloned().collect();
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn partitions_are_created_listed_by_partial_spec_and_refused_when_they_exist_or_are_invalid() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        create_table(&connection).await;
        let admin = connection.get_admin().expect("admin");
        let info = bounded("get_table_info", admin.get_table_info(&path())).await;
        assert!(info.is_partitioned());
        assert_eq!(info.get_partition_keys().to_vec(), vec!["region", "day"]);
        assert_eq!(partition_ids(&connection, None).await, BTreeMap::new());

        for partition in PARTITIONS {
            let what = format!("create_partition {}", name_of(partition));
            bounded(&what, admin.create_partition(&path(), &full_spec(partition), false)).await;
        }
        let existing = full_spec(PARTITIONS[0]);
        let error = refused(
            "create an existing partition",
            admin.create_partition(&path(), &existing, false),
        )
        .await;
        assert_api_error(
            "create an existing partition",
            &error,
            FlussError::PartitionAlreadyExists,
        );
        bounded(
            "create an existing partition, ignoring it",
            admin.create_partition(&path(), &existing, true),
        )
        .await;
        for (what, spec) in [
            ("a spec without every partition key", spec_of(&[("region", "EU")])),
            ("a spec naming another column", spec_of(&[("region", "EU"), ("v", "d1")])),
            ("an invalid partition value", spec_of(&[("region", "E U"), ("day", "d1")])),
        ] {
            let error = refused(what, admin.create_partition(&path(), &spec, false)).await;
            assert_api_error(what, &error, FlussError::PartitionSpecInvalidException);
        }

        let ids = partition_ids(&connection, None).await;
        let names: Vec<String> = PARTITIONS.iter().map(|&p| name_of(p)).collect();
        assert_eq!(ids.keys().cloned().collect::<Vec<_>>(), names);
        let mut distinct: Vec<i64> = ids.values().copied().collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), PARTITIONS.len(), "partition ids are distinct: {ids:?}");
        for (partial, want) in [
            (spec_of(&[("region", "EU")]), vec!["EU$d1", "EU$d2"]),
            (spec_of(&[("day", "d1")]), vec!["EU$d1", "US$d1"]),
            (spec_of(&[("region", "US"), ("day", "d1")]), vec!["US$d1"]),
            (spec_of(&[("region", "XX")]), vec![]),
        ] {
            let got = partition_ids(&connection, Some(&partial)).await;
            let want: BTreeMap<String, i64> =
                want.iter().map(|&name| (name.to_string(), ids[name])).collect();
            assert_eq!(got, want, "partitions matching {partial}");
        }
    });
    drop(node);
}

#[test]
fn rows_are_upserted_looked_up_and_logged_in_each_partition_apart() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let ids = table_with_rows(&connection).await;
        let table = bounded("get_table", connection.get_table(&path())).await;
        for partition in PARTITIONS {
            check_lookups(&table, partition, &rows_of(partition, 1)).await;
        }

        // Five rows of one partition updated: its changelog is its own 20 inserts and the five
        // updates, nothing of the partitions beside it.
        let partition = PARTITIONS[1];
        let partition_id = ids[&name_of(partition)];
        let updated: Vec<Event> = rows_of(partition, 2).into_iter().take(5).collect();
        upsert(&table, &updated).await;
        let mut live = rows_of(partition, 1);
        live[..5].clone_from_slice(&updated);
        check_lookups(&table, partition, &live).await;
        check_lookups(&table, PARTITIONS[0], &rows_of(PARTITIONS[0], 1)).await;

        let scanner = table.new_scan().create_log_scanner().expect("log scanner");
        for bucket in 0..BUCKETS {
            let what = format!("subscribe_partition {partition_id} bucket {bucket}");
            bounded(&what, scanner.subscribe_partition(partition_id, bucket, EARLIEST_OFFSET))
                .await;
        }
        let first = rows_of(partition, 1);
        let expected = first.len() + 2 * updated.len();
        let changes = read_changelog(&scanner, expected, |row| read(row)).await;
        assert_offsets_dense(&changes);
        assert!(changes.keys().all(|(id, _)| *id == Some(partition_id)), "{:?}", changes.keys());
        let mut per_key: BTreeMap<(i32, String), Vec<(ChangeType, Event)>> = BTreeMap::new();
        for Change { change, row, .. } in changes.into_values().flatten() {
            per_key.entry((row.id, row.sub.clone())).or_default().push((change, row));
        }
        let mut want: BTreeMap<(i32, String), Vec<(ChangeType, Event)>> = BTreeMap::new();
        for row in &first {
            want.entry((row.id, row.sub.clone()))
                .or_default()
                .push((ChangeType::Insert, row.clone()));
        }
        for (old, new) in first.iter().zip(&updated) {
            let log = want.get_mut(&(old.id, old.sub.clone())).expect("an inserted key");
            log.push((ChangeType::UpdateBefore, old.clone()));
            log.push((ChangeType::UpdateAfter, new.clone()));
        }
        assert_eq!(per_key, want);

        let admin = connection.get_admin().expect("admin");
        let buckets: Vec<i32> = (0..BUCKETS).collect();
        let name = name_of(partition);
        let earliest = bounded(
            "list_partition_offsets earliest",
            admin.list_partition_offsets(&path(), &name, &buckets, OffsetSpec::Earliest),
        )
        .await;
        let earliest: BTreeMap<i32, i64> = earliest.into_iter().collect();
        assert_eq!(earliest, buckets.iter().map(|&b| (b, 0)).collect());
        let latest = bounded(
            "list_partition_offsets latest",
            admin.list_partition_offsets(&path(), &name, &buckets, OffsetSpec::Latest),
        )
        .await;
        assert_eq!(latest.values().sum::<i64>(), expected as i64, "{latest:?}");
    });
    drop(node);
}

#[test]
fn a_dropped_partition_loses_its_rows_and_refuses_its_buckets_while_the_others_keep_working() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let ids = table_with_rows(&connection).await;
        let table = bounded("get_table", connection.get_table(&path())).await;
        // The lookups make this connection know every partition's id.
        for partition in PARTITIONS {
            check_lookups(&table, partition, &rows_of(partition, 1)).await;
        }

        let dropped = PARTITIONS[2];
        let dropped_id = ids[&name_of(dropped)];
        let admin = connection.get_admin().expect("admin");
        bounded("drop_partition", admin.drop_partition(&path(), &full_spec(dropped), false)).await;
        let error = refused(
            "drop a dropped partition",
            admin.drop_partition(&path(), &full_spec(dropped), false),
        )
        .await;
        assert_api_error("drop a dropped partition", &error, FlussError::PartitionNotExists);
        bounded(
            "drop a dropped partition, ignoring it",
            admin.drop_partition(&path(), &full_spec(dropped), true),
        )
        .await;
        let left = partition_ids(&connection, None).await;
        assert_eq!(left.keys().cloned().collect::<Vec<_>>(), vec!["EU$d1", "EU$d2"]);

        // Its buckets are refused: a lookup there (fluss-rs reports the bucket's code in the
        // message of a client error), and a write (the bucket's error itself).
        let mut lookuper =
            table.new_lookup().expect("new_lookup").create_lookuper().expect("lookuper");
        let error =
            refused("lookup in a dropped partition", lookuper.lookup(&key_of(dropped, 0, "a")))
                .await;
        assert!(error.to_string().contains("code=36"), "lookup in a dropped partition: {error}");
        let writer = table.new_upsert().expect("new_upsert").create_writer().expect("writer");
        let ack = writer.upsert(&generic(&rows_of(dropped, 2)[0])).expect("upsert queued");
        bounded("flush", writer.flush()).await;
        let error = refused("upsert into a dropped partition", ack).await;
        assert_api_error("upsert into a dropped partition", &error, FlussError::PartitionNotExists);

        // The other partitions keep working.
        check_lookups(&table, PARTITIONS[0], &rows_of(PARTITIONS[0], 1)).await;
        let updated = rows_of(PARTITIONS[0], 3);
        upsert(&table, &updated).await;
        check_lookups(&table, PARTITIONS[0], &updated).await;
        check_lookups(&table, PARTITIONS[1], &rows_of(PARTITIONS[1], 1)).await;

        // A new connection (which never knew the dropped id) finds no rows there, and a
        // subscription to the dropped id is refused by the metadata.
        let fresh = support::connect(&node).await;
        let fresh_table = bounded("get_table", fresh.get_table(&path())).await;
        check_lookups(&fresh_table, dropped, &[]).await;
        let scanner = fresh_table.new_scan().create_log_scanner().expect("log scanner");
        let error = refused(
            "subscribe to a dropped partition",
            scanner.subscribe_partition(dropped_id, 0, EARLIEST_OFFSET),
        )
        .await;
        assert_api_error(
            "subscribe to a dropped partition",
            &error,
            FlussError::PartitionNotExists,
        );

        // Created again, the partition gets a new id and starts empty.
        bounded(
            "create_partition again",
            admin.create_partition(&path(), &full_spec(dropped), false),
        )
        .await;
        let again = partition_ids(&connection, None).await;
        let new_id = again[&name_of(dropped)];
        assert!(new_id > *ids.values().max().expect("ids"), "new id {new_id}, before {ids:?}");
        check_lookups(&fresh_table, dropped, &[]).await;
        let reborn = rows_of(dropped, 4)[..4].to_vec();
        upsert(&fresh_table, &reborn).await;
        check_lookups(&fresh_table, dropped, &reborn).await;
    });
    drop(node);
}

#[test]
fn a_partition_that_never_existed_is_refused_and_not_created() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let ids = table_with_rows(&connection).await;
        let table = bounded("get_table", connection.get_table(&path())).await;
        let missing: Partition = ("XX", "d1");

        // A lookup finds no row (the metadata refused the partition's name).
        check_lookups(&table, missing, &[]).await;
        // A subscription to an id no partition ever had is refused by the metadata.
        let scanner = table.new_scan().create_log_scanner().expect("log scanner");
        let never_given = ids.values().max().expect("ids") + 1_000_000;
        let error = refused(
            "subscribe to a partition id never given",
            scanner.subscribe_partition(never_given, 0, EARLIEST_OFFSET),
        )
        .await;
        let what = "subscribe to a partition id never given";
        assert_api_error(what, &error, FlussError::PartitionNotExists);

        // A write there is never acknowledged (a connection of its own keeps the pending write
        // away from the other writes); closing that connection's writer fails it.
        let other = support::connect(&node).await;
        let other_table = bounded("get_table", other.get_table(&path())).await;
        let writer = other_table.new_upsert().expect("new_upsert").create_writer().expect("writer");
        let mut ack = writer.upsert(&generic(&rows_of(missing, 1)[0])).expect("upsert queued");
        let answered = tokio::time::timeout(NEVER_ACKNOWLEDGED_WAIT, &mut ack).await;
        assert!(answered.is_err(), "a write to a missing partition was answered: {answered:?}");
        bounded("close", other.close(Duration::from_secs(1))).await;
        refused("the pending write, once its writer is closed", ack).await;

        // Nothing was created, and the partitions that exist still work.
        assert_eq!(partition_ids(&connection, None).await, ids);
        check_lookups(&table, PARTITIONS[0], &rows_of(PARTITIONS[0], 1)).await;
        upsert(&table, &rows_of(PARTITIONS[2], 2)).await;
        check_lookups(&table, PARTITIONS[2], &rows_of(PARTITIONS[2], 2)).await;
    });
    drop(node);
}
