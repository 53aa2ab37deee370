//! The official Rust client, `fluss-rs` 1.0.0, unchanged, against `kvtablet serve` (the
//! binary named by `KVTABLET_BIN`, on a free port of 127.0.0.1, in a temporary directory): a
//! database and a primary-key table through its admin, upserts, deletes and partial updates
//! through its upsert writer, lookups, and the changelog through its log scanner.
//!
//! Every wait is bounded (`support::STEP`, `START_WAIT`, `POLLS_MAX`); the node is killed when
//! the test ends, also on a failure.

mod support;

use std::time::Duration;

use fluss::client::{FlussTable, EARLIEST_OFFSET};
use fluss::metadata::{DataTypes, Schema, TableDescriptor, TablePath};
use fluss::record::ChangeType;
use fluss::row::{DataGetters, GenericRow};

use support::{bounded, Node, POLLS_MAX};

/// `(id, name, score)`, `None` for NULL.
type Row = (i32, Option<String>, Option<i64>);

fn generic_row(row: &Row) -> GenericRow<'static> {
    let mut generic = GenericRow::new(3);
    generic.set_field(0, row.0);
    if let Some(name) = &row.1 {
        generic.set_field(1, name.clone());
    }
    if let Some(score) = row.2 {
        generic.set_field(2, score);
    }
    generic
}

fn read_row(row: &dyn DataGetters) -> Row {
    let name =
        (!row.is_null_at(1).expect("name")).then(|| row.get_string(1).expect("name").to_string());
    let score = (!row.is_null_at(2).expect("score")).then(|| row.get_long(2).expect("score"));
    (row.get_int(0).expect("id"), name, score)
}

fn row(id: i32, name: Option<&str>, score: Option<i64>) -> Row {
    (id, name.map(str::to_string), score)
}

/// Upserts `rows` and deletes `deletes` (ids) through one writer, writing only
/// `target_columns` when given, and waits for the acknowledgements.
async fn write(
    table: &FlussTable<'_>,
    target_columns: Option<&[&str]>,
    rows: &[Row],
    deletes: &[i32],
) {
    let mut upsert = table.new_upsert().expect("new_upsert");
    if let Some(columns) = target_columns {
        upsert = upsert.partial_update_with_column_names(columns).expect("partial update");
    }
    let writer = upsert.create_writer().expect("create_writer");
    for row in rows {
        writer.upsert(&generic_row(row)).expect("upsert queued");
    }
    for id in deletes {
        writer.delete(&generic_row(&(*id, None, None))).expect("delete queued");
    }
    bounded("flush", writer.flush()).await;
}

async fn lookup(table: &FlussTable<'_>, id: i32) -> Option<Row> {
    let mut lookuper = table.new_lookup().expect("new_lookup").create_lookuper().expect("lookuper");
    let mut key = GenericRow::new(1);
    key.set_field(0, id);
    let result = bounded("lookup", lookuper.lookup(&key)).await;
    let found = result.get_single_row().expect("one row at most");
    found.map(|row| read_row(&row))
}

#[test]
fn fluss_rs_upserts_partially_updates_deletes_looks_up_and_reads_the_changelog() {
    let runtime = support::runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&dir.path().join("data"));
    runtime.block_on(async {
        let connection = support::connect(&node).await;
        let admin = connection.get_admin().expect("admin");
        bounded("create_database", admin.create_database("rs", None, false)).await;
        let path = TablePath::new("rs", "scores");
        let schema = Schema::builder()
            .column("id", DataTypes::int())
            .column("name", DataTypes::string())
            .column("score", DataTypes::bigint())
            .primary_key(vec!["id"])
            .expect("primary key")
            .build()
            .expect("schema");
        let descriptor = TableDescriptor::builder()
            .schema(schema)
            .distributed_by(Some(1), vec![])
            .build()
            .expect("descriptor");
        bounded("create_table", admin.create_table(&path, &descriptor, false)).await;
        let table = bounded("get_table", connection.get_table(&path)).await;

        write(&table, None, &[row(1, Some("ann"), Some(10)), row(2, Some("bob"), Some(20))], &[])
            .await;
        // Score only: the names stay; a new key gets NULL in the columns not written.
        write(
            &table,
            Some(&["id", "score"]),
            &[row(1, None, Some(11)), row(3, None, Some(31))],
            &[],
        )
        .await;
        write(&table, None, &[], &[2]).await;

        assert_eq!(lookup(&table, 1).await, Some(row(1, Some("ann"), Some(11))));
        assert_eq!(lookup(&table, 2).await, None);
        assert_eq!(lookup(&table, 3).await, Some(row(3, None, Some(31))));

        let scanner = table.new_scan().create_log_scanner().expect("log scanner");
        bounded("subscribe", scanner.subscribe(0, EARLIEST_OFFSET)).await;
        let mut changes: Vec<(ChangeType, Row)> = Vec::new();
        for _ in 0..POLLS_MAX {
            let records = bounded("poll", scanner.poll(Duration::from_millis(500))).await;
            for record in records {
                changes.push((*record.change_type(), read_row(record.row())));
            }
            if changes.len() >= 6 {
                break;
            }
        }
        assert_eq!(
            changes,
            vec![
                (ChangeType::Insert, row(1, Some("ann"), Some(10))),
                (ChangeType::Insert, row(2, Some("bob"), Some(20))),
                (ChangeType::UpdateBefore, row(1, Some("ann"), Some(10))),
                (ChangeType::UpdateAfter, row(1, Some("ann"), Some(11))),
                (ChangeType::Insert, row(3, None, Some(31))),
                (ChangeType::Delete, row(2, Some("bob"), Some(20))),
            ]
        );
    });
    drop(node);
}
