//! Comparing two captured responses, always expressed as *legacy* versus *new*.
//!
//! Judged in order: the status; the headers the route lists in `compare_headers`; the bodies.
//! Two bodies that both parse as JSON are compared structurally and every difference becomes a
//! [`DiffEntry`] with a JSON pointer and a [`DiffKind`]; other bodies are compared as text and
//! get one `text` entry plus a unified diff from `similar`.
//!
//! Before judging: `ignore` globs remove subtrees from both sides, numbers within
//! `float_tolerance` are equal, and arrays under `unordered_arrays` are compared as multisets.
//!
//! Arrays are aligned before their elements are compared, so one inserted element does not
//! turn into a difference at every later index: when every element on both sides is an object
//! sharing a unique scalar key (`id`, `task_id`, ...) elements are paired by that key and a
//! different sequence is one `order` entry; otherwise a Myers diff over the elements'
//! canonical forms pairs them.
//!
//! # Layout
//! - this file: [`compare`], the order of judgement (status, headers, bodies);
//! - `diff`: what a comparison finds ([`DiffEntry`], [`DiffKind`], [`Comparison`]);
//! - `rules`: [`CompareRules`], compiled from a route's settings;
//! - `json`: the structural comparison of JSON bodies; `text`: the unified diff of others.

mod diff;
mod json;
mod rules;
mod text;

use http::{HeaderMap, HeaderName};
use serde_json::Value;

use self::rules::{unjudged, HeaderRule};
use self::text::text_entry;
use crate::capture::{CapturedBody, CapturedResponse};

pub use self::diff::{Comparison, DiffEntry, DiffKind, MAX_ENTRIES};
pub use self::rules::CompareRules;
pub(crate) use self::text::unified_diff;

/// Compares `legacy` with `new` under `rules`.
pub fn compare(
    rules: &CompareRules,
    legacy: &CapturedResponse,
    new: &CapturedResponse,
) -> Comparison {
    let mut cmp = Comparison::default();
    if legacy.status != new.status {
        cmp.entries.push(DiffEntry {
            path: "status".into(),
            field: "status".into(),
            kind: DiffKind::Status,
            legacy: Some(Value::from(legacy.status.as_u16())),
            new: Some(Value::from(new.status.as_u16())),
        });
    }
    compare_headers(rules, &legacy.headers, &new.headers, &mut cmp.entries);
    let (lb, nb) = (legacy.body.to_bytes(), new.body.to_bytes());
    if legacy.body.is_truncated() || new.body.is_truncated() {
        if lb != nb || legacy.body.is_truncated() != new.body.is_truncated() {
            let describe = |b: &CapturedBody| {
                Value::from(if b.is_truncated() {
                    "larger than max_body_bytes".to_string()
                } else {
                    format!("{} bytes", b.len())
                })
            };
            cmp.entries.push(text_entry(
                Some(describe(&legacy.body)),
                Some(describe(&new.body)),
            ));
        }
        return cmp;
    }
    compare_bodies(rules, &lb, &nb, &mut cmp);
    cmp
}

