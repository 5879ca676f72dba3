//! Bodies that are not both JSON: one `text` entry with the first differing lines, and a
//! unified diff from `similar`.

use std::time::Duration;

use serde_json::Value;
use similar::{Algorithm, ChangeTag, TextDiff};

use super::diff::{DiffEntry, DiffKind};

/// A `text` entry on the body.
pub(super) fn text_entry(legacy: Option<Value>, new: Option<Value>) -> DiffEntry {
    DiffEntry {
        path: "body".into(),
        field: "body".into(),
        kind: DiffKind::Text,
        legacy,
        new,
    }
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

pub(super) fn clip_str(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}
