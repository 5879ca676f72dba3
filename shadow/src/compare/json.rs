//! Structural comparison of two JSON bodies: ignored subtrees stripped, numbers within the
//! tolerance equal, arrays aligned (by an identity key, as multisets, or by a Myers diff over
//! the elements' canonical forms) before their elements are compared; every difference an
//! entry with a JSON pointer, values clipped to a size worth storing.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use similar::{Algorithm, DiffTag};

use super::diff::{DiffEntry, DiffKind, MAX_ENTRIES};
use super::rules::CompareRules;
use super::text::clip_str;
use crate::pointer::{self, GlobSet, Seg};

/// Values in entries longer than this (serialised) are replaced by a summary.
const MAX_VALUE_CHARS: usize = 1024;

/// Compares two JSON bodies under `rules`, appending the differences to `out`; `true` when
/// there were more than [`MAX_ENTRIES`].
pub(super) fn compare(
    rules: &CompareRules,
    legacy: Value,
    new: Value,
    out: &mut Vec<DiffEntry>,
) -> bool {
    let l = strip_ignored(legacy, &mut Vec::new(), &rules.ignore);
    let n = strip_ignored(new, &mut Vec::new(), &rules.ignore);
    let mut d = Differ {
        rules,
        path: Vec::new(),
        out,
        truncated: false,
    };
    // Both are `None` when the root itself is ignored.
    if let (Some(l), Some(n)) = (l, n) {
        d.diff(&l, &n);
    }
    d.truncated
}

/// Removes every ignored subtree; `None` when `v` itself is ignored.
fn strip_ignored(v: Value, path: &mut Vec<Seg>, ignore: &GlobSet) -> Option<Value> {
    if ignore.is_empty() {
        return Some(v);
    }
    if ignore.matches(path) {
        return None;
    }
    Some(match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, child) in map {
                path.push(Seg::Key(k));
                let kept = strip_ignored(child, path, ignore);
                let Some(Seg::Key(k)) = path.pop() else {
                    unreachable!("pushed a key")
                };
                if let Some(c) = kept {
                    out.insert(k, c);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, child) in items.into_iter().enumerate() {
                path.push(Seg::Index(i));
                // An ignored element is compared as null, so later indices keep their place.
                out.push(strip_ignored(child, path, ignore).unwrap_or(Value::Null));
                path.pop();
            }
            Value::Array(out)
        }
        other => other,
    })
}

/// The canonical text of a value: object keys sorted, no whitespace. Whether serde_json
/// preserves insertion order depends on workspace features, so it is written out here.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", Value::from(k.as_str()));
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn canonical_hash(v: &Value) -> u64 {
    let mut s = String::new();
    canonical(v, &mut s);
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value small enough to store in an entry; large ones become a summary string.
fn clip(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > MAX_VALUE_CHARS => Value::from(clip_str(s, MAX_VALUE_CHARS)),
        Value::Array(a) if v.to_string().len() > MAX_VALUE_CHARS => {
            Value::from(format!("[array of {}]", a.len()))
        }
        Value::Object(m) if v.to_string().len() > MAX_VALUE_CHARS => {
            Value::from(format!("{{object with {} keys}}", m.len()))
        }
        other => other.clone(),
    }
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number, tol: f64) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => {
            if x == y {
                return true;
            }
            let d = (x - y).abs();
            tol > 0.0 && (d <= tol || d <= tol * x.abs().max(y.abs()))
        }
        _ => false,
    }
}

struct Differ<'a> {
    rules: &'a CompareRules,
    path: Vec<Seg>,
    out: &'a mut Vec<DiffEntry>,
    truncated: bool,
}

