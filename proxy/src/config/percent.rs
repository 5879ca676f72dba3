//! Rollout percentages: 0–100 in 0.01 steps, held as basis points (`25.5` ↔ `2550`).

/// Converts a percentage (0–100, 0.01 steps) to basis points.
pub fn percent_to_bp(p: f64) -> Result<u32, String> {
    if !p.is_finite() || !(0.0..=100.0).contains(&p) {
        return Err(format!("{p} is not between 0 and 100"));
    }
    let bp = (p * 100.0).round();
    if (bp - p * 100.0).abs() > 1e-6 {
        return Err(format!("{p}: percentages go in 0.01 steps"));
    }
    Ok(bp as u32)
}

/// Formats basis points as a percentage (`2550` → `25.5`).
pub fn bp_to_percent(bp: u32) -> f64 {
    f64::from(bp) / 100.0
}
