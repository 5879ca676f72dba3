//! Noise learning, Diffy's idea: for a sample of mirrored GETs (`learn_noise`) the primary
//! side is asked a second time; whatever differs between two answers of the *same* side
//! (timestamps of generation, request ids, random tokens) is noise for that route.
//!
//! Noise is learned on generalised fields (`/*/generated_at`), persisted with counts in the
//! store, reloaded at start, and excluded from later comparisons of that route: a comparison
//! whose every difference is noise is reported as `noise`, not `mismatch`.
//!
//! A probe answered with a different status teaches nothing (the resource changed in between,
//! or the side is flaky), so `status` is never learned as noise.
//!
//! A learned `value`, `type`, `missing`, `extra`, `header`, `status` or `text` difference at a
//! field also covers everything below it (the whole subtree is volatile); `array_length` and
//! `order` cover only themselves, so a list that grows between two calls does not hide every
//! difference inside its elements.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use crate::compare::{Comparison, DiffEntry, DiffKind};
use crate::pointer::field_is_within;

/// The (field, kind) pairs a primary-versus-primary comparison shows, without duplicates.
pub(crate) fn observe(cmp: &Comparison) -> Vec<(String, DiffKind)> {
    let set: BTreeSet<(String, DiffKind)> = cmp
        .entries
        .iter()
        .map(|e| (e.field.clone(), e.kind))
        .collect();
    set.into_iter().collect()
}

/// Whether learned noise `(field, kind)` covers `entry`.
pub(crate) fn covers(field: &str, kind: DiffKind, entry: &DiffEntry) -> bool {
    match kind {
        DiffKind::ArrayLength | DiffKind::Order => entry.field == field && entry.kind == kind,
        _ => field_is_within(&entry.field, field),
    }
}

/// Learned noise of every route, shared by the mirror workers.
#[derive(Debug, Default)]
pub(crate) struct NoiseBook {
    routes: Mutex<HashMap<String, Vec<(String, DiffKind)>>>,
}

impl NoiseBook {
    /// Starts from what the store has learned before.
    pub(crate) fn new(learned: Vec<(String, String, DiffKind)>) -> NoiseBook {
        let mut routes: HashMap<String, Vec<(String, DiffKind)>> = HashMap::new();
        for (route, field, kind) in learned {
            routes.entry(route).or_default().push((field, kind));
        }
        NoiseBook {
            routes: Mutex::new(routes),
        }
    }

    /// Adds observations to `route`'s noise.
    pub(crate) fn learn(&self, route: &str, observed: &[(String, DiffKind)]) {
        if observed.is_empty() {
            return;
        }
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let known = routes.entry(route.to_string()).or_default();
        for o in observed {
            if !known.contains(o) {
                known.push(o.clone());
            }
        }
    }

    /// Splits `entries` into the real differences and the number that are noise.
    pub(crate) fn split(&self, route: &str, entries: Vec<DiffEntry>) -> (Vec<DiffEntry>, usize) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(known) = routes.get(route) else {
            return (entries, 0);
        };
        let before = entries.len();
        let real: Vec<DiffEntry> = entries
            .into_iter()
            .filter(|e| !known.iter().any(|(f, k)| covers(f, *k, e)))
            .collect();
        let noise = before - real.len();
        (real, noise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(field: &str, kind: DiffKind) -> DiffEntry {
        DiffEntry {
            path: field.replace('*', "0"),
            field: field.into(),
            kind,
            legacy: None,
            new: None,
        }
    }

    #[test]
    fn learned_fields_are_excluded_per_route() {
        let book = NoiseBook::new(vec![("r".into(), "/meta".into(), DiffKind::Value)]);
        book.learn(
            "r",
            &[
                ("/*/generated_at".into(), DiffKind::Value),
                ("/items".into(), DiffKind::ArrayLength),
            ],
        );
        let entries = vec![
            entry("/*/generated_at", DiffKind::Value),
            entry("/*/generated_at", DiffKind::Type),
            entry("/meta/request_id", DiffKind::Value),
            entry("/metadata", DiffKind::Value),
            entry("/items", DiffKind::ArrayLength),
            entry("/items/*", DiffKind::Missing),
            entry("/*/title", DiffKind::Value),
        ];
        let (real, noise) = book.split("r", entries.clone());
        assert_eq!(noise, 4);
        let fields: Vec<&str> = real.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["/metadata", "/items/*", "/*/title"]);
        let (real, noise) = book.split("other", entries.clone());
        assert_eq!((real.len(), noise), (entries.len(), 0));
    }

    #[test]
    fn observe_dedups() {
        let cmp = Comparison {
            entries: vec![
                entry("/*/t", DiffKind::Value),
                entry("/*/t", DiffKind::Value),
                entry("status", DiffKind::Status),
            ],
            ..Default::default()
        };
        assert_eq!(observe(&cmp).len(), 2);
    }
}
