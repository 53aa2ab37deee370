//! The catalog file: the whole catalog state in one checksummed frame.
//!
//! ```text
//! magic "KVTCATLG" (8) | format version u16 | reserved u16 (0) | payload length u32 |
//! CRC-32C u32 over every byte before it and the payload | payload
//! ```
//!
//! Version 2 added partitions: each table ends with its partition keys and its partitions
//! (id and values), and the payload ends with the next partition id. A version 1 file (written
//! before partitions existed) still loads, as a catalog without partitions whose partition ids
//! start at [`super::FIRST_PARTITION_ID`]; every write is version 2.
//!
//! All integers are little-endian; strings are a u32 byte length and UTF-8; an optional value is
//! a u8 tag (0 absent, 1 present) and the value; a list is a u32 count and its items. Decoding
//! checks every length against the bytes left, the checksum, and the state's own invariants, and
//! reports any failure as a reason string: bad bytes never panic.

use std::collections::BTreeMap;

use super::model::{DatabaseInfo, SchemaVersion, TableInfo, TablePath};
use super::partition::{PartitionInfo, FIRST_PARTITION_ID};

pub(crate) const MAGIC: &[u8; 8] = b"KVTCATLG";
pub(crate) const FORMAT_VERSION: u16 = 2;
/// The version before partitions, still read.
const FORMAT_VERSION_WITHOUT_PARTITIONS: u16 = 1;
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 20;
/// Offset of the checksum in the header.
const CRC_OFFSET: usize = 16;

/// A table and every version of its schema, oldest first; `info` reflects the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableEntry {
    pub info: TableInfo,
    pub schemas: Vec<SchemaVersion>,
    /// The partitions of a partitioned table, in id order; empty for any other table.
    pub partitions: Vec<PartitionInfo>,
}

impl TableEntry {
    pub(crate) fn new(info: TableInfo, schemas: Vec<SchemaVersion>) -> Self {
        TableEntry { info, schemas, partitions: Vec::new() }
    }
}

/// Everything the catalog persists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    /// The id the next created table gets; never decreases, so ids are never reused.
    pub next_table_id: i64,
    /// The id the next created partition gets; never decreases, so ids are never reused.
    pub next_partition_id: i64,
    pub databases: BTreeMap<String, DatabaseInfo>,
    pub tables: BTreeMap<TablePath, TableEntry>,
}

impl State {
    pub(crate) fn empty(first_table_id: i64, first_partition_id: i64) -> Self {
        State {
            next_table_id: first_table_id,
            next_partition_id: first_partition_id,
            databases: BTreeMap::new(),
            tables: BTreeMap::new(),
        }
    }
}

struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }
    fn i32(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    fn len(&mut self, len: usize) {
        // The catalog is far below 4 GiB; saturate rather than wrap if it ever is not, which
        // the decoder then refuses instead of misreading.
        self.bytes.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    }
    fn str(&mut self, value: &str) {
        self.len(value.len());
        self.bytes.extend_from_slice(value.as_bytes());
    }
    fn opt_str(&mut self, value: Option<&str>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.str(value);
            }
        }
    }
    fn str_list(&mut self, values: &[String]) {
        self.len(values.len());
        for value in values {
            self.str(value);
        }
    }
    fn map(&mut self, map: &BTreeMap<String, String>) {
        self.len(map.len());
        for (key, value) in map {
            self.str(key);
            self.str(value);
        }
    }
}

