//! `[routes.plan]` as written, validated into a [`PlanConfig`]; errors name the field
//! (`plan.steps`) for the route parser to place on its line.

use std::time::Duration;

use serde::Deserialize;

use super::percent::percent_to_bp;
use crate::plan::{OnFail, PlanConfig, MAX_PHASE};

/// A duration as written: `"10m"`, `"90s"`, `"1h 30m"`, or a number of seconds.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDuration {
    Text(String),
    Seconds(u64),
}

/// `[routes.plan]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlan {
    pub steps: Option<Vec<f64>>,
    pub hold: Option<RawDuration>,
    pub min_requests: Option<u64>,
    pub preflight: Option<RawDuration>,
    pub max_error_rate: Option<f64>,
    pub max_error_rate_ratio: Option<f64>,
    pub max_p99_ms: Option<u64>,
    pub max_p99_ratio: Option<f64>,
    pub max_mismatch_rate: Option<f64>,
    pub on_fail: Option<String>,
}

fn duration(d: &RawDuration) -> Result<Duration, String> {
    match d {
        RawDuration::Seconds(s) => Ok(Duration::from_secs(*s)),
        RawDuration::Text(t) if t.trim() == "0" => Ok(Duration::ZERO),
        RawDuration::Text(t) => humantime::parse_duration(t.trim())
            .map_err(|e| format!("{t:?}: {e} (write e.g. \"10m\", \"90s\", \"1h 30m\")")),
    }
}

