//! One column of a changelog's Arrow body, both ways: [`build_array`] turns the column's values
//! into the Arrow array the Fluss client reads (the Arrow type is `TypeRoot::arrow_type`, as
//! fluss-rust's `to_arrow_type` and Java's `ArrowUtils` derive it), [`read_array`] turns an
//! Arrow array back into values, and [`check_layout`] checks, before arrow-rs reads a message,
//! that the field nodes and buffers it describes fit the column's type.
//!
//! ARRAY is an Arrow `List` (i32 offsets), MAP a `Map` of `entries` structs with `key` and
//! `value`, ROW a `Struct` of its fields; a NULL nested value is a null slot with no elements
//! (a NULL ROW's fields are null children, masked by it).

use std::sync::Arc;

use arrow_array::builder::{NullBufferBuilder, OffsetBufferBuilder};
use arrow_array::types::{
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray,
    Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, Int8Array, ListArray, MapArray,
    PrimitiveArray, StringArray, StructArray,
};
use arrow_schema::DataType as ArrowType;

use super::compacted_row::{element_violation, Datum, Timestamp};
use super::data_type::{nanos_per_arrow_unit, DataType, TypeRoot};
use super::error::FormatError;

/// A NULL to stand for each field of a NULL ROW.
static NULL: Datum = Datum::Null;

fn arrow_err(e: arrow_schema::ArrowError) -> FormatError {
    FormatError::Arrow(e.to_string())
}

fn type_err(column: &str, ty: &TypeRoot, d: &Datum) -> FormatError {
    FormatError::InvalidValue(format!(
        "a {} value in column `{column}` of type {}",
        d.summary(),
        ty.json_name()
    ))
}

fn out_of_range(column: &str) -> FormatError {
    FormatError::InvalidValue(format!("a value of column `{column}` is out of Arrow's range"))
}

/// The Arrow type of `ty`, which must be a `$variant`.
macro_rules! arrow_type_of {
    ($ty:expr, $variant:pat => $out:expr) => {
        match $ty.root.arrow_type() {
            $variant => $out,
            other => {
                return Err(FormatError::InvalidValue(format!(
                    "{} maps to the Arrow type {other}",
                    $ty.root.json_name()
                )))
            }
        }
    };
}

macro_rules! column_values {
    ($values:expr, $column:expr, $ty:expr, $variant:ident) => {
        column_values!($values, $column, $ty, $variant, |v: &_| Ok::<_, FormatError>(Clone::clone(
            v
        )))
    };
    ($values:expr, $column:expr, $ty:expr, $variant:ident, $convert:expr) => {
        $values
            .iter()
            .map(|d| match d {
                Datum::Null => Ok(None),
                Datum::$variant(v) => $convert(v).map(Some),
                other => Err(type_err($column, &$ty.root, other)),
            })
            .collect::<Result<Vec<_>, FormatError>>()
    };
}

fn bytes_of(bytes: &Vec<u8>) -> Result<&[u8], FormatError> {
    Ok(bytes.as_slice())
}

/// A TIME (milliseconds of the day) in Arrow's unit: Fluss's `ArrowTimeWriter`
/// (`millis / 1000`, `millis`, `millis * 1000`, `millis * 1_000_000`).
fn time_to_unit(millis: i32, nanos_per_unit: i64) -> i64 {
    if nanos_per_unit >= 1_000_000 {
        i64::from(millis) / (nanos_per_unit / 1_000_000)
    } else {
        i64::from(millis) * (1_000_000 / nanos_per_unit)
    }
}

fn time_from_unit(value: i64, nanos_per_unit: i64) -> Option<i32> {
    let millis = if nanos_per_unit >= 1_000_000 {
        value.checked_mul(nanos_per_unit / 1_000_000)?
    } else {
        value / (1_000_000 / nanos_per_unit)
    };
    i32::try_from(millis).ok()
}

