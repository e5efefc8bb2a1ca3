//! Terminal manners: colour only on a terminal, never with `NO_COLOR`.

use std::io::IsTerminal;

pub struct Style {
    colour: bool,
}

impl Style {
    pub fn stdout() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            colour: !no_color && std::io::stdout().is_terminal(),
        }
    }

    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }

    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }

    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Lays out rows in columns. `paint` colours a cell (by column) after its
/// width is measured, so escape codes never disturb the alignment.
pub fn table(
    header: &[&str],
    rows: &[Vec<String>],
    style: &Style,
    paint: impl Fn(usize, &str) -> String,
) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>, paint: &dyn Fn(usize, &str) -> String| {
        let line = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "{}{}",
                    paint(i, c),
                    " ".repeat(widths[i] - c.chars().count())
                )
            })
            .collect::<Vec<_>>()
            .join("  ");
        format!("{}\n", line.trim_end())
    };
    let mut out = render(header.to_vec(), &|_, c| style.bold(c));
    for row in rows {
        out.push_str(&render(row.iter().map(String::as_str).collect(), &paint));
    }
    out
}
