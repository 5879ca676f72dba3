//! One `[[routes]]` entry: what it matches, where its traffic goes, and its shadow, dual-write
//! and guard settings — with the rules that tie those fields together.

use std::time::Duration;

use http::Method;
use toml::Spanned;

use ficus_shadow::RouteShadowConfig;

use super::error::{shadow_field, ConfigError, Ctx};
use super::percent::percent_to_bp;
use super::raw::RawRoute;
use crate::guard::GuardConfig;
use crate::plan::PlanConfig;
use crate::route::PathTemplate;
use crate::split::{MissingKey, Sticky, BUCKETS};

/// The longest `read_your_writes_ms`.
pub const MAX_READ_YOUR_WRITES_MS: u64 = 600_000;

/// Which writes of a dual-write route take turns (`write_order`; see `order.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WriteOrderScope {
    /// `"key"`: one write at a time per value of the route's `key`; writes without it take
    /// turns per route.
    #[default]
    Key,
    /// `"route"`: one write at a time on the whole route — for writes that make each side
    /// allocate ids (creates numbered `max(id) + 1`), whatever key they carry.
    Route,
}

impl WriteOrderScope {
    /// `key` or `route`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOrderScope::Key => "key",
            WriteOrderScope::Route => "route",
        }
    }
}

/// Where a route's traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Always the legacy backend (the route is pinned; its rollout is fixed at 0%).
    Legacy,
    /// Always the new backend (starts at 100%; a rollback still moves it to legacy).
    New,
    /// Split by the rollout percentage and the sticky key.
    Split,
}

impl Target {
    /// `legacy`, `new` or `split`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Legacy => "legacy",
            Target::New => "new",
            Target::Split => "split",
        }
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Unique name, used in metrics, headers and the admin API.
    pub name: String,
    /// Methods this route matches; empty matches every method.
    pub methods: Vec<Method>,
    /// Path template.
    pub path: PathTemplate,
    /// Legacy, new or split.
    pub target: Target,
    /// Share sent to new, in basis points (0..=10000, i.e. 0.01 % steps).
    pub percent_bp: u32,
    /// Where the sticky key comes from.
    pub sticky: Sticky,
    /// What a request without the sticky key gets.
    pub missing_key: MissingKey,
    /// `[routes.shadow]`: mirror this route's requests to the other side and compare.
    pub shadow: Option<RouteShadowConfig>,
    /// `dual_write = true`: writes are mirrored too (needs `shadow` and `key`), stamped with
    /// `X-Ficus-Request-Time`, and recorded in the state store's `dual_writes` table.
    pub dual_write: bool,
    /// `key`: which request part names the row a write touches (sticky-source syntax).
    pub key: Option<Sticky>,
    /// `write_order`: which writes of a dual-write route wait for each other.
    pub write_order: WriteOrderScope,
    /// `read_your_writes_ms` (`None`: 0 or absent, off): a read whose sticky key was written
    /// through this proxy less than this long ago goes to the side that took the write.
    pub read_your_writes: Option<Duration>,
    /// `[routes.guard]`: automatic rollback when the new side misbehaves.
    pub guard: Option<GuardConfig>,
    /// `access_log = false`: this route's requests are left out of `[proxy.access_log]`.
    pub access_log: bool,
    /// `[routes.plan]`: a step plan that promotes the route on evidence (started at run time
    /// with `ficus rollout plan start`).
    pub plan: Option<PlanConfig>,
}

