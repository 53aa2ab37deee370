//! Column types and their Fluss JSON form (`{"type":"INTEGER","nullable":false}`).

use serde_json::{Map, Value};

use super::error::SchemaError;

/// The column types kvtablet supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TypeRoot {
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    String,
}

impl TypeRoot {
    pub const ALL: [TypeRoot; 8] = [
        TypeRoot::Boolean,
        TypeRoot::TinyInt,
        TypeRoot::SmallInt,
        TypeRoot::Int,
        TypeRoot::BigInt,
        TypeRoot::Float,
        TypeRoot::Double,
        TypeRoot::String,
    ];

    /// The name in Fluss's JSON (`type`).
    pub fn json_name(self) -> &'static str {
        match self {
            TypeRoot::Boolean => "BOOLEAN",
            TypeRoot::TinyInt => "TINYINT",
            TypeRoot::SmallInt => "SMALLINT",
            TypeRoot::Int => "INTEGER",
            TypeRoot::BigInt => "BIGINT",
            TypeRoot::Float => "FLOAT",
            TypeRoot::Double => "DOUBLE",
            TypeRoot::String => "STRING",
        }
    }

    pub fn from_json_name(name: &str) -> Result<TypeRoot, SchemaError> {
        if let Some(root) = TypeRoot::ALL.into_iter().find(|r| r.json_name() == name) {
            return Ok(root);
        }
        const KNOWN_UNSUPPORTED: [&str; 11] = [
            "BYTES",
            "DATE",
            "CHAR",
            "BINARY",
            "DECIMAL",
            "TIME_WITHOUT_TIME_ZONE",
            "TIMESTAMP_WITHOUT_TIME_ZONE",
            "TIMESTAMP_WITH_LOCAL_TIME_ZONE",
            "ARRAY",
            "MAP",
            "ROW",
        ];
        if KNOWN_UNSUPPORTED.contains(&name) {
            Err(SchemaError::UnsupportedType(name.to_string()))
        } else {
            Err(SchemaError::UnknownType(name.to_string()))
        }
    }

    /// The Arrow type the Fluss client derives for this column (`to_arrow_type`).
    pub fn arrow_type(self) -> arrow_schema::DataType {
        use arrow_schema::DataType as A;
        match self {
            TypeRoot::Boolean => A::Boolean,
            TypeRoot::TinyInt => A::Int8,
            TypeRoot::SmallInt => A::Int16,
            TypeRoot::Int => A::Int32,
            TypeRoot::BigInt => A::Int64,
            TypeRoot::Float => A::Float32,
            TypeRoot::Double => A::Float64,
            TypeRoot::String => A::Utf8,
        }
    }
}

/// A column type with its nullability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataType {
    pub root: TypeRoot,
    pub nullable: bool,
}

impl DataType {
    pub fn nullable(root: TypeRoot) -> Self {
        DataType { root, nullable: true }
    }

    pub fn not_null(root: TypeRoot) -> Self {
        DataType { root, nullable: false }
    }

    /// Fluss's JSON: `nullable` appears only when it is false.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("type".to_string(), Value::from(self.root.json_name()));
        if !self.nullable {
            obj.insert("nullable".to_string(), Value::Bool(false));
        }
        Value::Object(obj)
    }

    pub fn from_json(node: &Value) -> Result<DataType, SchemaError> {
        let obj = node
            .as_object()
            .ok_or(SchemaError::WrongType { field: "data_type", expected: "an object" })?;
        let name = match obj.get("type") {
            None => return Err(SchemaError::MissingField("type")),
            Some(v) => {
                v.as_str().ok_or(SchemaError::WrongType { field: "type", expected: "a string" })?
            }
        };
        let root = TypeRoot::from_json_name(name)?;
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