/// Offsets and validity of a List or Map whose slots hold `lengths` elements (`None`: NULL).
struct ListShape {
    offsets: OffsetBufferBuilder<i32>,
    nulls: NullBufferBuilder,
    total: usize,
}

impl ListShape {
    fn new(capacity: usize) -> Self {
        ListShape {
            offsets: OffsetBufferBuilder::new(capacity),
            nulls: NullBufferBuilder::new(capacity),
            total: 0,
        }
    }

    fn push(&mut self, column: &str, length: Option<usize>) -> Result<(), FormatError> {
        let length = match length {
            None => {
                self.nulls.append_null();
                0
            }
            Some(length) => {
                self.nulls.append_non_null();
                length
            }
        };
        self.total = self
            .total
            .checked_add(length)
            .filter(|&total| i32::try_from(total).is_ok())
            .ok_or_else(|| out_of_range(column))?;
        self.offsets.push_length(length);
        Ok(())
    }
}

/// The Arrow array of `values`, all of type `ty`, of the column named `column`.
pub(crate) fn build_array(
    column: &str,
    ty: &DataType,
    values: &[&Datum],
) -> Result<ArrayRef, FormatError> {
    let ok = |v: &i32| Ok::<i32, FormatError>(*v);
    Ok(match &ty.root {
        TypeRoot::Boolean => {
            Arc::new(BooleanArray::from(column_values!(values, column, ty, Boolean)?))
        }
        TypeRoot::TinyInt => {
            Arc::new(Int8Array::from(column_values!(values, column, ty, TinyInt)?))
        }
        TypeRoot::SmallInt => {
            Arc::new(Int16Array::from(column_values!(values, column, ty, SmallInt)?))
        }
        TypeRoot::Int => Arc::new(Int32Array::from(column_values!(values, column, ty, Int)?)),
        TypeRoot::BigInt => Arc::new(Int64Array::from(column_values!(values, column, ty, BigInt)?)),
        TypeRoot::Float => Arc::new(Float32Array::from(column_values!(values, column, ty, Float)?)),
        TypeRoot::Double => {
            Arc::new(Float64Array::from(column_values!(values, column, ty, Double)?))
        }
        TypeRoot::Char { .. } | TypeRoot::String => {
            Arc::new(StringArray::from(column_values!(values, column, ty, String)?))
        }
        TypeRoot::Bytes => {
            Arc::new(BinaryArray::from(column_values!(values, column, ty, Binary, bytes_of)?))
        }
        TypeRoot::Binary { length } => {
            let values = column_values!(values, column, ty, Binary, bytes_of)?;
            let size = i32::try_from(*length).map_err(|_| out_of_range(column))?;
            Arc::new(if values.iter().all(Option::is_none) {
                FixedSizeBinaryArray::new_null(size, values.len())
            } else {
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(values.into_iter(), size)
                    .map_err(arrow_err)?
            })
        }
        TypeRoot::Decimal { precision, scale } => {
            let values = column_values!(values, column, ty, Decimal, |v: &i128| Ok::<
                i128,
                FormatError,
            >(*v))?;
            let scale = i8::try_from(*scale).map_err(|_| out_of_range(column))?;
            Arc::new(
                Decimal128Array::from(values)
                    .with_precision_and_scale(*precision, scale)
                    .map_err(arrow_err)?,
            )
        }
        TypeRoot::Date => Arc::new(Date32Array::from(column_values!(values, column, ty, Date)?)),
        TypeRoot::Time { precision } => {
            let per_unit = nanos_per_arrow_unit(*precision);
            let values = column_values!(values, column, ty, Time, ok)?;
            let in_unit = values.iter().map(|v| v.map(|ms| time_to_unit(ms, per_unit)));
            match per_unit {
                1_000_000_000 => Arc::new(PrimitiveArray::<Time32SecondType>::from_iter(
                    in_unit.map(|v| v.map(|s| s as i32)),
                )) as ArrayRef,
                1_000_000 => Arc::new(PrimitiveArray::<Time32MillisecondType>::from_iter(
                    in_unit.map(|v| v.map(|s| s as i32)),
                )),
                1_000 => Arc::new(PrimitiveArray::<Time64MicrosecondType>::from_iter(in_unit)),
                _ => Arc::new(PrimitiveArray::<Time64NanosecondType>::from_iter(in_unit)),
            }
        }
        TypeRoot::TimestampNtz { precision } | TypeRoot::TimestampLtz { precision } => {
            let per_unit = nanos_per_arrow_unit(*precision);
            let values = column_values!(values, column, ty, Timestamp, |ts: &Timestamp| ts
                .to_unit(per_unit)
                .ok_or_else(|| out_of_range(column)))?;
            let zone = matches!(ty.root, TypeRoot::TimestampLtz { .. }).then_some("UTC");
            match per_unit {
                1_000_000_000 => Arc::new(
                    PrimitiveArray::<TimestampSecondType>::from(values).with_timezone_opt(zone),
                ) as ArrayRef,
                1_000_000 => Arc::new(
                    PrimitiveArray::<TimestampMillisecondType>::from(values)
                        .with_timezone_opt(zone),
                ),
                1_000 => Arc::new(
                    PrimitiveArray::<TimestampMicrosecondType>::from(values)
                        .with_timezone_opt(zone),
                ),
                _ => Arc::new(
                    PrimitiveArray::<TimestampNanosecondType>::from(values).with_timezone_opt(zone),
                ),
            }
        }
        TypeRoot::Array(element) => {
            let mut shape = ListShape::new(values.len());
            let mut elements: Vec<&Datum> = Vec::new();
            for value in values {
                match value {
                    Datum::Null => shape.push(column, None)?,
                    Datum::Array(items) => {
                        shape.push(column, Some(items.len()))?;
                        elements.extend(items);
                    }
                    other => return Err(type_err(column, &ty.root, other)),
                }
            }
            let field = arrow_type_of!(ty, ArrowType::List(field) => field);
            let elements = build_array(column, element, &elements)?;
            Arc::new(
                ListArray::try_new(field, shape.offsets.finish(), elements, shape.nulls.finish())
                    .map_err(arrow_err)?,
            )
        }
        TypeRoot::Map { key, value } => {
            let mut shape = ListShape::new(values.len());
            let (mut keys, mut map_values): (Vec<&Datum>, Vec<&Datum>) = (Vec::new(), Vec::new());
            for datum in values {
                match datum {
                    Datum::Null => shape.push(column, None)?,
                    Datum::Map(entries) => {
                        shape.push(column, Some(entries.len()))?;
                        for (k, v) in entries {
                            keys.push(k);
                            map_values.push(v);
                        }
                    }
                    other => return Err(type_err(column, &ty.root, other)),
                }
            }
            let (entries_field, sorted) =
                arrow_type_of!(ty, ArrowType::Map(field, sorted) => (field, sorted));
            let entry_fields = match entries_field.data_type() {
                ArrowType::Struct(fields) => fields.clone(),
                other => return Err(FormatError::InvalidValue(format!("map entries of {other}"))),
            };
            let children =
                vec![build_array(column, key, &keys)?, build_array(column, value, &map_values)?];
            let entries = StructArray::try_new(entry_fields, children, None).map_err(arrow_err)?;
            Arc::new(
                MapArray::try_new(
                    entries_field,
                    shape.offsets.finish(),
                    entries,
                    shape.nulls.finish(),
                    sorted,
                )
                .map_err(arrow_err)?,
            )
        }
        TypeRoot::Row(fields) => {
            let mut nulls = NullBufferBuilder::new(values.len());
            let mut children: Vec<Vec<&Datum>> =
                fields.iter().map(|_| Vec::with_capacity(values.len())).collect();
            for value in values {
                match value {
                    Datum::Null => {
                        nulls.append_null();
                        children.iter_mut().for_each(|child| child.push(&NULL));
                    }
                    Datum::Row(items) if items.len() == fields.len() => {
                        nulls.append_non_null();
                        children.iter_mut().zip(items).for_each(|(child, item)| child.push(item));
                    }
                    other => return Err(type_err(column, &ty.root, other)),
                }
            }
            let arrow_fields = arrow_type_of!(ty, ArrowType::Struct(fields) => fields);
            let arrays = fields
                .iter()
                .zip(&children)
                .map(|(field, child)| build_array(column, &field.data_type, child))
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(
                StructArray::try_new_with_length(
                    arrow_fields,
                    arrays,
                    nulls.finish(),
                    values.len(),
                )
                .map_err(arrow_err)?,
            )
        }
    })
}

