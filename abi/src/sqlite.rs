//! `storage.sqlite`: the values, parameters and results of `sqlite_exec` and
//! `sqlite_query`.
//!
//! Parameters travel as a MessagePack array of [`Value`]; results as the maps
//! [`ExecResult`] and [`QueryResult`], keyed by field name like every struct on
//! the wire. A [`Value`] is written as the *native* MessagePack type of its
//! SQLite type (nil, bool, int, float, str, bin) rather than as a tagged enum,
//! so a plugin written against Pulp v0.1 (or in another language) reads rows
//! with a plain MessagePack decoder, and an integer never comes back as a float.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// One SQL value: a parameter or a cell of a result row.
///
/// SQLite's storage classes map one to one: NULL ↔ [`Value::Nil`],
/// INTEGER ↔ [`Value::Int`], REAL ↔ [`Value::Float`], TEXT ↔ [`Value::Str`],
/// BLOB ↔ [`Value::Bin`]. SQLite has no boolean: [`Value::Bool`] binds as the
/// integer 0 or 1 and comes back as [`Value::Int`].
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// SQL NULL; MessagePack nil.
    #[default]
    Nil,
    /// Bound as INTEGER 0 / 1; MessagePack bool.
    Bool(bool),
    /// INTEGER; MessagePack int (any width, decoded into 64 bits).
    Int(i64),
    /// REAL; MessagePack float (f32 is accepted and widened).
    Float(f64),
    /// TEXT; MessagePack str.
    Str(String),
    /// BLOB; MessagePack bin.
    Bin(Vec<u8>),
}

impl Value {
    /// The integer, if this is [`Value::Int`] (or a [`Value::Bool`], as 0 / 1).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The number, if this is [`Value::Float`] or [`Value::Int`].
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(n) => Some(*n as f64),
            _ => None,
        }
    }

    /// The text, if this is [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is [`Value::Bin`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bin(b) => Some(b),
            _ => None,
        }
    }

    /// True for SQL NULL.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Nil => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(n) => serializer.serialize_i64(*n),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::Str(s) => serializer.serialize_str(s),
            // Not a sequence of integers: MessagePack bin, as the ABI requires.
            Value::Bin(b) => serializer.serialize_bytes(b),
        }
    }
}

/// Accepts exactly the native scalar types; arrays and maps are not SQL values.
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nil, a bool, an integer within i64, a float, a string or binary")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        // SQLite integers are signed 64-bit; silently wrapping would corrupt data.
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_f32<E: de::Error>(self, v: f32) -> Result<Value, E> {
        Ok(Value::Float(f64::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(String::from(v)))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bin(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bin(v))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(String::from(v))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bin(v.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bin(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    /// `None` binds as NULL.
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Nil, Into::into)
    }
}

/// Result of `sqlite_exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExecResult {
    /// Rows inserted, updated or deleted by the statement itself (not by
    /// triggers); 0 for statements that change no rows (DDL, `BEGIN`, ...).
    pub rows_affected: u64,
    /// The rowid of the most recent successful INSERT on this plugin's
    /// connection (SQLite's `last_insert_rowid`), which may predate this call.
    pub last_insert_id: i64,
}

