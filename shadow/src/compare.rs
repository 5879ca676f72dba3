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

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use similar::{Algorithm, ChangeTag, DiffTag, TextDiff};

use crate::capture::CapturedResponse;
use crate::config::RouteShadowConfig;
use crate::error::ShadowError;
use crate::pointer::{self, GlobSet, Seg};

/// At most this many entries are produced per comparison; [`Comparison::truncated`] says so.
pub const MAX_ENTRIES: usize = 256;
/// Values in entries longer than this (serialised) are replaced by a summary.
const MAX_VALUE_CHARS: usize = 1024;
/// Headers never judged under `compare_headers = ["*"]` besides the hop-by-hop ones
/// ([`ficus_core::headers::HOP_BY_HOP`]): values that differ on every response, and what the
/// proxy itself adds.
const UNJUDGED_HEADERS: &[&str] = &["date", "content-length", "x-ficus-route", "x-ficus-backend"];

fn unjudged(name: &str) -> bool {
    UNJUDGED_HEADERS.contains(&name) || ficus_core::headers::is_hop_by_hop(name)
}

/// What kind of difference an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// The status codes differ (path `status`).
    Status,
    /// A compared header differs or is on one side only (path `header:NAME`).
    Header,
    /// A JSON value legacy has and new lacks.
    Missing,
    /// A JSON value new has and legacy lacks.
    Extra,
    /// The JSON types differ (string vs number, object vs null, ...).
    Type,
    /// Same type, different value.
    Value,
    /// The arrays have different lengths.
    ArrayLength,
    /// The arrays hold the same elements in a different order.
    Order,
    /// Bodies that are not both JSON differ (path `body`).
    Text,
}

impl DiffKind {
    /// Every kind, in label order.
    pub const ALL: [DiffKind; 9] = [
        DiffKind::Status,
        DiffKind::Header,
        DiffKind::Missing,
        DiffKind::Extra,
        DiffKind::Type,
        DiffKind::Value,
        DiffKind::ArrayLength,
        DiffKind::Order,
        DiffKind::Text,
    ];

    /// The name used in reports, the store and the `kind` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Status => "status",
            DiffKind::Header => "header",
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::Type => "type",
            DiffKind::Value => "value",
            DiffKind::ArrayLength => "array_length",
            DiffKind::Order => "order",
            DiffKind::Text => "text",
        }
    }

    /// The inverse of [`DiffKind::as_str`].
    pub fn parse(s: &str) -> Option<DiffKind> {
        DiffKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DiffKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One difference between the legacy and the new response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffEntry {
    /// Where: a JSON pointer into the body (`""` is the root, `/0/updated_at`), `status`,
    /// `header:NAME` or `body`.
    pub path: String,
    /// `path` with array indices generalised to `*` (`/*/updated_at`): what reports group by
    /// and noise is learned on.
    pub field: String,
    /// What kind of difference.
    pub kind: DiffKind,
    /// The legacy value (absent for `extra`; a summary when large).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy: Option<Value>,
    /// The new value (absent for `missing`; a summary when large).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// The result of comparing two responses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// Every difference found, in document order (status, headers, body).
    pub entries: Vec<DiffEntry>,
    /// For bodies compared as text: the unified diff (`--- legacy` / `+++ new`).
    pub text_diff: Option<String>,
    /// More than [`MAX_ENTRIES`] differences were found; the rest were not listed.
    pub truncated: bool,
}

impl Comparison {
    /// No difference at all.
    pub fn is_match(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Debug, Clone)]
enum HeaderRule {
    All,
    Listed(Vec<HeaderName>),
}

/// A route's comparison rules, compiled from its [`RouteShadowConfig`].
#[derive(Debug, Clone)]
pub struct CompareRules {
    ignore: GlobSet,
    unordered: GlobSet,
    float_tolerance: f64,
    headers: HeaderRule,
    ignore_headers: HashSet<HeaderName>,
}

impl Default for CompareRules {
    fn default() -> Self {
        CompareRules {
            ignore: GlobSet::default(),
            unordered: GlobSet::default(),
            float_tolerance: 0.0,
            headers: HeaderRule::Listed(Vec::new()),
            ignore_headers: HashSet::new(),
        }
    }
}

impl CompareRules {
    /// Validates `cfg` and compiles its globs and header names.
    pub fn new(cfg: &RouteShadowConfig) -> Result<CompareRules, ShadowError> {
        cfg.validate()?;
        let globs = |list: &[String], name: &str| {
            GlobSet::parse(list)
                .map_err(|(i, e)| ShadowError::config(format!("shadow.{name}[{i}]"), e))
        };
        let names = |list: &[String]| -> Vec<HeaderName> {
            // Validated above, so every name parses.
            list.iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect()
        };
        let headers = if cfg.compare_headers.iter().any(|h| h == "*") {
            HeaderRule::All
        } else {
            HeaderRule::Listed(names(&cfg.compare_headers))
        };
        Ok(CompareRules {
            ignore: globs(&cfg.ignore, "ignore")?,
            unordered: globs(&cfg.unordered_arrays, "unordered_arrays")?,
            float_tolerance: cfg.float_tolerance,
            headers,
            ignore_headers: names(&cfg.ignore_headers).into_iter().collect(),
        })
    }
}

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
            let describe = |b: &crate::capture::CapturedBody| {
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

fn text_entry(legacy: Option<Value>, new: Option<Value>) -> DiffEntry {
    DiffEntry {
        path: "body".into(),
        field: "body".into(),
        kind: DiffKind::Text,
        legacy,
        new,
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
        let l = strip_ignored(l, &mut Vec::new(), &rules.ignore);
        let n = strip_ignored(n, &mut Vec::new(), &rules.ignore);
        let mut d = Differ {
            rules,
            path: Vec::new(),
            out: &mut cmp.entries,
            truncated: false,
        };
        // Both are `None` when the root itself is ignored.
        if let (Some(l), Some(n)) = (l, n) {
            d.diff(&l, &n);
        }
        cmp.truncated = d.truncated;
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

/// A unified diff of two texts (`--- a` / `+++ b`), and the first removed and added lines
/// (clipped), which reports show as an example.
pub(crate) fn unified_diff(
    a: &str,
    b: &str,
    name_a: &str,
    name_b: &str,
) -> (String, Option<String>, Option<String>) {
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .timeout(Duration::from_millis(500))
        .diff_lines(a, b);
    let clip_line = |s: &str| clip_str(s.trim_end_matches(['\n', '\r']), 160);
    let mut first_del = None;
    let mut first_ins = None;
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Delete if first_del.is_none() => first_del = Some(clip_line(change.value())),
            ChangeTag::Insert if first_ins.is_none() => first_ins = Some(clip_line(change.value())),
            _ => {}
        }
        if first_del.is_some() && first_ins.is_some() {
            break;
        }
    }
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(name_a, name_b)
        .to_string();
    (text, first_del, first_ins)
}

fn clip_str(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
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
pub(crate) fn canonical(v: &Value, out: &mut String) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CapturedBody;
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