macro_rules! read_column {
    ($array:expr, $ty:ty, $variant:ident, $n:expr) => {{
        let a = $array
            .as_any()
            .downcast_ref::<$ty>()
            .ok_or_else(|| FormatError::corrupt("arrow column", "unexpected array type"))?;
        (0..$n)
            .map(|i| if a.is_null(i) { Datum::Null } else { Datum::$variant(a.value(i).into()) })
            .collect::<Vec<Datum>>()
    }};
    ($array:expr, $ty:ty, $variant:ident, $n:expr, $convert:expr) => {{
        let a = $array
            .as_any()
            .downcast_ref::<$ty>()
            .ok_or_else(|| FormatError::corrupt("arrow column", "unexpected array type"))?;
        (0..$n)
            .map(|i| {
                if a.is_null(i) {
                    Ok(Datum::Null)
                } else {
                    $convert(a.value(i)).map(Datum::$variant)
                }
            })
            .collect::<Result<Vec<Datum>, FormatError>>()?
    }};
}

fn arrow_out_of_range() -> FormatError {
    FormatError::corrupt("arrow column", "a value out of its type's range")
}

fn downcast<T: 'static>(array: &dyn Array) -> Result<&T, FormatError> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| FormatError::corrupt("arrow column", "unexpected array type"))
}

