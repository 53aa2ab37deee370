//! Table schemas: the Fluss JSON forms of a schema and of a table descriptor (parse and
//! produce), and `TableSchema`, the resolved view the encoders use (column types, primary-key
//! and bucket-key positions, schema id).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::data_type::DataType;
use super::error::SchemaError;
use super::key_format::KeyFormat;
use super::table_encoding::TableEncoding;

/// One column as it appears in the schema JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub id: i32,
    pub name: String,
    pub data_type: DataType,
    pub comment: Option<String>,
}

/// The `schema` object of a table descriptor. Primary-key columns are always NOT NULL (the
/// Java and Rust clients force this too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub highest_field_id: i32,
}

/// A table descriptor: the `table_json` of CreateTable, GetTableInfo and Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDescriptor {
    pub schema: Schema,
    pub comment: Option<String>,
    pub partition_keys: Vec<String>,
    pub bucket_keys: Vec<String>,
    pub bucket_count: Option<i32>,
    pub properties: BTreeMap<String, String>,
    pub custom_properties: BTreeMap<String, String>,
}

fn get_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, SchemaError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SchemaError::WrongType { field, expected: "a string" }),
    }
}

fn get_i32(obj: &Map<String, Value>, field: &'static str) -> Result<Option<i32>, SchemaError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or(SchemaError::WrongType { field, expected: "a 32-bit integer" }),
    }
}

fn get_string_list(
    obj: &Map<String, Value>,
    field: &'static str,
    required: bool,
) -> Result<Vec<String>, SchemaError> {
    match obj.get(field) {
        None | Some(Value::Null) if !required => Ok(Vec::new()),
        None | Some(Value::Null) => Err(SchemaError::MissingField(field)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or(SchemaError::WrongType { field, expected: "an array of strings" })
            })
            .collect(),
        Some(_) => Err(SchemaError::WrongType { field, expected: "an array of strings" }),
    }
}

fn get_properties(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<BTreeMap<String, String>, SchemaError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(SchemaError::MissingField(field)),
        Some(Value::Object(props)) => props
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or(SchemaError::WrongType { field, expected: "an object of strings" })
            })
            .collect(),
        Some(_) => Err(SchemaError::WrongType { field, expected: "an object of strings" }),
    }
}

fn as_object<'a>(
    node: &'a Value,
    field: &'static str,
) -> Result<&'a Map<String, Value>, SchemaError> {
    node.as_object().ok_or(SchemaError::WrongType { field, expected: "an object" })
}

fn string_list(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
}

fn properties(map: &BTreeMap<String, String>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect())
}

impl Column {
    pub fn new(id: i32, name: impl Into<String>, data_type: DataType) -> Self {
        Column { id, name: name.into(), data_type, comment: None }
    }

    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("name".to_string(), Value::from(self.name.as_str()));
        obj.insert("data_type".to_string(), self.data_type.to_json());
        if let Some(c) = &self.comment {
            obj.insert("comment".to_string(), Value::from(c.as_str()));
        }
        obj.insert("id".to_string(), Value::from(self.id));
        Value::Object(obj)
    }

    /// A column; one without `id` gets `default_id` (its position), as Fluss assigns it.
    pub fn from_json(node: &Value, default_id: i32) -> Result<Column, SchemaError> {
        let obj = as_object(node, "columns")?;
        let name = get_str(obj, "name")?.ok_or(SchemaError::MissingField("name"))?;
        let data_type = DataType::from_json(
            obj.get("data_type").ok_or(SchemaError::MissingField("data_type"))?,
        )?;
        let comment = get_str(obj, "comment")?.map(str::to_string);
        let id = get_i32(obj, "id")?.unwrap_or(default_id);
        Ok(Column { id, name: name.to_string(), data_type, comment })
    }
}

impl Schema {
    /// A schema; the primary-key columns are made NOT NULL and the names are checked.
    pub fn new(columns: Vec<Column>, primary_key: Vec<String>) -> Result<Schema, SchemaError> {
        let highest_field_id = columns.iter().map(|c| c.id).max().unwrap_or(-1);
        let mut schema = Schema { columns, primary_key, highest_field_id };
        schema.normalize()?;
        Ok(schema)
    }

    fn normalize(&mut self) -> Result<(), SchemaError> {
        if self.columns.is_empty() {
            return Err(SchemaError::Invalid("a schema needs at least one column".to_string()));
        }
        for (i, c) in self.columns.iter().enumerate() {
            if self.columns.iter().take(i).any(|d| d.name == c.name) {
                return Err(SchemaError::DuplicateColumn(c.name.clone()));
            }
        }
        for (i, k) in self.primary_key.iter().enumerate() {
            if self.primary_key.iter().take(i).any(|d| d == k) {
                return Err(SchemaError::Invalid(format!("primary key names `{k}` twice")));
            }
            let col = self
                .columns
                .iter_mut()
                .find(|c| &c.name == k)
                .ok_or_else(|| SchemaError::UnknownColumn(k.clone()))?;
            col.data_type.nullable = false;
        }
        Ok(())
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("version".to_string(), Value::from(1));
        obj.insert(
            "columns".to_string(),
            Value::Array(self.columns.iter().map(Column::to_json).collect()),
        );
        if !self.primary_key.is_empty() {
            obj.insert("primary_key".to_string(), string_list(&self.primary_key));
        }
        obj.insert("highest_field_id".to_string(), Value::from(self.highest_field_id));
        Value::Object(obj)
    }