/// Result of `sqlite_query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct QueryResult {
    /// Column names, in select-list order.
    pub columns: Vec<String>,
    /// One entry per row, each with one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl QueryResult {
    /// The position of the column called `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn round_trip(v: &Value) -> Value {
        let bytes = rmp_serde::to_vec_named(v).unwrap();
        rmp_serde::from_slice(&bytes).unwrap()
    }

    #[test]
    fn every_variant_round_trips_with_its_type() {
        let values = [
            Value::Nil,
            Value::Bool(true),
            Value::Bool(false),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(127),
            Value::Int(1 << 40),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Float(0.0),
            Value::Float(1.5),
            Value::Float(-2.25e300),
            Value::Str(String::new()),
            Value::Str(String::from("héllo")),
            Value::Bin(Vec::new()),
            Value::Bin(vec![0, 1, 2, 255]),
        ];
        for v in &values {
            assert_eq!(&round_trip(v), v);
        }
    }

    #[test]
    fn values_use_native_msgpack_types() {
        let enc = |v: Value| rmp_serde::to_vec_named(&v).unwrap();
        assert_eq!(enc(Value::Nil), [0xc0]);
        assert_eq!(enc(Value::Bool(true)), [0xc3]);
        assert_eq!(enc(Value::Int(5)), [0x05]);
        assert_eq!(enc(Value::Int(-1)), [0xff]);
        assert_eq!(enc(Value::Float(1.0))[0], 0xcb);
        assert_eq!(enc(Value::Str(String::from("hi"))), [0xa2, b'h', b'i']);
        assert_eq!(enc(Value::Bin(vec![7, 8])), [0xc4, 2, 7, 8]);
    }

    #[test]
    fn an_integer_comes_back_as_int_not_float() {
        assert!(matches!(round_trip(&Value::Int(3)), Value::Int(3)));
        // A whole-number float stays a float.
        assert!(matches!(round_trip(&Value::Float(3.0)), Value::Float(f) if f == 3.0));
    }

    #[test]
    fn foreign_encodings_decode_as_expected() {
        // u64 within range, f32, and a too-large u64.
        let v: Value = rmp_serde::from_slice(&[0xcf, 0, 0, 0, 0, 0, 0, 0, 9]).unwrap();
        assert_eq!(v, Value::Int(9));
        let v: Value = rmp_serde::from_slice(&[0xca, 0x3f, 0xc0, 0, 0]).unwrap();
        assert_eq!(v, Value::Float(1.5));
        let too_big = rmp_serde::to_vec(&u64::MAX).unwrap();
        assert!(rmp_serde::from_slice::<Value>(&too_big).is_err());
        // Arrays and maps are not SQL values.
        assert!(rmp_serde::from_slice::<Value>(&[0x90]).is_err());
        assert!(rmp_serde::from_slice::<Value>(&[0x80]).is_err());
    }

    #[test]
    fn params_are_an_array_of_values() {
        let params = vec![
            Value::from(1i64),
            Value::from("a"),
            Value::from(vec![1u8]),
            Value::Nil,
        ];
        let bytes = rmp_serde::to_vec_named(&params).unwrap();
        assert_eq!(bytes[0], 0x94);
        let back: Vec<Value> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, params);
    }

    #[test]
    fn results_are_maps_keyed_by_field_name() {
        let exec = ExecResult {
            rows_affected: 2,
            last_insert_id: -7,
        };
        let bytes = rmp_serde::to_vec_named(&exec).unwrap();
        assert_eq!(bytes[0], 0x82);
        assert!(bytes.windows(13).any(|w| w == b"rows_affected"));
        assert_eq!(rmp_serde::from_slice::<ExecResult>(&bytes).unwrap(), exec);

        let query = QueryResult {
            columns: vec![String::from("id"), String::from("data")],
            rows: vec![
                vec![Value::Int(1), Value::Bin(vec![1, 2])],
                vec![Value::Int(2), Value::Nil],
            ],
        };
        let bytes = rmp_serde::to_vec_named(&query).unwrap();
        assert_eq!(bytes[0], 0x82);
        let back: QueryResult = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, query);
        assert_eq!(back.column("data"), Some(1));
    }

    #[test]
    fn conversions() {
        assert_eq!(Value::from(Some(3i64)), Value::Int(3));
        assert_eq!(Value::from(None::<i64>), Value::Nil);
        assert_eq!(Value::from(true).as_i64(), Some(1));
        assert_eq!(Value::from(String::from("x")).as_str(), Some("x"));
        assert_eq!(Value::from(&b"ab"[..]).as_bytes(), Some(&b"ab"[..]));
        assert_eq!(Value::from(2.5).as_f64(), Some(2.5));
        assert!(Value::default().is_nil());
    }
}