/// The values `offsets[i]..offsets[i + 1]` of `children`, each checked against `ty`.
fn slot_elements(
    children: &[Datum],
    offsets: &[i32],
    i: usize,
    ty: &DataType,
) -> Result<Vec<Datum>, FormatError> {
    let bound = |at: usize| offsets.get(at).and_then(|&o| usize::try_from(o).ok());
    let items = match (bound(i), bound(i + 1)) {
        (Some(start), Some(end)) => children.get(start..end),
        _ => None,
    }
    .ok_or_else(|| FormatError::corrupt("arrow column", "offsets outside the child values"))?;
    if let Some(violation) = items.iter().find_map(|item| element_violation(ty, item)) {
        return Err(FormatError::corrupt("arrow column", violation));
    }
    Ok(items.to_vec())
}

/// The values of `array`, which holds values of `ty` (a NULL slot is `Datum::Null`, whatever
/// `ty`'s nullability: the caller checks it where the slot is used).
pub(crate) fn read_array(array: &dyn Array, ty: &DataType) -> Result<Vec<Datum>, FormatError> {
    let n = array.len();
    let time =
        |per_unit: i64| move |v: i64| time_from_unit(v, per_unit).ok_or_else(arrow_out_of_range);
    let timestamp =
        |per_unit: i64| move |v: i64| Ok::<_, FormatError>(Timestamp::from_unit(v, per_unit));
    Ok(match &ty.root {
        TypeRoot::Boolean => read_column!(array, BooleanArray, Boolean, n),
        TypeRoot::TinyInt => read_column!(array, Int8Array, TinyInt, n),
        TypeRoot::SmallInt => read_column!(array, Int16Array, SmallInt, n),
        TypeRoot::Int => read_column!(array, Int32Array, Int, n),
        TypeRoot::BigInt => read_column!(array, Int64Array, BigInt, n),
        TypeRoot::Float => read_column!(array, Float32Array, Float, n),
        TypeRoot::Double => read_column!(array, Float64Array, Double, n),
        TypeRoot::Char { .. } | TypeRoot::String => read_column!(array, StringArray, String, n),
        TypeRoot::Bytes => {
            read_column!(array, BinaryArray, Binary, n, |v: &[u8]| Ok::<_, FormatError>(v.to_vec()))
        }
        TypeRoot::Binary { .. } => {
            read_column!(array, FixedSizeBinaryArray, Binary, n, |v: &[u8]| Ok::<_, FormatError>(
                v.to_vec()
            ))
        }
        TypeRoot::Decimal { .. } => read_column!(array, Decimal128Array, Decimal, n),
        TypeRoot::Date => read_column!(array, Date32Array, Date, n),
        TypeRoot::Time { precision } => match nanos_per_arrow_unit(*precision) {
            1_000_000_000 => {
                read_column!(array, PrimitiveArray<Time32SecondType>, Time, n, |v: i32| time(
                    1_000_000_000
                )(
                    i64::from(v)
                ))
            }
            1_000_000 => {
                read_column!(array, PrimitiveArray<Time32MillisecondType>, Time, n, |v: i32| {
                    time(1_000_000)(i64::from(v))
                })
            }
            1_000 => {
                read_column!(array, PrimitiveArray<Time64MicrosecondType>, Time, n, time(1_000))
            }
            _ => read_column!(array, PrimitiveArray<Time64NanosecondType>, Time, n, time(1)),
        },
        TypeRoot::TimestampNtz { precision } | TypeRoot::TimestampLtz { precision } => {
            match nanos_per_arrow_unit(*precision) {
                1_000_000_000 => read_column!(
                    array,
                    PrimitiveArray<TimestampSecondType>,
                    Timestamp,
                    n,
                    timestamp(1_000_000_000)
                ),
                1_000_000 => read_column!(
                    array,
                    PrimitiveArray<TimestampMillisecondType>,
                    Timestamp,
                    n,
                    timestamp(1_000_000)
                ),
                1_000 => read_column!(
                    array,
                    PrimitiveArray<TimestampMicrosecondType>,
                    Timestamp,
                    n,
                    timestamp(1_000)
                ),
                _ => read_column!(
                    array,
                    PrimitiveArray<TimestampNanosecondType>,
                    Timestamp,
                    n,
                    timestamp(1)
                ),
            }
        }
        TypeRoot::Array(element) => {
            let list = downcast::<ListArray>(array)?;
            let children = read_array(list.values().as_ref(), element)?;
            let offsets: &[i32] = list.value_offsets();
            (0..n)
                .map(|i| match list.is_null(i) {
                    true => Ok(Datum::Null),
                    false => slot_elements(&children, offsets, i, element).map(Datum::Array),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        TypeRoot::Map { key, value } => {
            let map = downcast::<MapArray>(array)?;
            let keys = read_array(map.keys().as_ref(), key)?;
            let values = read_array(map.values().as_ref(), value)?;
            let offsets: &[i32] = map.value_offsets();
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                if map.is_null(i) {
                    out.push(Datum::Null);
                    continue;
                }
                let keys = slot_elements(&keys, offsets, i, key)?;
                if keys.iter().any(Datum::is_null) {
                    return Err(FormatError::corrupt("arrow column", "a NULL map key"));
                }
                let values = slot_elements(&values, offsets, i, value)?;
                out.push(Datum::Map(keys.into_iter().zip(values).collect()));
            }
            out
        }
        TypeRoot::Row(fields) => {
            let row = downcast::<StructArray>(array)?;
            if row.num_columns() != fields.len() {
                return Err(FormatError::corrupt("arrow column", "a struct of other fields"));
            }
            let mut children = fields
                .iter()
                .zip(row.columns())
                .map(|(field, child)| read_array(child.as_ref(), &field.data_type))
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                if row.is_null(i) {
                    out.push(Datum::Null);
                    continue;
                }
                let mut values = Vec::with_capacity(fields.len());
                for (field, child) in fields.iter().zip(children.iter_mut()) {
                    let value = child
                        .get_mut(i)
                        .map(|v| std::mem::replace(v, Datum::Null))
                        .ok_or_else(|| {
                            FormatError::corrupt("arrow column", "a struct child shorter than it")
                        })?;
                    if let Some(violation) = element_violation(&field.data_type, &value) {
                        return Err(FormatError::corrupt("arrow column", violation));
                    }
                    values.push(value);
                }
                out.push(Datum::Row(values));
            }
            out
        }
    })
}

/// One field node of an Arrow IPC record batch: its length and null count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    pub length: i64,
    pub null_count: i64,
}

