//! `[config]` to MessagePack, the bytes `pulp_init` receives.
//!
//! Integers are always written as MessagePack int64 so a decoder that keeps
//! types (Go's `interface{}`, Python) sees a 64-bit integer whatever the value;
//! TOML datetimes become their RFC 3339 text.

use rmp::encode;

/// Encodes a TOML table; an empty table is zero bytes (`pulp_init(0, 0)`).
pub fn config_to_msgpack(table: &toml::Table) -> Vec<u8> {
    let mut out = Vec::new();
    if !table.is_empty() {
        write_table(&mut out, table);
    }
    out
}

fn write_table(out: &mut Vec<u8>, table: &toml::Table) {
    // Writing into a Vec cannot fail, and TOML tables and arrays have fewer than 2^32 entries.
    let _ = encode::write_map_len(out, table.len() as u32);
    for (key, value) in table {
        let _ = encode::write_str(out, key);
        write_value(out, value);
    }
}

fn write_value(out: &mut Vec<u8>, value: &toml::Value) {
    match value {
        toml::Value::String(s) => {
            let _ = encode::write_str(out, s);
        }
        toml::Value::Integer(i) => {
            let _ = encode::write_i64(out, *i);
        }
        toml::Value::Float(f) => {
            let _ = encode::write_f64(out, *f);
        }
        toml::Value::Boolean(b) => {
            let _ = encode::write_bool(out, *b);
        }
        toml::Value::Datetime(d) => {
            let _ = encode::write_str(out, &d.to_string());
        }
        toml::Value::Array(items) => {
            let _ = encode::write_array_len(out, items.len() as u32);
            for item in items {
                write_value(out, item);
            }
        }
        toml::Value::Table(t) => write_table(out, t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    #[test]
    fn every_toml_type_round_trips() {
        let table: toml::Table = toml::from_str(
            r#"
            s = "hi"
            i = 7
            big = -9007199254740993
            f = 1.5
            b = true
            d = 1979-05-27T07:32:00Z
            a = [1, "two"]
            [t]
            x = 1
            "#,
        )
        .unwrap();
        let bytes = config_to_msgpack(&table);
        let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        let get = |k: &str| {
            v.as_map()
                .unwrap()
                .iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(get("s"), Value::from("hi"));
        assert_eq!(get("i").as_i64(), Some(7));
        assert_eq!(get("big").as_i64(), Some(-9007199254740993));
        assert_eq!(get("f").as_f64(), Some(1.5));
        assert_eq!(get("b"), Value::Boolean(true));
        assert_eq!(get("d"), Value::from("1979-05-27T07:32:00Z"));
        assert_eq!(
            get("a"),
            Value::Array(vec![Value::from(1i64), Value::from("two")])
        );
        assert_eq!(get("t").as_map().unwrap().len(), 1);
    }

    #[test]
    fn integers_keep_their_64_bit_type() {
        let table: toml::Table = toml::from_str("i = 1").unwrap();
        let bytes = config_to_msgpack(&table);
        // fixmap(1), fixstr "i", int64 marker 0xd3 then 8 bytes.
        assert_eq!(bytes, [0x81, 0xa1, b'i', 0xd3, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn empty_table_is_zero_bytes() {
        assert!(config_to_msgpack(&toml::Table::new()).is_empty());
    }
}