/// Validates `[routes.plan]` as written; the error names the field (`plan.hold`).
pub(crate) fn from_raw(r: &RawPlan) -> Result<PlanConfig, (String, String)> {
    let bad = |f: &str, m: String| Err((format!("plan.{f}"), m));
    let Some(raw_steps) = r.steps.as_ref().filter(|s| !s.is_empty()) else {
        return bad(
            "steps",
            "a plan needs its steps, in percent, e.g. steps = [1, 10, 25, 50, 100]".into(),
        );
    };
    let mut steps = Vec::with_capacity(raw_steps.len());
    for &p in raw_steps {
        let bp = match percent_to_bp(p) {
            Ok(bp) => bp,
            Err(m) => return bad("steps", m),
        };
        if bp == 0 {
            return bad(
                "steps",
                "0 is not a step (a plan starts where the route is)".into(),
            );
        }
        if steps.last().is_some_and(|&l| bp <= l) {
            return bad(
                "steps",
                format!("{p} after a step at least as large: steps go up"),
            );
        }
        steps.push(bp);
    }
    let hold = match r.hold.as_ref().map(duration).transpose() {
        Ok(h) => h.unwrap_or(Duration::from_secs(600)),
        Err(m) => return bad("hold", m),
    };
    if hold < Duration::from_secs(1) || hold > MAX_PHASE {
        return bad("hold", format!("{hold:?}: from 1 s to 7 days"));
    }
    let preflight = match r.preflight.as_ref().map(duration).transpose() {
        Ok(p) => p.unwrap_or(Duration::ZERO),
        Err(m) => return bad("preflight", m),
    };
    if preflight > MAX_PHASE || (!preflight.is_zero() && preflight < Duration::from_secs(1)) {
        return bad(
            "preflight",
            format!("{preflight:?}: 0 (off) or 1 s to 7 days"),
        );
    }
    let min_requests = r.min_requests.unwrap_or(500);
    if min_requests == 0 {
        return bad(
            "min_requests",
            "must be at least 1: no data is no verdict".into(),
        );
    }
    for (f, v) in [
        ("max_error_rate", r.max_error_rate),
        ("max_mismatch_rate", r.max_mismatch_rate),
    ] {
        if let Some(v) = v {
            if !(0.0..=1.0).contains(&v) {
                return bad(f, format!("{v} is not between 0 and 1"));
            }
        }
    }
    for (f, v) in [
        ("max_error_rate_ratio", r.max_error_rate_ratio),
        ("max_p99_ratio", r.max_p99_ratio),
    ] {
        if let Some(v) = v {
            if !v.is_finite() || v < 1.0 {
                return bad(f, format!("{v}: a multiple of legacy's value, at least 1"));
            }
        }
    }
    if r.max_p99_ms == Some(0) {
        return bad("max_p99_ms", "must be at least 1".into());
    }
    if r.max_error_rate.is_none()
        && r.max_error_rate_ratio.is_none()
        && r.max_p99_ms.is_none()
        && r.max_p99_ratio.is_none()
        && r.max_mismatch_rate.is_none()
    {
        return bad(
            "max_error_rate",
            "a plan needs at least one gate: max_error_rate, max_error_rate_ratio, \
             max_p99_ms, max_p99_ratio or max_mismatch_rate"
                .into(),
        );
    }
    if !preflight.is_zero() && r.max_mismatch_rate.is_none() {
        return bad(
            "preflight",
            "a pre-flight judges the next cohort's mismatches: set max_mismatch_rate".into(),
        );
    }
    let on_fail = match r.on_fail.as_deref() {
        None | Some("rollback") => OnFail::Rollback,
        Some("pause") => OnFail::Pause,
        Some(o) => return bad("on_fail", format!("{o:?}: expected rollback or pause")),
    };
    Ok(PlanConfig {
        steps,
        hold,
        min_requests,
        preflight,
        max_error_rate: r.max_error_rate,
        max_error_rate_ratio: r.max_error_rate_ratio,
        max_p99_ms: r.max_p99_ms,
        max_p99_ratio: r.max_p99_ratio,
        max_mismatch_rate: r.max_mismatch_rate,
        on_fail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<PlanConfig, (String, String)> {
        let r: RawPlan = toml::from_str(src).unwrap();
        from_raw(&r)
    }

    #[test]
    fn the_issue_example_parses() {
        let p = parse(
            r#"
            steps = [1, 10, 25, 50, 100]
            hold = "10m"
            min_requests = 500
            preflight = "5m"
            max_error_rate = 0.01
            max_error_rate_ratio = 1.5
            max_p99_ms = 300
            max_mismatch_rate = 0.001
            on_fail = "rollback"
            "#,
        )
        .unwrap();
        assert_eq!(p.steps, vec![100, 1000, 2500, 5000, 10_000]);
        assert_eq!((p.hold.as_secs(), p.preflight.as_secs()), (600, 300));
        assert_eq!(p.on_fail, OnFail::Rollback);
        let p = parse("steps = [50]\nmax_p99_ms = 5\npreflight = 0\nhold = 30").unwrap();
        assert_eq!(
            (p.hold.as_secs(), p.preflight, p.min_requests),
            (30, Duration::ZERO, 500)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let f = |s: &str| parse(s).unwrap_err().0;
        assert_eq!(f("max_p99_ms = 5"), "plan.steps");
        assert_eq!(f("steps = [10, 5]\nmax_p99_ms = 5"), "plan.steps");
        assert_eq!(f("steps = [0, 5]\nmax_p99_ms = 5"), "plan.steps");
        assert_eq!(
            f("steps = [5]\nmax_p99_ms = 5\nhold = \"soon\""),
            "plan.hold"
        );
        assert_eq!(f("steps = [5]"), "plan.max_error_rate");
        assert_eq!(
            f("steps = [5]\nmax_p99_ms = 5\nmin_requests = 0"),
            "plan.min_requests"
        );
        assert_eq!(
            f("steps = [5]\nmax_error_rate_ratio = 0.5"),
            "plan.max_error_rate_ratio"
        );
        assert_eq!(
            f("steps = [5]\nmax_p99_ms = 5\npreflight = \"1m\""),
            "plan.preflight"
        );
        assert_eq!(
            f("steps = [5]\nmax_p99_ms = 5\non_fail = \"panic\""),
            "plan.on_fail"
        );
    }

    #[test]
    fn a_route_error_names_line_and_field() {
        let src = "[backends.legacy]\nurl = \"http://127.0.0.1:1\"\n[backends.new]\nurl = \"http://127.0.0.1:2\"\n\
                   [[routes]]\nname = \"r\"\npath = \"/r\"\nsticky = \"header:x\"\n\
                   [routes.plan]\nsteps = [10, 100]\nmax_p99_ms = 5\npreflight = \"1m\"\n";
        let e = crate::Config::from_toml_str(src).unwrap_err();
        assert_eq!(e.field, "routes[0].plan.preflight", "{e}");
        assert_eq!(e.line, Some(9), "{e}: the [routes.plan] table");
        let e = crate::Config::from_toml_str(
            &src.replace("preflight = \"1m\"", "hold = \"1 fortnight\""),
        )
        .unwrap_err();
        assert_eq!(e.field, "routes[0].plan.hold", "{e}");
    }
}