    pub fn from_json(node: &Value) -> Result<Schema, SchemaError> {
        let obj = as_object(node, "schema")?;
        let cols = match obj.get("columns") {
            None | Some(Value::Null) => return Err(SchemaError::MissingField("columns")),
            Some(Value::Array(cols)) => cols,
            Some(_) => {
                return Err(SchemaError::WrongType { field: "columns", expected: "an array" })
            }
        };
        let mut columns = Vec::with_capacity(cols.len());
        for (i, c) in cols.iter().enumerate() {
            let default_id = i32::try_from(i).unwrap_or(i32::MAX);
            columns.push(Column::from_json(c, default_id)?);
        }
        let primary_key = get_string_list(obj, "primary_key", false)?;
        // Refused rather than dropped: a schema stored without it would silently lose the
        // ids the client expects the server to assign.
        if !get_string_list(obj, "auto_increment_column", false)?.is_empty() {
            return Err(SchemaError::UnsupportedFeature("auto-increment columns"));
        }
        let derived_highest = columns.iter().map(|c| c.id).max().unwrap_or(-1);
        let highest_field_id = get_i32(obj, "highest_field_id")?.unwrap_or(derived_highest);
        let mut schema = Schema { columns, primary_key, highest_field_id };
        schema.normalize()?;
        Ok(schema)
    }

    pub fn from_json_str(text: &str) -> Result<Schema, SchemaError> {
        let v: Value = serde_json::from_str(text).map_err(|e| SchemaError::Json(e.to_string()))?;
        Schema::from_json(&v)
    }

    pub fn to_json_string(&self) -> String {
        self.to_json().to_string()
    }
}

