//! The filter predicate a FetchLog request may carry. The `int32` codes are upstream's
//! constants (no proto enums): type LEAF 0 / COMPOUND 1; leaf functions EQUAL 0 … NOT_IN 12;
//! compound functions AND 0 / OR 1; literal types BOOLEAN 0 … BYTES 15.

use bytes::Bytes;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbPredicate {
    #[prost(int32, required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub leaf: Option<PbLeafPredicate>,
    #[prost(message, optional, tag = "3")]
    pub compound: Option<PbCompoundPredicate>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbLeafPredicate {
    #[prost(int32, required, tag = "1")]
    pub function: i32,
    /// The schema field id of the top-level field compared.
    #[prost(int32, required, tag = "2")]
    pub field_id: i32,
    #[prost(message, repeated, tag = "3")]
    pub literals: Vec<PbLiteralValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbCompoundPredicate {
    #[prost(int32, required, tag = "1")]
    pub function: i32,
    #[prost(message, repeated, tag = "2")]
    pub children: Vec<PbPredicate>,
}

/// `literal_type` says which value field is set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbLiteralValue {
    #[prost(int32, required, tag = "1")]
    pub literal_type: i32,
    #[prost(bool, required, tag = "2")]
    pub is_null: bool,
    #[prost(bool, optional, tag = "3")]
    pub boolean_value: Option<bool>,
    #[prost(int32, optional, tag = "4")]
    pub int_value: Option<i32>,
    #[prost(int64, optional, tag = "5")]
    pub bigint_value: Option<i64>,
    #[prost(float, optional, tag = "6")]
    pub float_value: Option<f32>,
    #[prost(double, optional, tag = "7")]
    pub double_value: Option<f64>,
    #[prost(string, optional, tag = "8")]
    pub string_value: Option<String>,
    #[prost(bytes = "bytes", optional, tag = "9")]
    pub binary_value: Option<Bytes>,
    /// A compact decimal's unscaled value.
    #[prost(int64, optional, tag = "10")]
    pub decimal_value: Option<i64>,
    #[prost(int64, optional, tag = "11")]
    pub timestamp_millis_value: Option<i64>,
    #[prost(int32, optional, tag = "12")]
    pub timestamp_nano_of_millis_value: Option<i32>,
    /// A non-compact decimal's unscaled bytes.
    #[prost(bytes = "bytes", optional, tag = "13")]
    pub decimal_bytes: Option<Bytes>,
}
