//! `devcontainer check [PATH] [--fix] [--json]`. Exit 0: clean (warnings
//! allowed); 1: errors found; 2: could not run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ds01::devcontainer::check::{self, Context, Finding, Severity};
use ds01::devcontainer::{catalog, fix, locate};
use ds01_core::config::Config;
use serde_json::json;

use crate::me::me;
use crate::style::Style;
use ds01::devcontainer::write::write_file;

#[derive(clap::Args)]
pub struct Args {
    /// A project directory or a devcontainer.json (default: this directory)
    path: Option<PathBuf>,
    /// Repair what can safely be repaired, in place, keeping comments (a backup is kept)
    #[arg(long)]
    fix: bool,
    /// Print the findings as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> ExitCode {
    match check_file(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("devcontainer check: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check_file(args: &Args) -> anyhow::Result<ExitCode> {
    let path = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
    let file = locate(&path).map_err(anyhow::Error::msg)?;
    let text = std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("{file:?}: {e}"))?;
    let me = me()?;
    let mut notes = Vec::new();
    let catalog = match Config::load()
        .map_err(|e| e.to_string())
        .and_then(|c| catalog::load(&c.image_catalog))
    {
        Ok(c) => Some(c),
        Err(e) => {
            notes.push(format!("image checks skipped: {e}"));
            None
        }
    };
    let docker_gpus = ds01_core::driver::find_hook().is_some();
    let ctx = Context {
        catalog: catalog.as_ref(),
        home: &me.home,
        docker_gpus,
    };
    let mut findings = match check::check(&text, &ctx) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("syntax error: {}", e.message);
            if args.json {
                let f = json!([{"id": "syntax", "severity": "error", "line": e.line, "column": e.column, "message": msg}]);
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"file": file, "findings": f, "fixed": []})
                    )?
                );
            } else {
                println!(
                    "{}:{}:{}: error[syntax]: {msg}",
                    file.display(),
                    e.line,
                    e.column
                );
            }
            return Ok(ExitCode::from(1));
        }
    };
    let mut fixed = Vec::new();
    if args.fix && findings.iter().any(|f| f.fixable) {
        let (new_text, changes) =
            fix::apply(&text, &findings, &me.home, docker_gpus).map_err(anyhow::Error::msg)?;
        if !changes.is_empty() {
            if let Some(b) = write_file(&file, &new_text)? {
                notes.push(format!("kept the old file as {}", b.display()));
            }
            fixed = changes;
            findings = check::check(&new_text, &ctx)
                .map_err(|e| anyhow::anyhow!("after fixing: {}", e.message))?;
        }
    }
    if args.json {
        let out = json!({"file": file, "findings": findings, "fixed": fixed, "notes": notes});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!(
            "{}",
            render(&file, &findings, &fixed, &notes, &Style::stdout())
        );
    }
    Ok(if check::has_errors(&findings) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn render(
    file: &Path,
    findings: &[Finding],
    fixed: &[String],
    notes: &[String],
    style: &Style,
) -> String {
    let mut out = String::new();
    for change in fixed {
        out.push_str(&format!("fixed: {change}\n"));
    }
    for n in notes {
        out.push_str(&format!("note: {n}\n"));
    }
    for f in findings {
        let sev = match f.severity {
            Severity::Error => style.bold(&style.yellow("error")),
            other => other.as_str().to_string(),
        };
        out.push_str(&format!(
            "{}:{}: {sev}[{}]: {}\n",
            file.display(),
            f.line,
            f.id,
            f.message
        ));
        let hint = if f.fixable && fixed.is_empty() {
            " (devcontainer check --fix does this)"
        } else {
            ""
        };
        out.push_str(&format!("    fix: {}{hint}\n", f.fix));
    }
    let count = |s| findings.iter().filter(|f| f.severity == s).count();
    if findings.is_empty() {
        out.push_str(&format!("{}: no problems found\n", file.display()));
    } else {
        out.push_str(&format!(
            "{} error(s), {} warning(s), {} note(s)\n",
            count(Severity::Error),
            count(Severity::Warning),
            count(Severity::Info)
        ));
    }
    out
}
