//! Questions on a terminal, for the wizards. Generic over the streams, so
//! tests answer them from a string.

use std::io::IsTerminal;
use std::io::{self, BufRead, Write};

/// Whether questions can be asked: both ends are a terminal.
pub fn interactive() -> bool {
    io::stdin().is_terminal() && io::stdout().is_terminal()
}

pub struct Prompter<R, W> {
    input: R,
    out: W,
    /// Explain each step before asking it (`--guided`).
    guided: bool,
}

impl<R: BufRead, W: Write> Prompter<R, W> {
    pub fn new(input: R, out: W, guided: bool) -> Self {
        Prompter { input, out, guided }
    }

    /// Printed before a question, only in guided mode.
    pub fn explain(&mut self, text: &str) -> io::Result<()> {
        if self.guided {
            writeln!(self.out, "\n{text}")?;
        }
        Ok(())
    }

    fn line(&mut self) -> io::Result<String> {
        self.out.flush()?;
        let mut s = String::new();
        if self.input.read_line(&mut s)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "no answer: input ended",
            ));
        }
        Ok(s.trim().to_string())
    }

    /// A free answer; empty takes the default.
    pub fn ask(&mut self, question: &str, default: &str) -> io::Result<String> {
        write!(self.out, "{question} [{default}]: ")?;
        let a = self.line()?;
        Ok(if a.is_empty() { default.to_string() } else { a })
    }

    /// One of `options` (shown numbered); by number or by name.
    pub fn choose(
        &mut self,
        question: &str,
        options: &[&str],
        default: usize,
    ) -> io::Result<usize> {
        writeln!(self.out, "{question}")?;
        for (i, o) in options.iter().enumerate() {
            writeln!(self.out, "  {}) {o}", i + 1)?;
        }
        loop {
            write!(self.out, "choice [{}]: ", default + 1)?;
            let a = self.line()?;
            if a.is_empty() {
                return Ok(default);
            }
            if let Ok(n) = a.parse::<usize>()
                && (1..=options.len()).contains(&n)
            {
                return Ok(n - 1);
            }
            if let Some(i) = options
                .iter()
                .position(|o| o.split_whitespace().next() == Some(a.as_str()))
            {
                return Ok(i);
            }
            writeln!(self.out, "please answer 1 to {}", options.len())?;
        }
    }

    pub fn confirm(&mut self, question: &str, default: bool) -> io::Result<bool> {
        loop {
            write!(
                self.out,
                "{question} [{}]: ",
                if default { "Y/n" } else { "y/N" }
            )?;
            match self.line()?.to_lowercase().as_str() {
                "" => return Ok(default),
                "y" | "yes" => return Ok(true),
                "n" | "no" => return Ok(false),
                _ => writeln!(self.out, "please answer y or n")?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_defaults_numbers_names_and_retries() {
        let input = "\nmine\n\n3\nbogus\n2\nyes\n";
        let mut out = Vec::new();
        let mut p = Prompter::new(input.as_bytes(), &mut out, false);
        assert_eq!(p.ask("name", "proj").unwrap(), "proj");
        assert_eq!(p.ask("name", "proj").unwrap(), "mine");
        assert_eq!(p.choose("pick", &["a", "b", "c"], 1).unwrap(), 1);
        assert_eq!(p.choose("pick", &["a", "b", "c"], 0).unwrap(), 2);
        assert_eq!(
            p.choose("pick", &["a", "b"], 0).unwrap(),
            1,
            "after a bad answer"
        );
        assert!(p.confirm("ok?", false).unwrap());
        assert!(
            p.ask("more", "x").is_err(),
            "end of input is an error, not a hang"
        );
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("please answer 1 to 2")
        );
    }
}
