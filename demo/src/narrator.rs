//! How the demo tells its story: numbered step headings and indented lines, written to
//! whatever the caller hands in (stdout for `ficus demo`, a buffer in tests).

use std::io::Write;

pub struct Narrator<'a> {
    out: &'a mut (dyn Write + Send),
    step: usize,
}

impl<'a> Narrator<'a> {
    pub fn new(out: &'a mut (dyn Write + Send)) -> Narrator<'a> {
        Narrator { out, step: 0 }
    }

    /// A new step heading.
    pub fn step(&mut self, title: &str) {
        self.step += 1;
        let _ = writeln!(self.out, "\n== {}. {title}", self.step);
        let _ = self.out.flush();
    }

    /// One line under the current step.
    pub fn say(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.out, "   {}", line.as_ref());
        let _ = self.out.flush();
    }
}
