//! Column types and their Fluss JSON form (`{"type":"DECIMAL","precision":10,"scale":2}`).
//!
//! The JSON form and the parameter ranges follow Fluss's `DataTypeJsonSerde` and its type
//! classes (`CharType`, `BinaryType`, `DecimalType`, `TimeType`, `TimestampType`,
//! `LocalZonedTimestampType`, `ArrayType`, `MapType`, `RowType`); fluss-rust's
//! `metadata/json_serde.rs` writes the same. A type from the network is refused with a
//! [`SchemaError`], never a panic: parameters out of range, nesting deeper than
//! [`NESTING_DEPTH_MAX`], a ROW of more than [`ROW_FIELDS_MAX`] fields.

use serde_json::{Map, Value};

use super::error::SchemaError;

/// How deep ARRAY, MAP and ROW may nest (a column's own type is depth 1).
pub const NESTING_DEPTH_MAX: usize = 16;
/// The most fields a ROW type may have.
pub const ROW_FIELDS_MAX: usize = 1024;
/// DECIMAL's largest precision (Fluss's `DecimalType.MAX_PRECISION`).
pub const DECIMAL_PRECISION_MAX: u8 = 38;
/// The largest precision of TIME and of both TIMESTAMPs (nanoseconds).
pub const TIME_PRECISION_MAX: u8 = 9;
/// A DECIMAL of at most this precision is stored as its unscaled `long` (`Decimal.isCompact`).
pub const DECIMAL_COMPACT_PRECISION_MAX: u8 = 18;
/// A TIMESTAMP of at most this precision is stored as millis only (`TimestampNtz.isCompact`).
pub const TIMESTAMP_COMPACT_PRECISION_MAX: u8 = 3;

/// Nanoseconds in one Arrow unit of a TIME or TIMESTAMP of `precision`: seconds for 0,
/// milliseconds up to 3, microseconds up to 6, nanoseconds above (`to_arrow_type`).
pub fn nanos_per_arrow_unit(precision: u8) -> i64 {
    match precision {
        0 => 1_000_000_000,
        1..=3 => 1_000_000,
        4..=6 => 1_000,
        _ => 1,
    }
}

/// One field of a ROW type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowField {
    pub name: String,
    pub data_type: DataType,
    pub description: Option<String>,
    /// Fluss's nested field id, kept as the client sent it.
    pub field_id: Option<i32>,
}

/// A column type's root with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TypeRoot {
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    /// CHAR(length): a string of at most `length` characters (stored like STRING).
    Char {
        length: u32,
    },
    String,
    /// BINARY(length): exactly `length` bytes (stored like BYTES).
    Binary {
        length: u32,
    },
    Bytes,
    /// DECIMAL(precision, scale); the value is an unscaled integer of `precision` digits.
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// Days since 1970-01-01.
    Date,
    /// TIME(precision): milliseconds of the day (Fluss keeps no finer part).
    Time {
        precision: u8,
    },
    /// TIMESTAMP(precision) without time zone.
    TimestampNtz {
        precision: u8,
    },
    /// TIMESTAMP_LTZ(precision): an instant.
    TimestampLtz {
        precision: u8,
    },
    Array(Box<DataType>),
    Map {
        key: Box<DataType>,
        value: Box<DataType>,
    },
    Row(Vec<RowField>),
}

impl TypeRoot {
    /// The roots without parameters, and one instance of each parameterised root: what the
    /// property tests and the decoder checks range over.
    pub fn samples() -> Vec<TypeRoot> {
        vec![
            TypeRoot::Boolean,
            TypeRoot::TinyInt,
            TypeRoot::SmallInt,
            TypeRoot::Int,
            TypeRoot::BigInt,
            TypeRoot::Float,
            TypeRoot::Double,
            TypeRoot::Char { length: 5 },
            TypeRoot::String,
            TypeRoot::Binary { length: 3 },
            TypeRoot::Bytes,
            TypeRoot::Decimal { precision: 10, scale: 2 },
            TypeRoot::Decimal { precision: 38, scale: 10 },
            TypeRoot::Date,
            TypeRoot::Time { precision: 3 },
            TypeRoot::TimestampNtz { precision: 3 },
            TypeRoot::TimestampNtz { precision: 9 },
            TypeRoot::TimestampLtz { precision: 6 },
        ]
    }