/// Route `i` as written; `earlier` are the routes before it (names must be unique).
pub(super) fn from_raw(
    cx: &Ctx<'_>,
    i: usize,
    r: Spanned<RawRoute>,
    earlier: &[RouteConfig],
) -> Result<RouteConfig, ConfigError> {
    let rspan = r.span();
    let r = r.into_inner();
    let f = |k: &str| format!("routes[{i}].{k}");
    let name = r.name.get_ref().clone();
    check_name(&name).map_err(|m| cx.err(f("name"), Some(r.name.span()), m))?;
    if earlier.iter().any(|o| o.name == name) {
        return Err(cx.err(
            f("name"),
            Some(r.name.span()),
            format!("duplicate route name {name:?}"),
        ));
    }
    let mut methods = Vec::new();
    if let Some(ms) = &r.methods {
        for m in ms.get_ref() {
            let m = m.to_ascii_uppercase();
            let method = Method::from_bytes(m.as_bytes()).map_err(|_| {
                cx.err(
                    f("methods"),
                    Some(ms.span()),
                    format!("{m:?} is not an HTTP method"),
                )
            })?;
            if !methods.contains(&method) {
                methods.push(method);
            }
        }
    }
    let path = PathTemplate::parse(r.path.get_ref())
        .map_err(|m| cx.err(f("path"), Some(r.path.span()), m))?;
    let target = match &r.target {
        None => Target::Split,
        Some(t) => match t.get_ref().as_str() {
            "legacy" => Target::Legacy,
            "new" => Target::New,
            "split" => Target::Split,
            other => {
                return Err(cx.err(
                    f("target"),
                    Some(t.span()),
                    format!("{other:?}: expected legacy, new or split"),
                ))
            }
        },
    };
    let percent_bp = match (&r.percent, target) {
        (None, Target::Legacy) | (None, Target::Split) => 0,
        (None, Target::New) => BUCKETS,
        (Some(p), Target::Split) => {
            percent_to_bp(*p.get_ref()).map_err(|m| cx.err(f("percent"), Some(p.span()), m))?
        }
        (Some(p), t) => {
            return Err(cx.err(
                f("percent"),
                Some(p.span()),
                format!(
                    "only meaningful with target = \"split\" (this route is pinned to {})",
                    t.as_str()
                ),
            ))
        }
    };
    let sticky = match &r.sticky {
        None => Sticky::Random,
        Some(s) => {
            Sticky::parse(s.get_ref()).map_err(|m| cx.err(f("sticky"), Some(s.span()), m))?
        }
    };
    if let Sticky::Path(param) = &sticky {
        if path.param_index(param).is_none() {
            let span = r.sticky.as_ref().map(|s| s.span()).unwrap_or(rspan.clone());
            return Err(cx.err(
                f("sticky"),
                Some(span),
                format!("path {:?} has no parameter {{{param}}}", r.path.get_ref()),
            ));
        }
    }
    let missing_key = match &r.missing_key {
        None => MissingKey::Legacy,
        Some(s) => match s.get_ref().as_str() {
            "legacy" => MissingKey::Legacy,
            "new" => MissingKey::New,
            "random" => MissingKey::Random,
            other => {
                return Err(cx.err(
                    f("missing_key"),
                    Some(s.span()),
                    format!("{other:?}: expected legacy, new or random"),
                ))
            }
        },
    };
    let route_shadow = match r.shadow {
        None => None,
        Some(s) => {
            let span = s.span();
            let c = s.into_inner();
            c.validate().map_err(|err| {
                let (field, m) = shadow_field(err);
                cx.err(f(&field), Some(span), m)
            })?;
            Some(c)
        }
    };
    let key = match &r.key {
        None => None,
        Some(k) => {
            Some(Sticky::parse(k.get_ref()).map_err(|m| cx.err(f("key"), Some(k.span()), m))?)
        }
    };
    let write_order = match &r.write_order {
        None => WriteOrderScope::Key,
        Some(w) => match w.get_ref().as_str() {
            "key" => WriteOrderScope::Key,
            "route" => WriteOrderScope::Route,
            other => {
                return Err(cx.err(
                    f("write_order"),
                    Some(w.span()),
                    format!("{other:?}: expected key or route"),
                ))
            }
        },
    };
    let guard = match r.guard {
        None => None,
        Some(g) => {
            let span = g.span();
            let g = g.into_inner();
            let built = GuardConfig::new(
                g.max_error_rate,
                g.max_p99_ms,
                g.max_mismatch_rate,
                g.window_s,
                g.min_requests,
            );
            Some(built.map_err(|(field, m): (String, String)| cx.err(f(&field), Some(span), m))?)
        }
    };
    let plan_span = r.plan.as_ref().map(|p| p.span());
    let plan = match r.plan {
        None => None,
        Some(p) => {
            let span = p.span();
            let built = super::plan::from_raw(p.get_ref());
            Some(built.map_err(|(field, m)| cx.err(f(&field), Some(span), m))?)
        }
    };
    let rc = RouteConfig {
        name,
        methods,
        path,
        target,
        percent_bp,
        sticky,
        missing_key,
        shadow: route_shadow,
        dual_write: r.dual_write.as_ref().is_some_and(|d| *d.get_ref()),
        key,
        write_order,
        read_your_writes: r
            .read_your_writes_ms
            .as_ref()
            .map(|v| *v.get_ref())
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis),
        guard,
        access_log: r.access_log.unwrap_or(true),
        plan,
    };
    check_extras(&rc, r.write_order.is_some()).map_err(|(field, m)| {
        let span = match field.as_str() {
            "key" => r.key.as_ref().map(|k| k.span()),
            "read_your_writes_ms" => r.read_your_writes_ms.as_ref().map(|v| v.span()),
            "write_order" => r.write_order.as_ref().map(|w| w.span()),
            "dual_write" => r.dual_write.as_ref().map(|d| d.span()),
            f if f.starts_with("plan.") => plan_span.clone(),
            _ => None,
        };
        cx.err(f(&field), Some(span.unwrap_or(rspan.clone())), m)
    })?;
    Ok(rc)
}

