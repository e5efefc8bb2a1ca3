//! JSONC as VS Code reads it: comments and trailing commas, nothing more
//! (no JSON5). Values come with the line they start on, for findings.

use std::collections::HashMap;

use jsonc_parser::ParseOptions;
use jsonc_parser::ast;
use jsonc_parser::common::Ranged;

/// VS Code's dialect.
pub fn options() -> ParseOptions {
    ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A parsed document: its value, and the line of each JSON pointer.
#[derive(Debug, Clone)]
pub struct Doc {
    pub value: serde_json::Value,
    lines: HashMap<String, usize>,
}

impl Doc {
    /// The line (1-based) where the value at `pointer` starts; the nearest
    /// existing parent's line otherwise, and 1 for the root.
    pub fn line(&self, pointer: &str) -> usize {
        let mut p = pointer;
        loop {
            if let Some(l) = self.lines.get(p) {
                return *l;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return 1,
            }
        }
    }
}

pub fn parse(text: &str) -> Result<Doc, SyntaxError> {
    let syntax = |e: jsonc_parser::errors::ParseError| SyntaxError {
        line: e.line_display(),
        column: e.column_display(),
        message: e.kind().to_string(),
    };
    // A UTF-8 byte-order mark is allowed, as VS Code allows it (`--fix`
    // keeps it); it is three bytes before line 1, so lines do not move.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(e) = control_in_string(text) {
        return Err(e);
    }
    let collect = jsonc_parser::CollectOptions::default();
    let ast = jsonc_parser::parse_to_ast(text, &collect, &options()).map_err(syntax)?;
    let value: serde_json::Value =
        jsonc_parser::parse_to_serde_value(text, &options()).map_err(syntax)?;
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_of = |offset: usize| starts.partition_point(|s| *s <= offset);
    let mut lines = HashMap::new();
    if let Some(v) = &ast.value {
        walk(v, String::new(), &line_of, &mut lines);
    }
    Ok(Doc { value, lines })
}

fn walk(
    v: &ast::Value,
    ptr: String,
    line_of: &dyn Fn(usize) -> usize,
    out: &mut HashMap<String, usize>,
) {
    out.insert(ptr.clone(), line_of(v.start()));
    match v {
        ast::Value::Object(o) => {
            for p in &o.properties {
                let key = p.name.as_str().replace('~', "~0").replace('/', "~1");
                walk(&p.value, format!("{ptr}/{key}"), line_of, out);
            }
        }
        ast::Value::Array(a) => {
            for (i, e) in a.elements.iter().enumerate() {
                walk(e, format!("{ptr}/{i}"), line_of, out);
            }
        }
        _ => {}
    }
}

/// A raw control character inside a string, which JSON (and VS Code's
/// parser) refuses; comments are skipped.
fn control_in_string(text: &str) -> Option<SyntaxError> {
    let (mut line, mut col) = (1, 0);
    let mut chars = text.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    let (mut line_comment, mut block_comment) = (false, false);
    while let Some(c) = chars.next() {
        col += 1;
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            } else if (c as u32) < 0x20 {
                return Some(SyntaxError {
                    line,
                    column: col,
                    message: format!(
                        "raw control character U+{:04X} in a string; write it escaped (\\t, \\n or \\u{:04x})",
                        c as u32, c as u32
                    ),
                });
            }
        } else if line_comment {
            line_comment = c != '\n';
        } else if block_comment {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                col += 1;
                block_comment = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c == '/' && chars.peek() == Some(&'/') {
            line_comment = true;
        } else if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            col += 1;
            block_comment = true;
        }
        if c == '\n' {
            line += 1;
            col = 0;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas_as_vs_code_reads_them() {
        let d = parse("{\n  // the name\n  \"name\": \"x\",\n  \"runArgs\": [\n    \"--gpus\",\n    \"all\",\n  ],\n}\n").unwrap();
        assert_eq!(d.value["name"], "x");
        assert_eq!(d.line("/name"), 3);
        assert_eq!(d.line("/runArgs/1"), 6);
        assert_eq!(
            d.line("/runArgs/9"),
            4,
            "a missing element points at its array"
        );
        assert_eq!(d.line(""), 1);
    }

    #[test]
    fn json5_extras_and_broken_files_are_syntax_errors_with_a_place() {
        let e = parse("{\n  'name': 1\n}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        let e = parse("{\n  \"a\": 1,\n  \"b\": 2 /* open\n}").unwrap_err();
        assert_eq!(e.line, 3, "{e:?}");
        assert!(parse("{\"a\": 0x10}").is_err());
    }
}