    /// ARRAY, MAP and ROW samples, nested in each other and holding the parameterised
    /// scalars: what the property tests and the decoder checks add to [`TypeRoot::samples`]
    /// for value columns (keys cannot have these types).
    pub fn nested_samples() -> Vec<TypeRoot> {
        let nullable = DataType::nullable;
        let not_null = DataType::not_null;
        let boxed = |ty: DataType| Box::new(ty);
        let row = |fields: Vec<(&str, DataType)>| {
            TypeRoot::Row(fields.into_iter().map(|(name, ty)| RowField::new(name, ty)).collect())
        };
        vec![
            TypeRoot::Array(boxed(nullable(TypeRoot::Int))),
            TypeRoot::Array(boxed(not_null(TypeRoot::String))),
            TypeRoot::Map {
                key: boxed(not_null(TypeRoot::String)),
                value: boxed(nullable(TypeRoot::Array(boxed(nullable(TypeRoot::Int))))),
            },
            row(vec![
                ("a", nullable(TypeRoot::Int)),
                ("b", not_null(TypeRoot::String)),
                ("c", nullable(TypeRoot::Decimal { precision: 38, scale: 10 })),
            ]),
            TypeRoot::Array(boxed(nullable(row(vec![
                ("x", not_null(TypeRoot::BigInt)),
                ("t", nullable(TypeRoot::TimestampNtz { precision: 9 })),
                ("d", nullable(TypeRoot::Decimal { precision: 10, scale: 2 })),
            ])))),
            TypeRoot::Map {
                key: boxed(not_null(TypeRoot::Int)),
                value: boxed(nullable(row(vec![
                    ("tags", nullable(TypeRoot::Array(boxed(nullable(TypeRoot::Bytes))))),
                    ("when", nullable(TypeRoot::TimestampLtz { precision: 3 })),
                ]))),
            },
            TypeRoot::Array(boxed(nullable(TypeRoot::Array(boxed(nullable(TypeRoot::Boolean)))))),
            // An ARRAY of every scalar: every element encoding.
            TypeRoot::Row(
                TypeRoot::samples()
                    .into_iter()
                    .enumerate()
                    .map(|(i, root)| {
                        let element = DataType { root, nullable: i % 2 == 0 };
                        RowField::new(format!("e{i}"), nullable(TypeRoot::Array(boxed(element))))
                    })
                    .collect(),
            ),
        ]
    }

