//! Reading a Prometheus text exposition, and linting one with `promtool`.

/// The value of the sample `series` (`name{labels}` exactly as exposed, or a bare name), if
/// the exposition has it.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// The value of the sample `series`, or 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or(0.0)
}

/// The value of the sample `series`; panics, showing the exposition, when absent.
pub fn expect_metric(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// Lints `text` with `promtool check metrics`: panics with what promtool says unless it passes
/// silently. Prints a notice and returns when promtool is not installed.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed; exposition not linted");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}