/// The file bytes for `state`.
pub(crate) fn encode(state: &State) -> Vec<u8> {
    let mut payload = Writer { bytes: Vec::new() };
    payload.i64(state.next_table_id);
    payload.len(state.databases.len());
    for database in state.databases.values() {
        payload.str(&database.name);
        payload.opt_str(database.descriptor_json.as_deref());
        payload.i64(database.created_time_ms);
        payload.i64(database.modified_time_ms);
    }
    payload.len(state.tables.len());
    for entry in state.tables.values() {
        let info = &entry.info;
        payload.i64(info.table_id);
        payload.str(&info.path.database);
        payload.str(&info.path.table);
        payload.str_list(&info.primary_key);
        payload.str_list(&info.bucket_key);
        payload.i32(info.bucket_count);
        payload.map(&info.properties);
        payload.map(&info.custom_properties);
        payload.opt_str(info.comment.as_deref());
        payload.i64(info.created_time_ms);
        payload.i64(info.modified_time_ms);
        payload.len(entry.schemas.len());
        for schema in &entry.schemas {
            payload.i32(schema.schema_id);
            payload.str(&schema.schema_json);
            payload.str_list(&schema.columns);
        }
        payload.str_list(&info.partition_key);
        payload.len(entry.partitions.len());
        for partition in &entry.partitions {
            payload.i64(partition.partition_id);
            payload.str_list(&partition.values);
        }
    }
    payload.i64(state.next_partition_id);
    let payload = payload.bytes;
    let mut file = Vec::with_capacity(HEADER_LEN + payload.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&0u16.to_le_bytes());
    file.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&file), &payload);
    file.extend_from_slice(&crc.to_le_bytes());
    file.extend_from_slice(&payload);
    file
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {} reading {what}", self.position))?;
        let taken = &self.bytes[self.position..end];
        self.position = end;
        Ok(taken)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }
    fn i32(&mut self, what: &str) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &str) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    /// A count of items each at least `min_item_len` bytes long, checked against what is left
    /// so that a damaged count cannot make the decoder allocate without bound.
    fn count(&mut self, min_item_len: usize, what: &str) -> Result<usize, String> {
        let count = u32::from_le_bytes(self.array(what)?);
        let count =
            usize::try_from(count).map_err(|_| format!("{what} count {count} too large"))?;
        let left = self.bytes.len().saturating_sub(self.position);
        if count.saturating_mul(min_item_len.max(1)) > left {
            return Err(format!("{what} count {count} exceeds the {left} bytes left"));
        }
        Ok(count)
    }
    fn str(&mut self, what: &str) -> Result<String, String> {
        let len = self.count(1, what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
    fn opt_str(&mut self, what: &str) -> Result<Option<String>, String> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.str(what)?)),
            tag => Err(format!("{what} has option tag {tag}")),
        }
    }
    fn str_list(&mut self, what: &str) -> Result<Vec<String>, String> {
        let count = self.count(4, what)?;
        (0..count).map(|_| self.str(what)).collect()
    }
    fn map(&mut self, what: &str) -> Result<BTreeMap<String, String>, String> {
        let count = self.count(8, what)?;
        let mut map = BTreeMap::new();
        for _ in 0..count {
            let key = self.str(what)?;
            let value = self.str(what)?;
            if map.insert(key.clone(), value).is_some() {
                return Err(format!("{what} repeats key {key:?}"));
            }
        }
        Ok(map)
    }
}

/// Decodes and checks a catalog file; the error is a reason for humans.
pub(crate) fn decode(file: &[u8]) -> Result<State, String> {
    if file.len() < HEADER_LEN {
        return Err(format!("{} bytes is shorter than the {HEADER_LEN}-byte header", file.len()));
    }
    let (header, payload) = file.split_at(HEADER_LEN);
    if &header[..8] != MAGIC {
        return Err("bad magic: not a kvtablet catalog file".to_string());
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != FORMAT_VERSION && version != FORMAT_VERSION_WITHOUT_PARTITIONS {
        return Err(format!("unknown format version {version}"));
    }
    let payload_len = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if usize::try_from(payload_len).ok() != Some(payload.len()) {
        return Err(format!(
            "header says {payload_len} payload bytes, the file has {}",
            payload.len()
        ));
    }
    let stored_crc = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[..CRC_OFFSET]), payload);
    if crc != stored_crc {
        return Err(format!("checksum mismatch: stored {stored_crc:#010x}, computed {crc:#010x}"));
    }
    let state = decode_payload(payload, version >= FORMAT_VERSION)?;
    check_invariants(&state)?;
    Ok(state)
}