impl Differ<'_> {
    fn push(&mut self, kind: DiffKind, legacy: Option<&Value>, new: Option<&Value>) {
        if self.out.len() >= MAX_ENTRIES {
            self.truncated = true;
            return;
        }
        self.out.push(DiffEntry {
            path: pointer::pointer(&self.path),
            field: pointer::field(&self.path),
            kind,
            legacy: legacy.map(clip),
            new: new.map(clip),
        });
    }

    fn full(&self) -> bool {
        self.out.len() >= MAX_ENTRIES
    }

    fn at(&mut self, seg: Seg, f: impl FnOnce(&mut Self)) {
        self.path.push(seg);
        f(self);
        self.path.pop();
    }

    fn diff(&mut self, a: &Value, b: &Value) {
        if self.full() {
            self.truncated = true;
            return;
        }
        match (a, b) {
            (Value::Object(ma), Value::Object(mb)) => {
                let mut keys: Vec<&String> = ma
                    .keys()
                    .chain(mb.keys().filter(|k| !ma.contains_key(*k)))
                    .collect();
                keys.sort();
                for k in keys {
                    let seg = Seg::Key(k.clone());
                    match (ma.get(k), mb.get(k)) {
                        (Some(x), Some(y)) => self.at(seg, |d| d.diff(x, y)),
                        (Some(x), None) => {
                            self.at(seg, |d| d.push(DiffKind::Missing, Some(x), None))
                        }
                        (None, Some(y)) => self.at(seg, |d| d.push(DiffKind::Extra, None, Some(y))),
                        (None, None) => {}
                    }
                }
            }
            (Value::Array(xa), Value::Array(xb)) => self.diff_array(xa, xb),
            (Value::Number(x), Value::Number(y)) => {
                if !numbers_equal(x, y, self.rules.float_tolerance) {
                    self.push(DiffKind::Value, Some(a), Some(b));
                }
            }
            (Value::String(_), Value::String(_))
            | (Value::Bool(_), Value::Bool(_))
            | (Value::Null, Value::Null) => {
                if a != b {
                    self.push(DiffKind::Value, Some(a), Some(b));
                }
            }
            _ => {
                debug_assert_ne!(type_name(a), type_name(b));
                self.push(DiffKind::Type, Some(a), Some(b));
            }
        }
    }

    fn diff_array(&mut self, a: &[Value], b: &[Value]) {
        if a == b {
            return;
        }
        let unordered = self.rules.unordered.matches(&self.path);
        if a.len() != b.len() {
            self.push(
                DiffKind::ArrayLength,
                Some(&Value::from(a.len())),
                Some(&Value::from(b.len())),
            );
        }
        if let Some(key) = identity_key(a, b) {
            self.diff_by_identity(a, b, &key, unordered);
        } else if unordered {
            self.diff_unordered(a, b);
        } else {
            self.diff_ordered(a, b);
        }
    }

    /// Pairs elements by the value of `key`.
    fn diff_by_identity(&mut self, a: &[Value], b: &[Value], key: &str, unordered: bool) {
        let id = |v: &Value| v.get(key).map(|x| x.to_string()).unwrap_or_default();
        let b_index: HashMap<String, usize> =
            b.iter().enumerate().map(|(j, v)| (id(v), j)).collect();
        let mut paired_b = vec![false; b.len()];
        let mut sequence = Vec::with_capacity(a.len());
        let mut pairs = Vec::with_capacity(a.len());
        for (i, x) in a.iter().enumerate() {
            match b_index.get(&id(x)) {
                Some(&j) => {
                    paired_b[j] = true;
                    sequence.push(j);
                    pairs.push((i, j));
                }
                None => self.at(Seg::Index(i), |d| d.push(DiffKind::Missing, Some(x), None)),
            }
        }
        if !unordered && sequence.windows(2).any(|w| w[0] > w[1]) {
            let ids = |items: &[Value], keep: &dyn Fn(usize) -> bool| {
                Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| keep(*i))
                        .filter_map(|(_, v)| v.get(key).cloned())
                        .collect(),
                )
            };
            let in_b: HashSet<usize> = sequence.iter().copied().collect();
            // `{key: [ids in order]}`: says what the elements were paired by, and puts the
            // ids under their key so redaction of that field applies to them too.
            let by_key = |ids: Value| Value::Object(Map::from_iter([(key.to_string(), ids)]));
            let legacy_ids = by_key(ids(a, &|i| pairs.iter().any(|p| p.0 == i)));
            let new_ids = by_key(ids(b, &|j| in_b.contains(&j)));
            self.push(DiffKind::Order, Some(&legacy_ids), Some(&new_ids));
        }
        for (i, j) in pairs {
            self.at(Seg::Index(i), |d| d.diff(&a[i], &b[j]));
        }
        for (j, y) in b.iter().enumerate() {
            if !paired_b[j] {
                self.at(Seg::Index(j), |d| d.push(DiffKind::Extra, None, Some(y)));
            }
        }
    }

    /// Multiset comparison: equal elements cancel out, the rest are paired in canonical order.
    fn diff_unordered(&mut self, a: &[Value], b: &[Value]) {
        let ha: Vec<u64> = a.iter().map(canonical_hash).collect();
        let hb: Vec<u64> = b.iter().map(canonical_hash).collect();
        let mut pool: HashMap<u64, Vec<usize>> = HashMap::new();
        for (j, h) in hb.iter().enumerate().rev() {
            pool.entry(*h).or_default().push(j);
        }
        let mut left_a = Vec::new();
        for (i, h) in ha.iter().enumerate() {
            match pool.get_mut(h).and_then(Vec::pop) {
                Some(_) => {}
                None => left_a.push(i),
            }
        }
        let mut left_b: Vec<usize> = pool.into_values().flatten().collect();
        left_a.sort_by_key(|&i| (ha[i], i));
        left_b.sort_by_key(|&j| (hb[j], j));
        self.pair_up(a, b, &left_a, &left_b);
    }

    /// Ordered comparison: one `order` entry when only the order differs, otherwise a Myers
    /// alignment of the elements.
    fn diff_ordered(&mut self, a: &[Value], b: &[Value]) {
        let ha: Vec<u64> = a.iter().map(canonical_hash).collect();
        let hb: Vec<u64> = b.iter().map(canonical_hash).collect();
        if a.len() == b.len() {
            let (mut sa, mut sb) = (ha.clone(), hb.clone());
            sa.sort_unstable();
            sb.sort_unstable();
            if sa == sb {
                if ha != hb {
                    let (la, lb) = (Value::Array(a.to_vec()), Value::Array(b.to_vec()));
                    self.push(DiffKind::Order, Some(&la), Some(&lb));
                }
                return;
            }
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        let ops = similar::capture_diff_slices_deadline(Algorithm::Myers, &ha, &hb, Some(deadline));
        for op in ops {
            let (tag, ra, rb) = op.as_tag_tuple();
            match tag {
                DiffTag::Equal => {}
                _ => {
                    let la: Vec<usize> = ra.collect();
                    let lb: Vec<usize> = rb.collect();
                    self.pair_up(a, b, &la, &lb);
                }
            }
        }
    }

    /// Compares `a[ia[k]]` with `b[ib[k]]`; leftovers are missing / extra.
    fn pair_up(&mut self, a: &[Value], b: &[Value], ia: &[usize], ib: &[usize]) {
        let n = ia.len().min(ib.len());
        for k in 0..n {
            let (i, j) = (ia[k], ib[k]);
            self.at(Seg::Index(i), |d| d.diff(&a[i], &b[j]));
        }
        for &i in &ia[n..] {
            self.at(Seg::Index(i), |d| {
                d.push(DiffKind::Missing, Some(&a[i]), None)
            });
        }
        for &j in &ib[n..] {
            self.at(Seg::Index(j), |d| {
                d.push(DiffKind::Extra, None, Some(&b[j]))
            });
        }
    }
}