    /// The name in Fluss's JSON (`type`).
    pub fn json_name(&self) -> &'static str {
        match self {
            TypeRoot::Boolean => "BOOLEAN",
            TypeRoot::TinyInt => "TINYINT",
            TypeRoot::SmallInt => "SMALLINT",
            TypeRoot::Int => "INTEGER",
            TypeRoot::BigInt => "BIGINT",
            TypeRoot::Float => "FLOAT",
            TypeRoot::Double => "DOUBLE",
            TypeRoot::Char { .. } => "CHAR",
            TypeRoot::String => "STRING",
            TypeRoot::Binary { .. } => "BINARY",
            TypeRoot::Bytes => "BYTES",
            TypeRoot::Decimal { .. } => "DECIMAL",
            TypeRoot::Date => "DATE",
            TypeRoot::Time { .. } => "TIME_WITHOUT_TIME_ZONE",
            TypeRoot::TimestampNtz { .. } => "TIMESTAMP_WITHOUT_TIME_ZONE",
            TypeRoot::TimestampLtz { .. } => "TIMESTAMP_WITH_LOCAL_TIME_ZONE",
            TypeRoot::Array(_) => "ARRAY",
            TypeRoot::Map { .. } => "MAP",
            TypeRoot::Row(_) => "ROW",
        }
    }

    /// Whether Fluss lets a primary-key or bucket-key column have this type
    /// (`TableDescriptorValidation.KEY_UNSUPPORTED_TYPES`: ARRAY, MAP, ROW).
    pub fn allowed_in_keys(&self) -> bool {
        !matches!(self, TypeRoot::Array(_) | TypeRoot::Map { .. } | TypeRoot::Row(_))
    }

    /// The Arrow type the Fluss client derives for this type (fluss-rust
    /// `record/arrow.rs` `to_arrow_type`; Java `ArrowUtils.toArrowType`).
    pub fn arrow_type(&self) -> arrow_schema::DataType {
        use arrow_schema::{DataType as A, Field, Fields, TimeUnit};
        let unit = |precision: u8| match precision {
            0 => TimeUnit::Second,
            1..=3 => TimeUnit::Millisecond,
            4..=6 => TimeUnit::Microsecond,
            _ => TimeUnit::Nanosecond,
        };
        match self {
            TypeRoot::Boolean => A::Boolean,
            TypeRoot::TinyInt => A::Int8,
            TypeRoot::SmallInt => A::Int16,
            TypeRoot::Int => A::Int32,
            TypeRoot::BigInt => A::Int64,
            TypeRoot::Float => A::Float32,
            TypeRoot::Double => A::Float64,
            TypeRoot::Char { .. } | TypeRoot::String => A::Utf8,
            TypeRoot::Binary { length } => {
                A::FixedSizeBinary(i32::try_from(*length).unwrap_or(i32::MAX))
            }
            TypeRoot::Bytes => A::Binary,
            TypeRoot::Decimal { precision, scale } => {
                A::Decimal128(*precision, i8::try_from(*scale).unwrap_or(i8::MAX))
            }
            TypeRoot::Date => A::Date32,
            TypeRoot::Time { precision } => match unit(*precision) {
                u @ (TimeUnit::Second | TimeUnit::Millisecond) => A::Time32(u),
                u => A::Time64(u),
            },
            TypeRoot::TimestampNtz { precision } => A::Timestamp(unit(*precision), None),
            TypeRoot::TimestampLtz { precision } => {
                A::Timestamp(unit(*precision), Some("UTC".into()))
            }
            TypeRoot::Array(element) => {
                A::List(Field::new_list_field(element.root.arrow_type(), element.nullable).into())
            }
            TypeRoot::Map { key, value } => {
                let entries = Fields::from(vec![
                    // Arrow's map keys are never null (Fluss makes the key type NOT NULL).
                    Field::new("key", key.root.arrow_type(), false),
                    Field::new("value", value.root.arrow_type(), value.nullable),
                ]);
                A::Map(Field::new("entries", A::Struct(entries), false).into(), false)
            }
            TypeRoot::Row(fields) => A::Struct(Fields::from(
                fields
                    .iter()
                    .map(|f| {
                        Field::new(
                            f.name.as_str(),
                            f.data_type.root.arrow_type(),
                            f.data_type.nullable,
                        )
                    })
                    .collect::<Vec<_>>(),
            )),
        }
    }
}

/// A column type with its nullability.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataType {
    pub root: TypeRoot,
    pub nullable: bool,
}

fn param_u32(
    obj: &Map<String, Value>,
    field: &'static str,
    default: Option<u32>,
) -> Result<u32, SchemaError> {
    match obj.get(field) {
        None | Some(Value::Null) => default.ok_or(SchemaError::MissingField(field)),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(SchemaError::WrongType { field, expected: "a non-negative 32-bit integer" }),
    }
}

fn param_in_range(
    obj: &Map<String, Value>,
    field: &'static str,
    default: Option<u32>,
    type_name: &'static str,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, SchemaError> {
    let value = param_u32(obj, field, default)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(SchemaError::InvalidTypeParameter {
            type_name,
            parameter: field,
            value: i64::from(value),
            min: i64::from(*range.start()),
            max: i64::from(*range.end()),
        })
    }
}

