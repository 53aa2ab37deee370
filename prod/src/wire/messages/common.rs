//! Small messages shared by several requests.

/// A table by name.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbTablePath {
    #[prost(string, required, tag = "1")]
    pub database_name: String,
    #[prost(string, required, tag = "2")]
    pub table_name: String,
}

/// A table, or one of its partitions, by name.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbPhysicalTablePath {
    #[prost(string, required, tag = "1")]
    pub database_name: String,
    #[prost(string, required, tag = "2")]
    pub table_name: String,
    #[prost(string, optional, tag = "3")]
    pub partition_name: Option<String>,
}

/// A string pair.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PbKeyValue {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
}
