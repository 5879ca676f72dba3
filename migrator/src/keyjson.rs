//! Row keys in machine-readable reports: held as compact JSON text (`{"id":42}`, how people
//! read them and how quarantine and the dual-write tools match them), written to JSON as the
//! object itself, never as a string holding JSON. Used with `#[serde(with = "crate::keyjson")]`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The key as a JSON object (as a string only if it is not JSON).
pub fn serialize<S: Serializer>(key: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(key) {
        Ok(v) => v.serialize(s),
        Err(_) => s.serialize_str(key),
    }
}

/// An object, or a string (reports written before keys were objects), back to the JSON text.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}