fn precision_u8(value: u32) -> u8 {
    // Callers check the range first; every range ends at or below 38.
    u8::try_from(value).unwrap_or(u8::MAX)
}

impl DataType {
    pub fn nullable(root: TypeRoot) -> Self {
        DataType { root, nullable: true }
    }

    pub fn not_null(root: TypeRoot) -> Self {
        DataType { root, nullable: false }
    }

    /// Fluss's JSON: `nullable` appears only when it is false; parameters beside `type`.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("type".to_string(), Value::from(self.root.json_name()));
        if !self.nullable {
            obj.insert("nullable".to_string(), Value::Bool(false));
        }
        match &self.root {
            TypeRoot::Char { length } | TypeRoot::Binary { length } => {
                obj.insert("length".to_string(), Value::from(*length));
            }
            TypeRoot::Decimal { precision, scale } => {
                obj.insert("precision".to_string(), Value::from(*precision));
                obj.insert("scale".to_string(), Value::from(*scale));
            }
            TypeRoot::Time { precision }
            | TypeRoot::TimestampNtz { precision }
            | TypeRoot::TimestampLtz { precision } => {
                obj.insert("precision".to_string(), Value::from(*precision));
            }
            TypeRoot::Array(element) => {
                obj.insert("element_type".to_string(), element.to_json());
            }
            TypeRoot::Map { key, value } => {
                obj.insert("key_type".to_string(), key.to_json());
                obj.insert("value_type".to_string(), value.to_json());
            }
            TypeRoot::Row(fields) => {
                let fields = fields.iter().map(RowField::to_json).collect();
                obj.insert("fields".to_string(), Value::Array(fields));
            }
            _ => {}
        }
        Value::Object(obj)
    }

    pub fn from_json(node: &Value) -> Result<DataType, SchemaError> {
        Self::from_json_at_depth(node, 1)
    }

    fn from_json_at_depth(node: &Value, depth: usize) -> Result<DataType, SchemaError> {
        if depth > NESTING_DEPTH_MAX {
            return Err(SchemaError::NestedTooDeep { max: NESTING_DEPTH_MAX });
        }
        let obj = node
            .as_object()
            .ok_or(SchemaError::WrongType { field: "data_type", expected: "an object" })?;
        let name = match obj.get("type") {
            None => return Err(SchemaError::MissingField("type")),
            Some(v) => {
                v.as_str().ok_or(SchemaError::WrongType { field: "type", expected: "a string" })?
            }
        };
        let nested = |field: &'static str| -> Result<Box<DataType>, SchemaError> {
            let node = obj.get(field).ok_or(SchemaError::MissingField(field))?;
            Ok(Box::new(DataType::from_json_at_depth(node, depth + 1)?))
        };
        let time_precision = |name: &'static str, default: u32| {
            param_in_range(obj, "precision", Some(default), name, 0..=u32::from(TIME_PRECISION_MAX))
                .map(precision_u8)
        };
        let root = match name {
            "BOOLEAN" => TypeRoot::Boolean,
            "TINYINT" => TypeRoot::TinyInt,
            "SMALLINT" => TypeRoot::SmallInt,
            "INTEGER" => TypeRoot::Int,
            "BIGINT" => TypeRoot::BigInt,
            "FLOAT" => TypeRoot::Float,
            "DOUBLE" => TypeRoot::Double,
            "STRING" => TypeRoot::String,
            "BYTES" => TypeRoot::Bytes,
            "DATE" => TypeRoot::Date,
            "CHAR" => TypeRoot::Char {
                length: param_in_range(obj, "length", Some(1), "CHAR", 1..=i32::MAX as u32)?,
            },
            "BINARY" => TypeRoot::Binary {
                length: param_in_range(obj, "length", Some(1), "BINARY", 1..=i32::MAX as u32)?,
            },
            "DECIMAL" => {
                let precision = param_in_range(
                    obj,
                    "precision",
                    Some(10),
                    "DECIMAL",
                    1..=u32::from(DECIMAL_PRECISION_MAX),
                )?;
                let scale = param_in_range(obj, "scale", Some(0), "DECIMAL", 0..=precision)?;
                TypeRoot::Decimal { precision: precision_u8(precision), scale: precision_u8(scale) }
            }
            "TIME_WITHOUT_TIME_ZONE" => TypeRoot::Time { precision: time_precision("TIME", 0)? },
            "TIMESTAMP_WITHOUT_TIME_ZONE" => {
                TypeRoot::TimestampNtz { precision: time_precision("TIMESTAMP", 6)? }
            }
            "TIMESTAMP_WITH_LOCAL_TIME_ZONE" => {
                TypeRoot::TimestampLtz { precision: time_precision("TIMESTAMP_LTZ", 6)? }
            }
            "ARRAY" => TypeRoot::Array(nested("element_type")?),
            "MAP" => {
                // Fluss's `MapType` makes the key type NOT NULL whatever it is given.
                let mut key = nested("key_type")?;
                key.nullable = false;
                TypeRoot::Map { key, value: nested("value_type")? }
            }
            "ROW" => {
                let fields = match obj.get("fields") {
                    None | Some(Value::Null) => return Err(SchemaError::MissingField("fields")),
                    Some(Value::Array(fields)) => fields,
                    Some(_) => {
                        return Err(SchemaError::WrongType {
                            field: "fields",
                            expected: "an array",
                        })
                    }
                };
                if fields.len() > ROW_FIELDS_MAX {
                    return Err(SchemaError::TooManyRowFields {
                        count: fields.len(),
                        max: ROW_FIELDS_MAX,
                    });
                }
                let fields = fields
                    .iter()
                    .map(|f| RowField::from_json_at_depth(f, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(i) = (0..fields.len())
                    .find(|&i| fields[..i].iter().any(|f| f.name == fields[i].name))
                {
                    return Err(SchemaError::DuplicateColumn(fields[i].name.clone()));
                }
                TypeRoot::Row(fields)
            }
            other => return Err(SchemaError::UnknownType(other.to_string())),
        };
        let nullable = match obj.get("nullable") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(SchemaError::WrongType { field: "nullable", expected: "a boolean" })
            }
        };
        Ok(DataType { root, nullable })
    }
}