fn compare_headers(
    rules: &CompareRules,
    legacy: &HeaderMap,
    new: &HeaderMap,
    out: &mut Vec<DiffEntry>,
) {
    let names: Vec<HeaderName> = match &rules.headers {
        HeaderRule::Listed(list) => list.clone(),
        HeaderRule::All => {
            let mut all: Vec<HeaderName> = legacy.keys().chain(new.keys()).cloned().collect();
            all.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            all.dedup();
            all.retain(|h| !unjudged(h.as_str()));
            all
        }
    };
    for name in names {
        if rules.ignore_headers.contains(&name) {
            continue;
        }
        let joined = |m: &HeaderMap| -> Option<String> {
            let vals: Vec<String> = m
                .get_all(&name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (!vals.is_empty()).then(|| vals.join(", "))
        };
        let (l, n) = (joined(legacy), joined(new));
        if l != n {
            let path = format!("header:{name}");
            out.push(DiffEntry {
                field: path.clone(),
                path,
                kind: DiffKind::Header,
                legacy: l.map(Value::from),
                new: n.map(Value::from),
            });
        }
    }
}

fn compare_bodies(rules: &CompareRules, legacy: &[u8], new: &[u8], cmp: &mut Comparison) {
    if legacy == new {
        return;
    }
    let parse = |b: &[u8]| -> Option<Value> {
        if b.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        serde_json::from_slice(b).ok()
    };
    if let (Some(l), Some(n)) = (parse(legacy), parse(new)) {
        cmp.truncated = json::compare(rules, l, n, &mut cmp.entries);
        return;
    }
    let (l, n) = (
        String::from_utf8_lossy(legacy),
        String::from_utf8_lossy(new),
    );
    let (diff, first_l, first_n) = unified_diff(&l, &n, "legacy", "new");
    cmp.text_diff = Some(diff);
    cmp.entries.push(text_entry(
        first_l.map(Value::from),
        first_n.map(Value::from),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteShadowConfig;
    use http::StatusCode;
    use serde_json::json;

    fn resp(status: u16, body: &str) -> CapturedResponse {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        CapturedResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: CapturedBody::from(bytes::Bytes::from(body.to_string())),
        }
    }

    fn rules(cfg: RouteShadowConfig) -> CompareRules {
        CompareRules::new(&cfg).unwrap()
    }

    fn kinds(c: &Comparison) -> Vec<(String, DiffKind)> {
        c.entries.iter().map(|e| (e.path.clone(), e.kind)).collect()
    }

    fn cmp_json(r: &CompareRules, a: Value, b: Value) -> Comparison {
        compare(r, &resp(200, &a.to_string()), &resp(200, &b.to_string()))
    }

    #[test]
    fn identical_responses_match() {
        let r = rules(Default::default());
        let c = cmp_json(
            &r,
            json!({"a": [1, 2, {"b": null}]}),
            json!({"a": [1, 2, {"b": null}]}),
        );
        assert!(c.is_match(), "{c:?}");
        // Key order and whitespace do not matter.
        let c = compare(
            &r,
            &resp(200, r#"{"a":1,"b":2}"#),
            &resp(200, "{ \"b\": 2,\n \"a\": 1 }"),
        );
        assert!(c.is_match());
    }

    #[test]
    fn each_json_kind() {
        let r = rules(Default::default());
        let c = cmp_json(
            &r,
            json!({"gone": 1, "t": "1", "v": "a", "n": 1.5, "arr": [1, 2, 3], "o": [1, 2, 3]}),
            json!({"new": 1, "t": 1, "v": "b", "n": 1.5, "arr": [1, 2], "o": [3, 1, 2]}),
        );
        assert_eq!(
            kinds(&c),
            vec![
                ("/arr".into(), DiffKind::ArrayLength),
                ("/arr/2".into(), DiffKind::Missing),
                ("/gone".into(), DiffKind::Missing),
                ("/new".into(), DiffKind::Extra),
                ("/o".into(), DiffKind::Order),
                ("/t".into(), DiffKind::Type),
                ("/v".into(), DiffKind::Value),
            ]
        );
        let v = c
            .entries
            .iter()
            .find(|e| e.kind == DiffKind::Value)
            .unwrap();
        assert_eq!(
            (v.legacy.clone(), v.new.clone()),
            (Some(json!("a")), Some(json!("b")))
        );
        let t = c.entries.iter().find(|e| e.kind == DiffKind::Type).unwrap();
        assert_eq!(
            (t.legacy.clone(), t.new.clone()),
            (Some(json!("1")), Some(json!(1)))
        );
    }

    #[test]
    fn status_and_listed_headers() {
        let r = rules(RouteShadowConfig {
            compare_headers: vec!["content-type".into(), "x-version".into()],
            ..Default::default()
        });
        let a = resp(200, "{}");
        let mut b = resp(404, "{}");
        b.headers
            .insert("content-type", "text/plain".parse().unwrap());
        b.headers.insert("x-version", "2".parse().unwrap());
        b.headers.insert("x-unlisted", "2".parse().unwrap());
        let c = compare(&r, &a, &b);
        assert_eq!(
            kinds(&c),
            vec![
                ("status".into(), DiffKind::Status),
                ("header:content-type".into(), DiffKind::Header),
                ("header:x-version".into(), DiffKind::Header),
            ]
        );
        assert_eq!(c.entries[0].legacy, Some(json!(200)));
        assert_eq!(c.entries[2].legacy, None);
    }

    #[test]
    fn star_compares_all_headers_but_ignored_and_unjudged() {
        let r = rules(RouteShadowConfig {
            compare_headers: vec!["*".into()],
            ignore_headers: vec!["x-request-id".into()],
            ..Default::default()
        });
        let mut a = resp(200, "{}");
        let mut b = resp(200, "{}");
        a.headers.insert("date", "Mon".parse().unwrap());
        b.headers.insert("date", "Tue".parse().unwrap());
        a.headers.insert("x-request-id", "1".parse().unwrap());
        b.headers.insert("x-request-id", "2".parse().unwrap());
        b.headers.insert("etag", "\"x\"".parse().unwrap());
        assert_eq!(
            kinds(&compare(&r, &a, &b)),
            vec![("header:etag".into(), DiffKind::Header)]
        );
    }

    #[test]
    fn ignore_globs_remove_exactly_their_paths() {
        let r = rules(RouteShadowConfig {
            ignore: vec![
                "/updated_at".into(),
                "/items/*/last_heartbeat".into(),
                "/**/etag".into(),
            ],
            ..Default::default()
        });
        let c = cmp_json(
            &r,
            json!({"updated_at": 1, "items": [{"id": 1, "last_heartbeat": "a", "x": 1}], "deep": {"etag": 1}, "keep": 1}),
            json!({"updated_at": 2, "items": [{"id": 1, "last_heartbeat": "b", "x": 2}], "deep": {"etag": 2}, "keep": 2}),
        );
        assert_eq!(
            kinds(&c),
            vec![
                ("/items/0/x".into(), DiffKind::Value),
                ("/keep".into(), DiffKind::Value)
            ]
        );
        // Ignoring the root ignores the whole body.
        let r = rules(RouteShadowConfig {
            ignore: vec!["".into()],
            ..Default::default()
        });
        assert!(cmp_json(&r, json!([1]), json!({"a": 2})).is_match());
    }

    #[test]
    fn unordered_arrays() {
        let plain = rules(Default::default());
        let r = rules(RouteShadowConfig {
            unordered_arrays: vec!["/items".into(), "/**/tags".into()],
            ..Default::default()
        });
        let a = json!({"items": [1, 2, 3], "t": {"tags": ["x", "y"]}, "other": [1, 2]});
        let b = json!({"items": [3, 1, 2], "t": {"tags": ["y", "x"]}, "other": [2, 1]});
        assert_eq!(
            kinds(&cmp_json(&r, a.clone(), b.clone())),
            vec![("/other".into(), DiffKind::Order)]
        );
        assert_eq!(kinds(&cmp_json(&plain, a, b)).len(), 3);
        // Still judged as a multiset: a changed element is one value difference.
        let c = cmp_json(&r, json!({"items": [1, 2, 3]}), json!({"items": [3, 1, 4]}));
        assert_eq!(kinds(&c), vec![("/items/1".into(), DiffKind::Value)]);
    }

    #[test]
    fn float_tolerance() {
        let exact = rules(Default::default());
        let tol = rules(RouteShadowConfig {
            float_tolerance: 1e-9,
            ..Default::default()
        });
        let (a, b) = (
            json!({"x": 0.1, "y": 1e12}),
            json!({"x": 0.1000000000001, "y": 1.0000000000001e12}),
        );
        assert_eq!(kinds(&cmp_json(&exact, a.clone(), b.clone())).len(), 2);
        assert!(cmp_json(&tol, a, b).is_match());
        assert_eq!(
            kinds(&cmp_json(&tol, json!({"x": 0.1}), json!({"x": 0.2}))).len(),
            1
        );
        // Integers and floats of the same value are the same number.
        assert!(cmp_json(&exact, json!({"x": 1}), json!({"x": 1.0})).is_match());
    }

    #[test]
    fn arrays_of_records_pair_by_identity() {
        let r = rules(Default::default());
        let legacy = json!([
            {"id": 1, "task_id": "TASK-1", "t": "a"},
            {"id": 2, "task_id": "TASK-2", "t": "b"},
            {"id": 3, "task_id": "TASK-3", "t": "c"}
        ]);
        // Reordered, one changed, one new field everywhere.
        let new = json!([
            {"id": 3, "task_id": "TASK-3", "t": "c", "v": "2"},
            {"id": 1, "task_id": "TASK-1", "t": "A", "v": "2"},
            {"id": 2, "task_id": "TASK-2", "t": "b", "v": "2"}
        ]);
        let c = cmp_json(&r, legacy.clone(), new);
        assert_eq!(
            kinds(&c),
            vec![
                ("".into(), DiffKind::Order),
                ("/0/t".into(), DiffKind::Value),
                ("/0/v".into(), DiffKind::Extra),
                ("/1/v".into(), DiffKind::Extra),
                ("/2/v".into(), DiffKind::Extra),
            ]
        );
        assert_eq!(c.entries[2].field, "/*/v");
        assert_eq!(c.entries[0].legacy, Some(json!({"id": [1, 2, 3]})));
        assert_eq!(c.entries[0].new, Some(json!({"id": [3, 1, 2]})));
        // One element missing in the middle: only that one is reported.
        let c = cmp_json(
            &r,
            legacy,
            json!([{"id": 1, "task_id": "TASK-1", "t": "a"}, {"id": 3, "task_id": "TASK-3", "t": "c"}]),
        );
        assert_eq!(
            kinds(&c),
            vec![
                ("".into(), DiffKind::ArrayLength),
                ("/1".into(), DiffKind::Missing)
            ]
        );
    }

    #[test]
    fn scalar_arrays_align_with_myers() {
        let r = rules(Default::default());
        let c = cmp_json(&r, json!([1, 2, 3, 4]), json!([1, 9, 2, 3, 4]));
        assert_eq!(
            kinds(&c),
            vec![
                ("".into(), DiffKind::ArrayLength),
                ("/1".into(), DiffKind::Extra)
            ]
        );
    }

    #[test]
    fn text_bodies_get_a_unified_diff() {
        let r = rules(Default::default());
        let c = compare(
            &r,
            &resp(200, "hello\nworld\n"),
            &resp(200, "hello\nthere\n"),
        );
        assert_eq!(kinds(&c), vec![("body".into(), DiffKind::Text)]);
        let d = c.text_diff.unwrap();
        assert!(d.starts_with("--- legacy\n+++ new\n@@"), "{d}");
        assert!(d.contains("-world\n") && d.contains("+there\n"), "{d}");
        assert_eq!(c.entries[0].legacy, Some(json!("world")));
        // JSON on one side only is compared as text.
        let c = compare(&r, &resp(200, "{}"), &resp(500, "<html>oops</html>"));
        assert_eq!(
            kinds(&c),
            vec![
                ("status".into(), DiffKind::Status),
                ("body".into(), DiffKind::Text)
            ]
        );
        assert!(compare(&r, &resp(200, "same"), &resp(200, "same")).is_match());
    }

    #[test]
    fn large_values_are_summarised_and_entries_capped() {
        let r = rules(Default::default());
        let big: Vec<u32> = (0..1000).collect();
        let c = cmp_json(&r, json!({"a": big}), json!({}));
        assert_eq!(c.entries[0].legacy, Some(json!("[array of 1000]")));
        let a: Vec<u32> = (0..1000).collect();
        let b: Vec<u32> = (0..1000).map(|x| x + 100_000).collect();
        let c = cmp_json(&r, json!(a), json!(b));
        assert!(c.truncated);
        assert_eq!(c.entries.len(), MAX_ENTRIES);
    }
}