fn decode_payload(payload: &[u8], with_partitions: bool) -> Result<State, String> {
    let mut reader = Reader { bytes: payload, position: 0 };
    let next_table_id = reader.i64("next table id")?;
    let mut state = State::empty(next_table_id, FIRST_PARTITION_ID);
    let database_count = reader.count(21, "databases")?;
    for _ in 0..database_count {
        let database = DatabaseInfo {
            name: reader.str("database name")?,
            descriptor_json: reader.opt_str("database descriptor")?,
            created_time_ms: reader.i64("database created time")?,
            modified_time_ms: reader.i64("database modified time")?,
        };
        if state.databases.insert(database.name.clone(), database).is_some() {
            return Err("a database appears twice".to_string());
        }
    }
    let table_count = reader.count(60, "tables")?;
    for _ in 0..table_count {
        let table_id = reader.i64("table id")?;
        let path = TablePath::new(reader.str("database of table")?, reader.str("table name")?);
        let primary_key = reader.str_list("primary key")?;
        let bucket_key = reader.str_list("bucket key")?;
        let bucket_count = reader.i32("bucket count")?;
        let properties = reader.map("properties")?;
        let custom_properties = reader.map("custom properties")?;
        let comment = reader.opt_str("comment")?;
        let created_time_ms = reader.i64("table created time")?;
        let modified_time_ms = reader.i64("table modified time")?;
        let schema_count = reader.count(12, "schemas")?;
        let mut schemas = Vec::with_capacity(schema_count);
        for _ in 0..schema_count {
            schemas.push(SchemaVersion {
                schema_id: reader.i32("schema id")?,
                schema_json: reader.str("schema json")?,
                columns: reader.str_list("columns")?,
            });
        }
        let Some(current) = schemas.last() else {
            return Err(format!("table {path} has no schema"));
        };
        let (partition_key, partitions) = match with_partitions {
            true => {
                let partition_key = reader.str_list("partition key")?;
                let partition_count = reader.count(12, "partitions")?;
                let mut partitions = Vec::with_capacity(partition_count);
                for _ in 0..partition_count {
                    partitions.push(PartitionInfo {
                        partition_id: reader.i64("partition id")?,
                        values: reader.str_list("partition values")?,
                    });
                }
                (partition_key, partitions)
            }
            false => (Vec::new(), Vec::new()),
        };
        let info = TableInfo {
            table_id,
            path: path.clone(),
            schema_id: current.schema_id,
            schema_json: current.schema_json.clone(),
            columns: current.columns.clone(),
            primary_key,
            bucket_key,
            partition_key,
            bucket_count,
            properties,
            custom_properties,
            comment,
            created_time_ms,
            modified_time_ms,
        };
        let entry = TableEntry { info, schemas, partitions };
        if state.tables.insert(path.clone(), entry).is_some() {
            return Err(format!("table {path} appears twice"));
        }
    }
    if with_partitions {
        state.next_partition_id = reader.i64("next partition id")?;
    }
    if reader.position != payload.len() {
        return Err(format!("{} trailing bytes", payload.len() - reader.position));
    }
    Ok(state)
}

/// What a well-formed state always satisfies; a file that breaks it is corrupt.
fn check_invariants(state: &State) -> Result<(), String> {
    let mut ids = BTreeMap::new();
    let mut partition_ids = BTreeMap::new();
    for (path, entry) in &state.tables {
        if !state.databases.contains_key(&path.database) {
            return Err(format!("table {path} is in a missing database"));
        }
        let id = entry.info.table_id;
        if !(0..state.next_table_id).contains(&id) {
            return Err(format!("table {path} has id {id}, outside 0..{}", state.next_table_id));
        }
        if let Some(other) = ids.insert(id, path) {
            return Err(format!("tables {other} and {path} share id {id}"));
        }
        if entry.info.bucket_count < 1 {
            return Err(format!("table {path} has {} buckets", entry.info.bucket_count));
        }
        if entry.schemas.windows(2).any(|pair| pair[0].schema_id >= pair[1].schema_id) {
            return Err(format!("schema ids of table {path} do not increase"));
        }
        check_partitions(state, path, entry, &mut partition_ids)?;
    }
    Ok(())
}

/// Partitions only in a partitioned table, one value per partition key, distinct values, and
/// ids below the counter, increasing within a table and unique in the catalog.
fn check_partitions<'a>(
    state: &State,
    path: &'a TablePath,
    entry: &TableEntry,
    partition_ids: &mut BTreeMap<i64, &'a TablePath>,
) -> Result<(), String> {
    let keys = entry.info.partition_key.len();
    if keys == 0 && !entry.partitions.is_empty() {
        return Err(format!("table {path} has partitions but no partition key"));
    }
    for (index, partition) in entry.partitions.iter().enumerate() {
        let id = partition.partition_id;
        if !(0..state.next_partition_id).contains(&id) {
            return Err(format!(
                "partition {id} of table {path} is outside 0..{}",
                state.next_partition_id
            ));
        }
        if partition.values.len() != keys {
            return Err(format!("partition {id} of table {path} has a value per key missing"));
        }
        if entry.partitions[..index].iter().any(|other| other.values == partition.values) {
            return Err(format!("partition {id} of table {path} repeats another's values"));
        }
        if index > 0 && entry.partitions[index - 1].partition_id >= id {
            return Err(format!("partition ids of table {path} do not increase"));
        }
        if let Some(other) = partition_ids.insert(id, path) {
            return Err(format!("tables {other} and {path} share partition id {id}"));
        }
    }
    Ok(())
}
