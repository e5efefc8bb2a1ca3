//! ds01's alert rules through Prometheus' own checker: they load, and
//! `promtool test rules` fires each alert on made-up series and keeps it
//! quiet on others (tests/prometheus/ds01-rules.test.yml).

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/mod.rs"]
mod common;

fn promtool(args: &[&str]) -> Option<std::process::Output> {
    if !Path::new("/usr/bin/promtool").exists() {
        if std::env::var("DS01_E2E").as_deref() == Ok("1") {
            panic!("DS01_E2E=1 but promtool (Debian's prometheus) is not installed");
        }
        common::skip("monitoring", "promtool (prometheus) is not installed");
        return None;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Some(
        Command::new("/usr/bin/promtool")
            .args(args)
            .current_dir(repo)
            .output()
            .unwrap(),
    )
}

#[test]
fn the_alert_rules_load_and_each_fires_only_when_it_should() {
    let Some(out) = promtool(&["check", "rules", "packaging/prometheus/ds01-rules.yml"]) else {
        return;
    };
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && said.contains("SUCCESS: 6 rules found"),
        "{said}"
    );
    let out = promtool(&["test", "rules", "tests/prometheus/ds01-rules.test.yml"]).unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every alert has a test that fires it and one that does not.
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus/ds01-rules.yml"),
    )
    .unwrap();
    let tests = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/prometheus/ds01-rules.test.yml"),
    )
    .unwrap();
    for name in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        let blocks: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|b| b.contains(&format!("alertname: {name}\n")))
            .collect();
        assert!(
            blocks.iter().any(|b| b.contains("exp_labels")),
            "{name} never fires"
        );
        assert!(
            blocks.iter().any(|b| b.contains("exp_alerts: []")),
            "{name} is never quiet"
        );
    }
    for block in rules.split("- alert: ").skip(1) {
        let name = block.lines().next().unwrap_or("");
        assert!(block.contains("summary: "), "{name} has no summary");
        assert!(
            block.contains("description: "),
            "{name} says not what to do"
        );
    }
}