/// Keys preferred as element identity, best first.
const IDENTITY_PREFERENCE: &[&str] = &["id", "_id", "uuid", "key", "task_id", "name"];

/// A key every element on both sides has, with a scalar value unique within each side, whose
/// values overlap on at least half of the longer side.
fn identity_key(a: &[Value], b: &[Value]) -> Option<String> {
    if a.len().max(b.len()) < 2 || a.is_empty() || b.is_empty() {
        return None;
    }
    let first = a.first()?.as_object()?;
    if !a.iter().chain(b).all(Value::is_object) {
        return None;
    }
    let ids = |items: &[Value], key: &str| -> Option<HashSet<String>> {
        let mut set = HashSet::with_capacity(items.len());
        for v in items {
            match v.get(key)? {
                x @ (Value::String(_) | Value::Number(_)) => {
                    if !set.insert(x.to_string()) {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        Some(set)
    };
    let need = a.len().max(b.len()).div_ceil(2);
    let mut best: Option<(usize, Reverse<usize>, Reverse<&str>)> = None;
    for key in first.keys() {
        if !matches!(first[key], Value::String(_) | Value::Number(_)) {
            continue;
        }
        let (Some(sa), Some(sb)) = (ids(a, key), ids(b, key)) else {
            continue;
        };
        let overlap = sa.intersection(&sb).count();
        if overlap == 0 || overlap < need {
            continue;
        }
        let rank = IDENTITY_PREFERENCE
            .iter()
            .position(|p| p == key)
            .unwrap_or(IDENTITY_PREFERENCE.len());
        let score = (overlap, Reverse(rank), Reverse(key.as_str()));
        if best.as_ref().is_none_or(|b| score > *b) {
            best = Some(score);
        }
    }
    best.map(|(_, _, Reverse(k))| k.to_string())
}
