//! The corpus of devcontainer.json files under tests/fixtures/devcontainer:
//! each case a project with its expected findings (`expected.txt`: file,
//! id, severity, line) and, where `--fix` applies, the file it must write
//! (`fixed.json`). Checked as the server user alice (home /home/alice),
//! without Docker's answer for `hostRequirements.gpu`.

mod common;

use std::path::{Path, PathBuf};

use ds01::devcontainer::check::{self, Context};
use ds01::devcontainer::{catalog, fix, locate_all, write};

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(common::repo().join("tests/fixtures/devcontainer"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Copies a case (symlinks as symlinks) into a scratch directory.
fn copy(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = std::fs::symlink_metadata(&src).unwrap().file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ft.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn findings_of(project: &Path, file: &Path, text: &str) -> Result<Vec<check::Finding>, String> {
    let cat = catalog::load(&common::repo().join("packaging/images.toml")).unwrap();
    let ctx = Context {
        catalog: Some(&cat),
        home: Path::new("/home/alice"),
        docker_gpus: true,
        dir: file.parent(),
        nvidia_runtime: None,
    };
    let _ = project;
    check::check(text, &ctx).map_err(|e| format!("{}:{}: {}", e.line, e.column, e.message))
}

#[test]
fn every_case_has_its_findings_and_its_fix() {
    let cases = cases();
    assert!(cases.len() >= 9, "{cases:?}");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let scratch = tempfile::tempdir().unwrap();
        copy(&case, scratch.path());
        let project = scratch.path();
        let mut got = Vec::new();
        let files = locate_all(project).unwrap();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            let rel = file.strip_prefix(project).unwrap().display().to_string();
            for f in findings_of(project, file, &text).unwrap() {
                got.push(format!("{rel} {} {} {}", f.id, f.severity.as_str(), f.line));
            }
        }
        let want: Vec<String> = std::fs::read_to_string(case.join("expected.txt"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(got, want, "case {name}");

        let golden = case.join("fixed.json");
        if !golden.exists() {
            continue;
        }
        let file = &files[0];
        let text = std::fs::read_to_string(file).unwrap();
        let findings = findings_of(project, file, &text).unwrap();
        let (fixed, _) = fix::apply(&text, &findings, Path::new("/home/alice"), true).unwrap();
        write::write_file(file, &fixed).unwrap();
        let on_disk = std::fs::read_to_string(file).unwrap();
        assert_eq!(
            on_disk,
            std::fs::read_to_string(&golden).unwrap(),
            "case {name}: --fix"
        );
        // A symlinked config is still a link, to the file now fixed.
        if std::fs::symlink_metadata(case.join(".devcontainer/devcontainer.json"))
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            assert!(file.is_symlink(), "case {name}: the link was replaced");
        }
    }
}