/// Whether a route takes writes (its methods include one that is not GET, HEAD or OPTIONS,
/// or it matches every method).
pub(crate) fn takes_writes(r: &RouteConfig) -> bool {
    r.methods.is_empty() || r.methods.iter().any(|m| !crate::route::is_safe(m))
}

/// The rule across routes for `read_your_writes_ms`: some route that takes writes must have
/// the same sticky source, or no write would ever be remembered for the read route. Returns
/// the index of the first route breaking it and the message.
pub(super) fn check_read_your_writes(routes: &[RouteConfig]) -> Result<(), (usize, String)> {
    for (i, r) in routes.iter().enumerate() {
        if r.read_your_writes.is_none() {
            continue;
        }
        if !routes
            .iter()
            .any(|w| takes_writes(w) && w.sticky == r.sticky)
        {
            return Err((
                i,
                format!(
                    "no route that takes writes has sticky = \"{}\": reads are matched to \
                     writes made on routes with the same sticky key source",
                    r.sticky
                ),
            ));
        }
    }
    Ok(())
}

/// A route name: letters, digits, `-`, `_`, `.`; not starting with `_` (reserved).
pub(super) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.starts_with('_') {
        return Err("names starting with '_' are reserved".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "{name:?}: use letters, digits, '-', '_' and '.' only"
        ));
    }
    Ok(())
}

/// Cross-field rules of `shadow`, `dual_write`, `key`, `write_order` (`write_order_set`: written
/// in the file) and `guard`; the error names the field relative to the route (`key`,
/// `shadow.sample`, ...).
pub(super) fn check_extras(r: &RouteConfig, write_order_set: bool) -> Result<(), (String, String)> {
    let err = |f: &str, m: String| Err((f.to_string(), m));
    if write_order_set && !r.dual_write {
        return err(
            "write_order",
            "only meaningful with dual_write = true (it orders the writes sent to both sides)"
                .into(),
        );
    }
    match &r.key {
        Some(Sticky::Random) => {
            return err(
                "key",
                "\"random\" names no row: use header:NAME, cookie:NAME, path:PARAM or query:NAME"
                    .into(),
            )
        }
        Some(Sticky::Path(p)) if r.path.param_index(p).is_none() => {
            return err("key", format!("path {} has no parameter {{{p}}}", r.path))
        }
        Some(_) if !r.dual_write => {
            return err(
                "key",
                "only meaningful with dual_write = true (it names the row a write touches)".into(),
            )
        }
        _ => {}
    }
    if r.dual_write {
        let Some(shadow) = &r.shadow else {
            return err(
                "dual_write",
                "needs a [routes.shadow] table: shadow mode sends the writes to the other side"
                    .into(),
            );
        };
        if shadow.sample < 1.0 {
            return err(
                "shadow.sample",
                format!(
                    "{} on a dual-write route: every write must reach both sides (use 1.0)",
                    shadow.sample
                ),
            );
        }
        if r.key.is_none() {
            return err(
                "key",
                "dual_write = true needs key = \"path:PARAM\" (or header:/cookie:/query:) naming the row"
                    .into(),
            );
        }
    }
    if let Some(d) = r.read_your_writes {
        if d > Duration::from_millis(MAX_READ_YOUR_WRITES_MS) {
            return err(
                "read_your_writes_ms",
                format!(
                    "{} ms: at most {MAX_READ_YOUR_WRITES_MS} (0 turns it off)",
                    d.as_millis()
                ),
            );
        }
        if r.sticky == Sticky::Random {
            return err(
                "read_your_writes_ms",
                "needs a sticky key (sticky = \"header:NAME\", cookie:, path: or query:): \
                 a read is matched to earlier writes by it"
                    .into(),
            );
        }
    }
    if let Some(p) = &r.plan {
        if r.target != Target::Split {
            return err(
                "plan.steps",
                format!(
                    "a plan moves a split route (this one is pinned to {})",
                    r.target.as_str()
                ),
            );
        }
        if p.max_mismatch_rate.is_some() && r.shadow.is_none() {
            return err(
                "plan.max_mismatch_rate",
                "needs a [routes.shadow] table: mismatches come from shadow comparisons".into(),
            );
        }
        if !p.preflight.is_zero() {
            if r.shadow.is_none() {
                return err(
                    "plan.preflight",
                    "needs a [routes.shadow] table: the next cohort is shadowed to the new side"
                        .into(),
                );
            }
            if r.sticky == Sticky::Random {
                return err(
                    "plan.preflight",
                    "needs a sticky key (sticky = \"header:NAME\", cookie:, path: or query:): \
                     the next cohort is the keys the next step moves"
                        .into(),
                );
            }
        }
    }
    if let Some(g) = &r.guard {
        if g.max_mismatch_rate.is_some() && r.shadow.is_none() {
            return err(
                "guard.max_mismatch_rate",
                "needs a [routes.shadow] table: mismatches come from shadow comparisons".into(),
            );
        }
    }
    Ok(())
}
