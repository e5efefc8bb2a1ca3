//! The `ds01` binary as users and the package's scripts call it.

mod common;

use std::process::Command;

use common::*;

#[test]
fn devcontainer_name_passes_unknown_commands_to_the_official_cli() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("theirs");
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    std::os::unix::fs::symlink(CLI, ours.join("devcontainer")).unwrap();
    // Not the machine's own install, wherever the config would find one.
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "devcontainer_cli = \"/nonexistent/devcontainer\"\n",
    )
    .unwrap();

    // No official CLI: a clear one-line error, exit 2.
    let out = Command::new(ours.join("devcontainer"))
        .args(["up", "--workspace-folder", "."])
        .env("PATH", std::env::join_paths([&ours, &theirs]).unwrap())
        .env("DS01_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("devcontainer up")
            && err.contains(
                "npm install -g --prefix /usr/local/lib/devcontainers-cli @devcontainers/cli"
            ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // With one later on PATH, it gets the arguments unchanged.
    let record = dir.path().join("argv");
    let fake = theirs.join("devcontainer");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > {record:?}\nexit 7\n"),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = Command::new(ours.join("devcontainer"))
        .args(["up", "--workspace-folder", "/p q"])
        .env("PATH", std::env::join_paths([&ours, &theirs]).unwrap())
        .env("DS01_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "up\n--workspace-folder\n/p q\n"
    );
}

#[test]
fn register_and_unregister_docker_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = dir.path().join("daemon.json");
    let state = dir.path().join("state.json");
    let original = "{ \"log-level\": \"info\" }\n";
    std::fs::write(&daemon, original).unwrap();
    let admin = |args: &[&str]| {
        Command::new(CLI)
            .arg("admin")
            .args(args)
            .arg("--daemon-json")
            .arg(&daemon)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap()
    };
    let out = admin(&["register-docker", "--runtime", shim()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(msg.contains("restart Docker"), "{msg}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&daemon).unwrap()).unwrap();
    assert_eq!(v["runtimes"]["ds01"]["path"], shim());
    assert_eq!(v["default-runtime"], "ds01");
    let out = admin(&["unregister-docker"]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&daemon).unwrap(), original);

    std::fs::write(&daemon, "{oops").unwrap();
    let out = admin(&["register-docker", "--runtime", shim()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid JSON"));
    assert_eq!(std::fs::read_to_string(&daemon).unwrap(), "{oops");
}

#[test]
fn generated_man_pages_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(CLI)
        .arg("generate-assets")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let man = std::fs::read_to_string(dir.path().join("man/ds01.1")).unwrap();
    assert!(man.contains("gpus") && man.contains("admin"));
    let man = std::fs::read_to_string(dir.path().join("man/ds01-runtime.1")).unwrap();
    assert!(man.contains("poststop"));
    let bash = std::fs::read_to_string(dir.path().join("completions/ds01")).unwrap();
    assert!(bash.contains("complete") && bash.contains("gpus"));
}

#[test]
fn doctor_names_each_problem_with_its_fix_and_exits_1_on_a_failure() {
    let drv = tempfile::tempdir().unwrap();
    let cdi = fake_cdi(drv.path());
    let env = Env::new(
        std::path::Path::new("/usr/sbin/runc"),
        &format!("cdi_spec_dirs = [{cdi:?}]\n"),
    );
    let out = Command::new(CLI)
        .args(["doctor", "--json"])
        .env("DS01_CONFIG", &env.config)
        .env(
            "DOCKER_HOST",
            format!("unix://{}", env.path("no-docker.sock").display()),
        )
        .env("PATH", env.path("empty-bin"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = |id: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(status("driver"), "ok");
    assert_eq!(
        status("cdi"),
        "ok",
        "the fake CDI spec covers every device: {v}"
    );
    assert_eq!(status("docker"), "fail");
    assert_eq!(v["ok"], false);
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "ok" || c["fix"].is_string())
    );
}

#[test]
fn the_account_helper_answers_from_the_system_user_database() {
    let helper = std::path::Path::new(CLI).with_file_name("ds01-accounts");
    let ask = |args: &[&str]| Command::new(&helper).args(args).output().unwrap();
    let out = ask(&["groups", "root"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|g| g == "root")
    );
    // A user by uid comes with its groups: one exec for both questions.
    let out = ask(&["user", "0"]);
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.first().map(String::as_str), Some("root"));
    assert!(lines[1..].iter().any(|g| g == "root"), "{lines:?}");
    assert_eq!(ask(&["user", "4294967"]).status.code(), Some(1));
    let bad = ask(&["user", "root"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a number"));
}
