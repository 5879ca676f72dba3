//! How the demo tells its story: numbered step headings, indented lines and the shell commands
//! that do the same, written to whatever the caller hands in (stdout for `ficus demo`, a buffer
//! in tests).

use std::io::Write;
use std::time::Instant;

pub struct Narrator<'a> {
    out: &'a mut (dyn Write + Send),
    step: usize,
    started: Instant,
}

impl<'a> Narrator<'a> {
    pub fn new(out: &'a mut (dyn Write + Send)) -> Narrator<'a> {
        Narrator {
            out,
            step: 0,
            started: Instant::now(),
        }
    }

    /// A new step heading.
    pub fn step(&mut self, title: &str) {
        self.step += 1;
        let step = self.step;
        self.line(format_args!("\n== {step}. {title}"));
    }

    /// One line under the current step.
    pub fn say(&mut self, line: impl AsRef<str>) {
        self.line(format_args!("   {}", line.as_ref()));
    }

    /// A shell command that does what the step just did (see `env.sh` in the work directory).
    pub fn cli(&mut self, command: impl AsRef<str>) {
        self.line(format_args!("   $ {}", command.as_ref()));
    }

    /// Seconds since the story began.
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn line(&mut self, text: std::fmt::Arguments<'_>) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}
