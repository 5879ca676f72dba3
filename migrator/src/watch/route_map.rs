//! Which table and column a route's keys name: configured (`[watch.routes.NAME]`), else found
//! by looking for a written key among the UNIQUE columns of the watched tables (text columns
//! first), said once in a `route_mapped` event. A route whose keys are found nowhere is not
//! probed again for 10 s (by the watch's clock) and is warned about once.

use std::collections::{BTreeMap, HashMap, HashSet};

use ficus_core::SharedClock;

use super::event::WatchEvent;
use super::report::Reporter;
use super::sides::Sides;
use crate::config::WatchRoute;
use crate::convert::PgType;
use crate::error::{DualWriteError, DwResult};

/// How long a route whose keys were not found is left alone, µs.
const UNMAPPED_RETRY_US: i64 = 10_000_000;

/// Where a route's keys live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RouteTarget {
    /// The view.
    pub(super) view: usize,
    /// The column (index into the view's columns).
    pub(super) col: usize,
}

/// Routes mapped so far, and the configuration.
pub(super) struct RouteMap {
    config: BTreeMap<String, WatchRoute>,
    routes: HashMap<String, RouteTarget>,
    warned: HashSet<String>,
    /// Routes whose keys were not found: not probed again before this time.
    unmapped_until: HashMap<String, i64>,
    clock: SharedClock,
}

impl RouteMap {
    /// No route mapped yet; `config` is `[watch.routes]`.
    pub(super) fn new(config: BTreeMap<String, WatchRoute>, clock: SharedClock) -> RouteMap {
        RouteMap {
            config,
            routes: HashMap::new(),
            warned: HashSet::new(),
            unmapped_until: HashMap::new(),
            clock,
        }
    }

    /// The table and column of a route's keys: configured, else found by `sample` among the
    /// UNIQUE columns.
    pub(super) async fn target(
        &mut self,
        route: &str,
        sample: &str,
        sides: &Sides,
        reporter: &mut Reporter<'_>,
    ) -> DwResult<Option<RouteTarget>> {
        if let Some(t) = self.routes.get(route) {
            return Ok(Some(*t));
        }
        if self
            .unmapped_until
            .get(route)
            .is_some_and(|t| *t > self.clock.unix_us())
        {
            return Ok(None);
        }
        let views = &sides.views;
        let rc = self.config.get(route).cloned().unwrap_or_default();
        let find_view = |name: &str| {
            views
                .iter()
                .position(|v| v.plan.source_name == name || v.plan.name == name)
        };
        let mut how = String::new();
        let found: Option<RouteTarget> = match (&rc.table, &rc.column) {
            (Some(t), Some(c)) => {
                let vi = find_view(t).ok_or_else(|| {
                    DualWriteError::Config(format!(
                        "routes.{route}: table {t:?} is not in the plan (or is skipped)"
                    ))
                })?;
                let ci = views[vi].column(c).ok_or_else(|| {
                    DualWriteError::Config(format!(
                        "routes.{route}: table {t} has no compared column {c:?}"
                    ))
                })?;
                how = if sides.unique.contains(&(vi, ci)) {
                    "configured".into()
                } else {
                    format!("configured; WARNING: {t}.{c} is not a UNIQUE column, a key may match several rows")
                };
                Some(RouteTarget { view: vi, col: ci })
            }
            (t, c) => {
                // Candidates: UNIQUE columns (of the table, with the name, when given).
                let cands: Vec<(usize, usize)> = sides
                    .unique
                    .iter()
                    .copied()
                    .filter(|(vi, ci)| {
                        t.as_ref().is_none_or(|t| {
                            views[*vi].plan.source_name == *t || views[*vi].plan.name == *t
                        }) && c
                            .as_ref()
                            .is_none_or(|c| views[*vi].plan.columns[*ci].name == *c)
                    })
                    .collect();
                let mut holding = Vec::new();
                for (vi, ci) in &cands {
                    if sides.holds(*vi, *ci, sample).await? {
                        holding.push((*vi, *ci));
                    }
                }
                // Text columns first (a numeric key also matches an integer id).
                holding.sort_by_key(|(vi, ci)| {
                    !matches!(
                        views[*vi].plan.columns[*ci].conversion.pg_type,
                        PgType::Text | PgType::Varchar(_)
                    )
                });
                match holding.first() {
                    Some(&(vi, ci)) => {
                        let names: Vec<String> = holding
                            .iter()
                            .map(|(v, c)| {
                                format!("{}.{}", views[*v].name(), views[*v].plan.columns[*c].name)
                            })
                            .collect();
                        how = if names.len() == 1 {
                            format!(
                                "guessed: the only UNIQUE column holding {sample:?}; set [watch.routes.{route}] table and column to choose"
                            )
                        } else {
                            format!(
                                "guessed: first of {} holding {sample:?}; set [watch.routes.{route}] table and column to choose",
                                names.join(", ")
                            )
                        };
                        Some(RouteTarget { view: vi, col: ci })
                    }
                    None => None,
                }
            }
        };
        match found {
            Some(t) => {
                let (table, column) = (
                    views[t.view].name().to_string(),
                    views[t.view].plan.columns[t.col].name.clone(),
                );
                reporter
                    .summary
                    .routes
                    .insert(route.to_string(), format!("{table}.{column} ({how})"));
                let at = reporter.now_iso();
                reporter.emit(WatchEvent::RouteMapped {
                    at,
                    route: route.to_string(),
                    table,
                    column,
                    how,
                });
                self.routes.insert(route.to_string(), t);
                Ok(Some(t))
            }
            None => {
                self.unmapped_until
                    .insert(route.to_string(), self.clock.unix_us() + UNMAPPED_RETRY_US);
                if self.warned.insert(route.to_string()) {
                    reporter.warn(format!(
                        "route {route}: no UNIQUE column of a watched table holds key {sample:?}; its keys are not re-verified until one does — set [watch.routes.{route}] table and column"
                    ));
                }
                Ok(None)
            }
        }
    }
}
