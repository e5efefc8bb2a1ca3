//! `devcontainer check [PATH] [--fix] [--json]`. Exit 0: clean (warnings
//! allowed); 1: errors found; 2: could not run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ds01::devcontainer::check::{self, Context, Finding, Severity};
use ds01::devcontainer::{catalog, fix, locate_all};
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
    match check_all(&args) {
        Ok(code) => code,
        Err(e) => {
            if args.json {
                println!("{}", json!({"error": format!("{e:#}")}));
            } else {
                eprintln!("devcontainer check: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}

/// Every config PATH holds (as VS Code finds them, subfolder configs
/// included); the worst exit code wins.
fn check_all(args: &Args) -> anyhow::Result<ExitCode> {
    let path = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
    let files = locate_all(&path).map_err(anyhow::Error::msg)?;
    if files.len() > 1 && !args.json {
        println!(
            "{} configs here; checking each (name one to check it alone): {}",
            files.len(),
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut worst = 0u8;
    let mut outputs = Vec::new();
    for file in &files {
        let (code, out) = check_file(args, file)?;
        worst = worst.max(code);
        outputs.push(out);
    }
    if args.json {
        let v = if outputs.len() == 1 {
            outputs.remove(0)
        } else {
            serde_json::Value::Array(outputs)
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(ExitCode::from(worst))
}

/// Checks (and with --fix repairs) one file: its exit code, and its JSON.
fn check_file(args: &Args, file: &Path) -> anyhow::Result<(u8, serde_json::Value)> {
    let file = file.to_path_buf();
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
        dir: file.parent(),
        nvidia_runtime: crate::docker::runtime_names()
            .ok()
            .map(|names| names.iter().any(|n| n == "nvidia")),
    };
    let mut findings = match check::check(&text, &ctx) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("syntax error: {}", e.message);
            let f = json!([{"id": "syntax", "severity": "error", "line": e.line, "column": e.column, "message": msg}]);
            if !args.json {
                println!(
                    "{}:{}:{}: error[syntax]: {msg}",
                    file.display(),
                    e.line,
                    e.column
                );
            }
            return Ok((1, json!({"file": file, "findings": f, "fixed": []})));
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
    let out = json!({"file": file, "findings": findings, "fixed": fixed, "notes": notes});
    if !args.json {
        print!(
            "{}",
            render(&file, &findings, &fixed, &notes, &Style::stdout())
        );
    }
    Ok((u8::from(check::has_errors(&findings)), out))
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