impl TableDescriptor {
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("version".to_string(), Value::from(1));
        obj.insert("schema".to_string(), self.schema.to_json());
        if let Some(c) = &self.comment {
            obj.insert("comment".to_string(), Value::from(c.as_str()));
        }
        obj.insert("partition_key".to_string(), string_list(&self.partition_keys));
        if self.bucket_count.is_some() || !self.bucket_keys.is_empty() {
            obj.insert("bucket_key".to_string(), string_list(&self.bucket_keys));
            if let Some(n) = self.bucket_count {
                obj.insert("bucket_count".to_string(), Value::from(n));
            }
        }
        obj.insert("properties".to_string(), properties(&self.properties));
        obj.insert("custom_properties".to_string(), properties(&self.custom_properties));
        Value::Object(obj)
    }

    /// The compact JSON text (keys sorted, as the client itself writes them).
    pub fn to_json_string(&self) -> String {
        self.to_json().to_string()
    }

    /// Parses a descriptor; `schema`, `partition_key`, `properties` and `custom_properties`
    /// are required, as the Fluss Rust client requires them.
    pub fn from_json(node: &Value) -> Result<TableDescriptor, SchemaError> {
        let obj = as_object(node, "table")?;
        let schema =
            Schema::from_json(obj.get("schema").ok_or(SchemaError::MissingField("schema"))?)?;
        let comment = get_str(obj, "comment")?.map(str::to_string);
        let partition_keys = get_string_list(obj, "partition_key", true)?;
        let bucket_keys = get_string_list(obj, "bucket_key", false)?;
        let bucket_count = get_i32(obj, "bucket_count")?;
        if let Some(n) = bucket_count {
            if n <= 0 {
                return Err(SchemaError::Invalid(format!(
                    "bucket_count must be positive, got {n}"
                )));
            }
        }
        for k in partition_keys.iter().chain(&bucket_keys) {
            if schema.column_index(k).is_none() {
                return Err(SchemaError::UnknownColumn(k.clone()));
            }
        }
        let properties = get_properties(obj, "properties")?;
        let custom_properties = get_properties(obj, "custom_properties")?;
        Ok(TableDescriptor {
            schema,
            comment,
            partition_keys,
            bucket_keys,
            bucket_count,
            properties,
            custom_properties,
        })
    }

    /// Refuses what Fluss refuses at CreateTable (`TableDescriptorValidation`): a primary-key
    /// or bucket-key column of a type keys do not support (ARRAY, MAP, ROW). Value columns may
    /// have any type. (A partition key lies within the primary key, and `gateway/partitions.rs`
    /// refuses the types Fluss does not partition by.)
    pub fn check_column_types(&self) -> Result<(), SchemaError> {
        // Fluss checks the distribution (bucket keys) before the primary key.
        let key_columns =
            [("Bucket key", &self.bucket_keys), ("Primary key", &self.schema.primary_key)];
        for (key_kind, names) in key_columns {
            for name in names {
                let column = self.schema.columns.iter().find(|c| &c.name == name);
                if let Some(column) = column.filter(|c| !c.data_type.root.allowed_in_keys()) {
                    return Err(SchemaError::KeyTypeNotAllowed {
                        key_kind,
                        column: column.name.clone(),
                        type_name: column.data_type.root.json_name(),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn from_json_str(text: &str) -> Result<TableDescriptor, SchemaError> {
        let v: Value = serde_json::from_str(text).map_err(|e| SchemaError::Json(e.to_string()))?;
        TableDescriptor::from_json(&v)
    }

    pub fn from_json_bytes(bytes: &[u8]) -> Result<TableDescriptor, SchemaError> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| SchemaError::Json(e.to_string()))?;
        TableDescriptor::from_json(&v)
    }

    /// Fills what the client may leave out and must find in a returned descriptor:
    /// `bucket_count` (the server default) and, for a primary-key table, `bucket_key`
    /// (primary key minus partition keys).
    pub fn apply_defaults(&mut self, default_bucket_count: i32) {
        if self.bucket_count.is_none() {
            self.bucket_count = Some(default_bucket_count);
        }
        if self.bucket_keys.is_empty() && !self.schema.primary_key.is_empty() {
            self.bucket_keys = self
                .schema
                .primary_key
                .iter()
                .filter(|k| !self.partition_keys.contains(k))
                .cloned()
                .collect();
        }
    }
}

/// The resolved schema of one table version, what the row, key and log encoders use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub schema_id: i16,
    pub columns: Vec<Column>,
    /// Positions of the primary-key columns, in primary-key order.
    pub primary_key: Vec<usize>,
    /// Positions of the bucket-key columns, in bucket-key order.
    pub bucket_key: Vec<usize>,
    /// The table's value format and key encodings (its properties).
    pub encoding: TableEncoding,
}

impl TableSchema {
    /// Resolves names to positions. For a primary-key table the bucket key must be a subset
    /// of the primary key; an empty bucket key defaults to the primary key.
    pub fn new(
        schema_id: i16,
        schema: &Schema,
        bucket_keys: &[String],
    ) -> Result<TableSchema, SchemaError> {
        let resolve = |names: &[String]| -> Result<Vec<usize>, SchemaError> {
            names
                .iter()
                .map(|n| {
                    schema.column_index(n).ok_or_else(|| SchemaError::UnknownColumn(n.clone()))
                })
                .collect()
        };
        let primary_key = resolve(&schema.primary_key)?;
        let bucket_key =
            if bucket_keys.is_empty() { primary_key.clone() } else { resolve(bucket_keys)? };
        if !primary_key.is_empty() {
            if let Some(k) = bucket_key.iter().find(|k| !primary_key.contains(k)) {
                let name = schema.columns.get(*k).map(|c| c.name.clone()).unwrap_or_default();
                return Err(SchemaError::Invalid(format!(
                    "bucket key column `{name}` is not part of the primary key"
                )));
            }
        }
        let mut columns = schema.columns.clone();
        for &k in &primary_key {
            if let Some(c) = columns.get_mut(k) {
                c.data_type.nullable = false;
            }
        }
        Ok(TableSchema {
            schema_id,
            columns,
            primary_key,
            bucket_key,
            encoding: TableEncoding::default(),
        })
    }

    /// The schema of a table descriptor.
    pub fn from_descriptor(
        schema_id: i16,
        descriptor: &TableDescriptor,
    ) -> Result<TableSchema, SchemaError> {
        let encoding = TableEncoding::from_properties(&descriptor.properties)?;
        Ok(TableSchema::new(schema_id, &descriptor.schema, &descriptor.bucket_keys)?
            .with_encoding(encoding))
    }

    /// The same schema with the table's encoding options.
    pub fn with_encoding(mut self, encoding: TableEncoding) -> TableSchema {
        self.encoding = encoding;
        self
    }

    /// Whether the bucket key is the (physical) primary key, Fluss's `isDefaultBucketKey`.
    pub fn is_default_bucket_key(&self) -> bool {
        self.bucket_key == self.primary_key
    }

    /// The encoding of this table's primary keys.
    pub fn primary_key_format(&self) -> KeyFormat {
        self.encoding.primary_key_format(self.is_default_bucket_key())
    }

    /// The encoding of this table's bucket keys.
    pub fn bucket_key_format(&self) -> KeyFormat {
        self.encoding.bucket_key_format()
    }

    pub fn data_types(&self) -> Vec<DataType> {
        self.columns.iter().map(|c| c.data_type.clone()).collect()
    }

    pub fn primary_key_types(&self) -> Vec<DataType> {
        self.primary_key
            .iter()
            .filter_map(|&i| self.columns.get(i))
            .map(|c| c.data_type.clone())
            .collect()
    }

    pub fn bucket_key_types(&self) -> Vec<DataType> {
        self.bucket_key
            .iter()
            .filter_map(|&i| self.columns.get(i))
            .map(|c| c.data_type.clone())
            .collect()
    }
}