/// Where [`check_layout`] is in a message's field nodes and buffers (each buffer's length).
pub(crate) struct LayoutCursor<'a> {
    pub nodes: &'a [Node],
    pub buffer_lengths: &'a [usize],
    pub node: usize,
    pub buffer: usize,
}

impl LayoutCursor<'_> {
    fn next_node(&mut self) -> Result<Node, FormatError> {
        let node = self.nodes.get(self.node).copied();
        self.node += 1;
        node.ok_or_else(|| FormatError::corrupt("arrow message", "too few field nodes"))
    }

    fn next_buffer(&mut self) -> Result<usize, FormatError> {
        let length = self.buffer_lengths.get(self.buffer).copied();
        self.buffer += 1;
        length.ok_or_else(|| FormatError::corrupt("arrow message", "too few buffers"))
    }

    /// A buffer that must hold `count` values of `width` bytes (and no partial one).
    fn values_buffer(&mut self, count: usize, width: usize) -> Result<(), FormatError> {
        let length = self.next_buffer()?;
        if length % width != 0 || length < count.saturating_mul(width) {
            return Err(FormatError::corrupt(
                "arrow message",
                "a values buffer does not hold its column's values",
            ));
        }
        Ok(())
    }
}

/// Checks the field nodes and buffers of one column of `ty` (of `length` rows when it is
/// known) in IPC order: each node, then its validity buffer, the buffers of its type, then its
/// children. arrow-rs trusts a values buffer's length and panics on one that does not hold
/// its values (seen with Decimal128); the offsets themselves it validates.
pub(crate) fn check_layout(
    ty: &TypeRoot,
    length: Option<i64>,
    cursor: &mut LayoutCursor<'_>,
) -> Result<(), FormatError> {
    let node = cursor.next_node()?;
    let bad_node = node.length < 0
        || node.null_count < 0
        || node.null_count > node.length
        || length.is_some_and(|length| length != node.length);
    if bad_node {
        return Err(FormatError::corrupt("arrow message", "bad field node"));
    }
    let rows = usize::try_from(node.length).unwrap_or(usize::MAX);
    cursor.next_buffer()?; // validity
    match ty {
        TypeRoot::Char { .. } | TypeRoot::String | TypeRoot::Bytes => {
            cursor.values_buffer(rows.saturating_add(1), 4)?;
            cursor.next_buffer()?;
        }
        TypeRoot::Array(element) => {
            cursor.values_buffer(rows.saturating_add(1), 4)?;
            check_layout(&element.root, None, cursor)?;
        }
        TypeRoot::Map { key, value } => {
            cursor.values_buffer(rows.saturating_add(1), 4)?;
            let entries = cursor.next_node()?;
            if entries.length < 0 || entries.null_count != 0 {
                return Err(FormatError::corrupt("arrow message", "bad map entries node"));
            }
            cursor.next_buffer()?; // the entries' validity
            check_layout(&key.root, Some(entries.length), cursor)?;
            check_layout(&value.root, Some(entries.length), cursor)?;
        }
        TypeRoot::Row(fields) => {
            for field in fields {
                check_layout(&field.data_type.root, Some(node.length), cursor)?;
            }
        }
        other => match other.arrow_type().primitive_width() {
            Some(width) => cursor.values_buffer(rows, width)?,
            None => {
                cursor.next_buffer()?;
            }
        },
    }
    Ok(())
}
