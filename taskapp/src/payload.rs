//! The text of a `task_events.payload`: JSON as the monolith's Python `json.dumps` writes it
//! (`", "` and `": "` separators, non-ASCII escaped as `\uXXXX`), so rows the legacy side
//! appends look like the ones already in the database.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

/// `json.dumps(value)`.
pub(crate) fn to_python_json(value: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(64);
    let mut ser = Serializer::with_formatter(&mut out, PythonFormatter);
    // Serializing a `Value` into a Vec cannot fail; fall back to serde_json's form regardless.
    if value.serialize(&mut ser).is_err() {
        return value.to_string();
    }
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        // python3 -c 'import json; print(json.dumps({"a": [1, 2], "b": "é😀", "c": None}))'
        let v = json!({"a": [1, 2], "b": "é😀", "c": null});
        assert_eq!(
            to_python_json(&v),
            r#"{"a": [1, 2], "b": "\u00e9\ud83d\ude00", "c": null}"#
        );
        assert_eq!(to_python_json(&json!({})), "{}");
    }
}
