//! Redaction before anything reaches the store: credentials and configured fields are never
//! written in clear.
//!
//! - Headers `authorization`, `proxy-authorization`, `cookie`, `set-cookie` and every
//!   `redact_headers` name become `[redacted xxh3:…]`: a fingerprint keyed with a random
//!   per-process seed that is never stored, so two values can be told equal or different
//!   within one run but cannot be guessed back from the file.
//! - JSON fields named in `redact_fields` (bare names at any depth, or pointer globs), and
//!   query and `application/x-www-form-urlencoded` parameters with those names, become
//!   `[redacted]` — in stored bodies, in the request path and in diff entries.
//!
//! Bodies that are neither JSON nor form-encoded are stored as they are (and the example
//! lines of text differences get the same parameter treatment as query strings).

use std::collections::HashSet;

use http::HeaderMap;
use serde_json::Value;

use crate::compare::{DiffEntry, DiffKind};
use crate::config::ShadowGlobalConfig;
use crate::pointer::{self, GlobSet, Seg};

/// What a redacted JSON field or parameter becomes.
pub const REDACTED: &str = "[redacted]";
/// Headers always redacted.
const ALWAYS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

#[derive(Debug, Clone)]
pub(crate) struct Redactor {
    headers: HashSet<String>,
    names: HashSet<String>,
    globs: GlobSet,
    seed: u64,
}

impl Redactor {
    /// Built from a validated configuration (invalid globs are skipped).
    pub(crate) fn new(cfg: &ShadowGlobalConfig) -> Redactor {
        let headers = ALWAYS
            .iter()
            .map(|s| s.to_string())
            .chain(cfg.redact_headers.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        let (globs, names): (Vec<String>, Vec<String>) = cfg
            .redact_fields
            .iter()
            .cloned()
            .partition(|f| f.starts_with('/'));
        Redactor {
            headers,
            names: names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
            globs: GlobSet::parse(&globs).unwrap_or_default(),
            seed: rand::random(),
        }
    }

    pub(crate) fn is_secret_header(&self, name: &str) -> bool {
        self.headers.contains(&name.to_ascii_lowercase())
    }

    fn fingerprint(&self, value: &[u8]) -> String {
        format!(
            "[redacted xxh3:{:016x}]",
            xxhash_rust::xxh3::xxh3_64_with_seed(value, self.seed)
        )
    }

    /// Headers as `(name, value)` pairs, secrets fingerprinted.
    pub(crate) fn headers(&self, headers: &HeaderMap) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(name, value)| {
                let v = if self.is_secret_header(name.as_str()) {
                    self.fingerprint(value.as_bytes())
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                (name.as_str().to_string(), v)
            })
            .collect()
    }

    fn field_is_secret(&self, path: &[Seg]) -> bool {
        let named = !self.names.is_empty()
            && path.iter().any(|s| match s {
                Seg::Key(k) => self.names.contains(&k.to_ascii_lowercase()),
                Seg::Index(_) => false,
            });
        named || (!self.globs.is_empty() && self.globs.matches_prefix_of(path))
    }

