//! The `ds01` binary as users and the package's scripts call it.

mod common;

use std::path::Path;
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

/// An audit event line as the runtime writes it.
fn audit_line(
    time: &str,
    event: &str,
    user: &str,
    c: &str,
    gpueq: f64,
    seconds: Option<u64>,
) -> String {
    let mut v = serde_json::json!({
        "time": time, "event": event, "user": user, "identity_source": "docker-label",
        "container_id": c, "devices": [format!("MIG-{c}")], "gpueq": gpueq, "reason": null,
    });
    if let Some(s) = seconds {
        v["seconds"] = s.into();
    }
    v.to_string()
}

#[test]
fn report_gives_gpu_hours_with_known_answers_and_each_user_their_own() {
    let env = Env::new(Path::new("/usr/sbin/runc"), "");
    let lines = [
        // alice: a full GPU for 10 h, 2 h of it idle.
        audit_line("2026-11-01T00:00:00Z", "allocate", "alice", "a1", 1.0, None),
        audit_line(
            "2026-11-01T05:00:00Z",
            "idle",
            "alice",
            "a1",
            1.0,
            Some(7200),
        ),
        audit_line("2026-11-01T10:00:00Z", "release", "alice", "a1", 1.0, None),
        // bob: half a GPU from before the month, its release never
        // written: it counts up to its reclaim, 28 h into the month.
        audit_line("2026-10-31T20:00:00Z", "allocate", "bob", "b1", 0.5, None),
        audit_line("2026-11-02T04:00:00Z", "reclaim", "bob", "b1", 0.5, None),
        audit_line("2026-11-15T00:00:00Z", "refuse", "bob", "b2", 0.0, None),
        audit_line(
            "2026-11-15T01:00:00Z",
            "queue",
            "bob",
            "b3",
            0.5,
            Some(3600),
        ),
        // carol: still running, 2 h of it in November.
        audit_line("2026-11-30T22:00:00Z", "allocate", "carol", "c1", 1.0, None),
        // nobody: an hour, for the view of a user who is not an admin.
        audit_line(
            "2026-11-20T00:00:00Z",
            "allocate",
            "nobody",
            "n1",
            1.0,
            None,
        ),
        audit_line("2026-11-20T01:00:00Z", "release", "nobody", "n1", 1.0, None),
    ];
    std::fs::write(env.path("events.jsonl"), lines.join("\n") + "\n").unwrap();
    // carol's container still holds its device: the ledger says so.
    let host = ds01_core::testing::FakeHost::default();
    ds01_core::ledger::Ledger::new(&env.path("state"))
        .update(|rs| {
            let mut r = ds01_core::testing::record("c1", &["MIG-c1"], &host);
            r.user = Some("carol".into());
            rs.records.push(r);
        })
        .unwrap();
    let out = env.cli(&["report", "--month", "2026-11", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["from"], "2026-11-01T00:00:00Z");
    assert_eq!(v["to"], "2026-12-01T00:00:00Z");
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        // Not an admin: only the caller's own line, and they hold nothing.
        assert_eq!(v["lines"], serde_json::json!([]));
        return;
    }
    let line = |u: &str| find_in(&v["lines"], "name", u);
    let f = |l: &serde_json::Value, k: &str| l[k].as_f64().unwrap();
    let alice = line("alice");
    assert_eq!(
        (f(&alice, "gpu_hours"), f(&alice, "idle_hours")),
        (10.0, 2.0)
    );
    assert_eq!(alice["containers"], 1);
    let bob = line("bob");
    assert_eq!(
        (f(&bob, "gpu_hours"), f(&bob, "queue_wait_hours")),
        (14.0, 1.0)
    );
    assert_eq!(
        (bob["containers"].as_u64(), bob["refusals"].as_u64()),
        (Some(0), Some(1))
    );
    let carol = line("carol");
    assert_eq!(
        (f(&carol, "gpu_hours"), carol["containers"].as_u64()),
        (2.0, Some(1))
    );
    assert_eq!(v["lines"][0]["name"], "bob", "most GPU-hours first");
    // By group (none configured: everyone in `users`), as CSV.
    let out = env.cli(&["report", "--month", "2026-11", "--by", "group", "--csv"]);
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        csv,
        "group,gpu_hours,idle_hours,containers,refusals,queue_wait_hours\nusers,27.000,2.000,3,1,1.000\n"
    );
    // A bad month is a one-line error, exit 2.
    let out = env.cli(&["report", "--month", "2026-13"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("write a month such as 2026-11"));
    // A user who is not an admin sees their own line alone.
    use std::os::unix::fs::PermissionsExt;
    for p in [
        env.dir.path().to_path_buf(),
        env.config.clone(),
        env.path("events.jsonl"),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", CLI])
        .args(["report", "--month", "2026-11", "--json"])
        .env("DS01_CONFIG", &env.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mine: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = mine["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nobody"]);
}