impl RowField {
    pub fn new(name: impl Into<String>, data_type: DataType) -> Self {
        RowField { name: name.into(), data_type, description: None, field_id: None }
    }

    /// `{"name":…,"field_type":…,"description":…,"field_id":…}` (the last two only when set).
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("name".to_string(), Value::from(self.name.as_str()));
        obj.insert("field_type".to_string(), self.data_type.to_json());
        if let Some(d) = &self.description {
            obj.insert("description".to_string(), Value::from(d.as_str()));
        }
        if let Some(id) = self.field_id {
            obj.insert("field_id".to_string(), Value::from(id));
        }
        Value::Object(obj)
    }

    fn from_json_at_depth(node: &Value, depth: usize) -> Result<RowField, SchemaError> {
        let obj = node
            .as_object()
            .ok_or(SchemaError::WrongType { field: "fields", expected: "an array of objects" })?;
        let name = match obj.get("name") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => return Err(SchemaError::MissingField("name")),
            Some(_) => return Err(SchemaError::WrongType { field: "name", expected: "a string" }),
        };
        let data_type = DataType::from_json_at_depth(
            obj.get("field_type").ok_or(SchemaError::MissingField("field_type"))?,
            depth,
        )?;
        let description = match obj.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(SchemaError::WrongType { field: "description", expected: "a string" })
            }
        };
        let field_id = match obj.get("field_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or(
                SchemaError::WrongType { field: "field_id", expected: "a 32-bit integer" },
            )?),
        };
        Ok(RowField { name, data_type, description, field_id })
    }
}