    /// Replaces every secret field inside `v`, which sits at `path`.
    pub(crate) fn json_at(&self, v: &mut Value, path: &mut Vec<Seg>) {
        if self.names.is_empty() && self.globs.is_empty() {
            return;
        }
        if self.field_is_secret(path) {
            *v = Value::from(REDACTED);
            return;
        }
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    path.push(Seg::Key(k.clone()));
                    self.json_at(child, path);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter_mut().enumerate() {
                    path.push(Seg::Index(i));
                    self.json_at(child, path);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// A body as it may be stored: JSON and form bodies with secret fields replaced.
    pub(crate) fn body(&self, body: &[u8], content_type: Option<&str>) -> Vec<u8> {
        if self.names.is_empty() && self.globs.is_empty() {
            return body.to_vec();
        }
        if let Ok(mut v) = serde_json::from_slice::<Value>(body) {
            self.json_at(&mut v, &mut Vec::new());
            return serde_json::to_vec(&v).unwrap_or_default();
        }
        let is_form = content_type.is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        if is_form {
            if let Ok(text) = std::str::from_utf8(body) {
                return self.params(text).into_bytes();
            }
        }
        body.to_vec()
    }

    /// `a=1&password=x` → `a=1&password=[redacted]` for every configured name.
    fn params(&self, text: &str) -> String {
        text.split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if self.names.contains(&k.to_ascii_lowercase()) => {
                    format!("{k}={REDACTED}")
                }
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    /// A request path with secret query parameters replaced.
    pub(crate) fn path_and_query(&self, pq: &str) -> String {
        match pq.split_once('?') {
            Some((path, query)) if !self.names.is_empty() => {
                format!("{path}?{}", self.params(query))
            }
            _ => pq.to_string(),
        }
    }

    /// Diff entries as they may be stored: secret headers fingerprinted, secret fields
    /// replaced, secrets nested in reported values replaced.
    pub(crate) fn entries(&self, entries: &mut [DiffEntry]) {
        for e in entries {
            match e.kind {
                DiffKind::Header => {
                    let name = e.path.trim_start_matches("header:");
                    if self.is_secret_header(name) {
                        for v in [&mut e.legacy, &mut e.new].into_iter().flatten() {
                            let raw = v
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string());
                            *v = Value::from(self.fingerprint(raw.as_bytes()));
                        }
                    }
                }
                DiffKind::Status => {}
                // First changed lines of non-JSON bodies: form-style parameters are caught.
                DiffKind::Text if !self.names.is_empty() => {
                    for v in [&mut e.legacy, &mut e.new].into_iter().flatten() {
                        if let Some(text) = v.as_str() {
                            *v = Value::from(self.params(text));
                        }
                    }
                }
                DiffKind::Text => {}
                _ => {
                    let Some(segs) = pointer::split(&e.path) else {
                        continue;
                    };
                    let mut path: Vec<Seg> = segs
                        .into_iter()
                        .map(|s| match s.parse::<usize>() {
                            Ok(i) if !s.starts_with('+') => Seg::Index(i),
                            _ => Seg::Key(s),
                        })
                        .collect();
                    for v in [&mut e.legacy, &mut e.new].into_iter().flatten() {
                        self.json_at(v, &mut path);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor() -> Redactor {
        Redactor::new(&ShadowGlobalConfig {
            redact_headers: vec!["X-Api-Key".into()],
            redact_fields: vec!["password".into(), "/user/ssn".into()],
            ..Default::default()
        })
    }

    #[test]
    fn headers() {
        let r = redactor();
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        h.insert("x-api-key", "k3y".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        let out = r.headers(&h);
        let text = format!("{out:?}");
        assert!(!text.contains("s3cret") && !text.contains("k3y"), "{text}");
        assert!(text.contains("[redacted xxh3:"));
        assert!(text.contains("*/*"));
    }

    #[test]
    fn bodies_paths_and_entries() {
        let r = redactor();
        let body = br#"{"user": {"ssn": "123-45", "name": "a"}, "items": [{"password": "pw1"}]}"#;
        let out = String::from_utf8(r.body(body, Some("application/json"))).unwrap();
        assert!(!out.contains("123-45") && !out.contains("pw1"), "{out}");
        assert!(out.contains("\"name\":\"a\""));
        let form = r.body(
            b"user=a&password=pw2",
            Some("application/x-www-form-urlencoded"),
        );
        assert_eq!(form, b"user=a&password=[redacted]");
        assert_eq!(
            r.path_and_query("/x?password=pw3&a=1"),
            "/x?password=[redacted]&a=1"
        );
        let mut entries = vec![
            DiffEntry {
                path: "/user/ssn".into(),
                field: "/user/ssn".into(),
                kind: DiffKind::Value,
                legacy: Some(json!("111")),
                new: Some(json!("222")),
            },
            DiffEntry {
                path: "/items/0".into(),
                field: "/items/*".into(),
                kind: DiffKind::Missing,
                legacy: Some(json!({"password": "pw4"})),
                new: None,
            },
            // Elements paired by a secret field: the order entry lists them under its name.
            DiffEntry {
                path: "/items".into(),
                field: "/items".into(),
                kind: DiffKind::Order,
                legacy: Some(json!({"password": ["pw5", "pw6"]})),
                new: Some(json!({"password": ["pw6", "pw5"]})),
            },
        ];
        r.entries(&mut entries);
        let text = serde_json::to_string(&entries).unwrap();
        assert!(
            !text.contains("111") && !text.contains("222") && !text.contains("pw4"),
            "{text}"
        );
    }
}
