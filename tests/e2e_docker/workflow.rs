//! The CLI workflow: `container ls`, `deploy`, `attach`, `stop`, `start`
//! and `retire`, as users run them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use crate::harness::*;

#[test]
fn container_ls_shows_each_user_their_own() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    let gpu = ["-e", "NVIDIA_VISIBLE_DEVICES=all"];
    let run = |name: &str, labels: &[&str], with_gpu: bool| {
        let mut args = vec!["run", "-d", "--name", name];
        for l in labels {
            args.extend(["--label", l]);
        }
        if with_gpu {
            args.extend(gpu);
        }
        args.extend(["busybox:local", "sleep", "300"]);
        d.ok(&args);
    };
    // Two system users stand in for people: daemon (uid 1) and bin (uid 2).
    run("daemon-train", &["ds01.user=daemon"], true);
    run(
        "bin-dev",
        &["devcontainer.local_folder=/home/bin/llm"],
        true,
    );
    run("daemon-old", &["ds01.user=daemon"], true);
    d.ok(&["stop", "-t", "1", "daemon-old"]);
    d.expect_held(2);

    // Let the two users reach this private daemon and read its config.
    use std::os::unix::fs::PermissionsExt;
    for p in [d.env.dir.path().to_path_buf(), d.env.path("docker.sock")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let names = d.env.path("names");
    std::fs::create_dir_all(&names).unwrap();
    std::os::unix::fs::symlink(cli_bin(), names.join("container")).unwrap();
    std::fs::set_permissions(&names, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ls_as = |uid: u32, args: &[&str], docker_host: &str| -> Output {
        Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "--",
            ])
            .arg(names.join("container"))
            .arg("ls")
            .args(args)
            .env("DS01_CONFIG", &d.env.config)
            .env("DOCKER_HOST", docker_host)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let host = format!("unix://{}", d.env.path("docker.sock").display());
    let json = |uid: u32, args: &[&str]| -> serde_json::Value {
        let out = ls_as(uid, args, &host);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };

    let mine = json(1, &["--json"]);
    assert_eq!(mine["user"], "daemon");
    let rows = mine["containers"].as_array().unwrap();
    let names_of = |rows: &[serde_json::Value]| {
        rows.iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names_of(rows), ["daemon-train", "daemon-old"]);
    assert_eq!(rows[0]["gpu"], "MIG 1g.10gb on GPU 1");
    assert_eq!(rows[1]["gpu"], "none", "a stopped container shows no GPU");
    assert!(rows[1]["status"].as_str().unwrap().starts_with("Exited"));
    // What --json says is what the ledger holds.
    let ledger = d.env.ledger();
    let rec = ledger["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["container_id"] == rows[0]["id"])
        .unwrap();
    assert_eq!(rows[0]["uuids"], rec["devices"]);
    assert_eq!(rec["user"], "daemon");

    let theirs = json(2, &["--json"]);
    let rows = theirs["containers"].as_array().unwrap();
    // A dev container goes by its project folder; Docker's name is kept.
    assert_eq!(names_of(rows), ["llm"]);
    assert_eq!(rows[0]["docker_name"], "bin-dev");
    assert_eq!(rows[0]["kind"], "devcontainer");

    let all = json(2, &["--all", "--json"]);
    let rows = all["containers"].as_array().unwrap();
    let mut owners: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["owner"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    owners.sort();
    assert_eq!(
        owners,
        [
            ("daemon-old".into(), "daemon".into()),
            ("daemon-train".into(), "daemon".into()),
            ("llm".into(), "bin".into())
        ]
    );

    // The framed layout a person reads.
    let out = ls_as(2, &[], &host);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("    Your Containers\n"), "{text}");
    assert!(
        text.contains("1. llm (dev container)\n   Status: Running (Up"),
        "{text}"
    );
    assert!(text.contains("   GPU:    MIG 1g.10gb on GPU 1\n"), "{text}");
    assert!(text.ends_with("Total: 1 container(s)\n"), "{text}");
    let out = ls_as(1, &["--all", "--detailed"], &host);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("   Owner:  bin\n")
            && text.contains("   UUIDs:  MIG-")
            && text.contains("   Project: /home/bin/llm"),
        "{text}"
    );

    // Docker out of reach: the allocations are still listed, and the gap is said.
    let out = ls_as(1, &["--json"], "unix:///nonexistent/docker.sock");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["containers"].as_array().unwrap().len(), 1);
    assert_eq!(v["containers"][0]["gpu"], "MIG 1g.10gb on GPU 1");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("Docker is not reachable")
    );
}

#[test]
fn the_cli_workflow_deploys_attaches_stops_starts_and_retires() {
    let _g = lock();
    let Some((d, _catalog)) = start_with_catalog(&["sm_80", "sm_90"]) else {
        return;
    };
    if !Path::new("/usr/sbin/useradd").exists() {
        skip("docker", "useradd is not installed");
        return;
    }
    let (Some(alice), Some(bob)) = (TempUser::new("a"), TempUser::new("b")) else {
        panic!("cannot create test users");
    };
    // The users reach this dockerd, its config and its state as they would
    // the system's (the docker group, /etc/ds01, /run/ds01).
    for p in [d.env.dir.path().to_path_buf(), d.env.path("state")] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    Command::new("chmod")
        .args(["666"])
        .arg(d.env.path("docker.sock"))
        .status()
        .unwrap();
    let home = |u: &TempUser| PathBuf::from(format!("/home/{}", u.0));
    let project = |u: &TempUser| {
        let p = home(u).join("thesis");
        std::fs::create_dir_all(&p).unwrap();
        Command::new("chown")
            .args(["-R", &format!("{0}:{0}", u.0)])
            .arg(home(u))
            .status()
            .unwrap();
        p
    };
    let (pa, pb) = (project(&alice), project(&bob));
    // Bob's project has a Dockerfile: deploy builds it through the API.
    std::fs::write(
        pb.join("Dockerfile"),
        "FROM busybox:local\nRUN echo built > /built\n",
    )
    .unwrap();
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            d.env.shim_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // Alice: from the catalog. Same name for both users, no collision.
    let out = ok(&d.ds01_as(Some(&alice.0), &pa, &["container", "deploy", "thesis"]));
    assert!(
        out.contains("image: busybox:local (the catalog's pytorch image)"),
        "{out}"
    );
    assert!(
        out.contains("thesis is running with MIG 1g.10gb on GPU 1"),
        "{out}"
    );
    assert!(
        out.contains("attach with: container attach thesis"),
        "{out}"
    );
    let out = ok(&d.ds01_as(Some(&bob.0), &pb, &["container", "deploy", "thesis"]));
    assert!(
        out.contains("building ds01-") && out.contains("thesis is running with MIG"),
        "{out}"
    );
    d.expect_held(2);

    // Attach runs a command inside, in the project, with the home mounted.
    let out = ok(&d.ds01_as(
        Some(&bob.0),
        &pb,
        &[
            "container",
            "attach",
            "thesis",
            "--",
            "sh",
            "-c",
            "cat /built; pwd; ls -d $HOME 2>/dev/null || true",
        ],
    ));
    assert!(out.starts_with("built\n"), "bob's own image: {out}");
    assert!(out.contains(&pb.display().to_string()), "{out}");

    // Bob cannot touch alice's; the refusal is exit 1.
    let out = d.ds01_as(
        Some(&bob.0),
        &pb,
        &[
            "container",
            "retire",
            &format!("{}/thesis", alice.0),
            "--force",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{}'s container", alice.0)));
    let out = d.ds01_as(
        Some(&bob.0),
        &pb,
        &["container", "stop", &format!("{}-thesis", alice.0)],
    );
    assert_eq!(out.status.code(), Some(1), "not by Docker's name either");

    // Stop frees the slice; start gets a fresh allocation.
    let before = d.alloc_ids();
    let out = ok(&d.ds01_as(Some(&alice.0), &pa, &["container", "stop", "thesis"]));
    assert!(out.contains("is back in the pool"), "{out}");
    d.expect_held(1);
    let out = ok(&d.ds01_as(Some(&alice.0), &pa, &["container", "start", "thesis"]));
    assert!(out.contains("thesis is running with MIG 1g.10gb"), "{out}");
    d.expect_held(2);
    let after = d.alloc_ids();
    assert!(
        after.iter().any(|a| !before.contains(a)),
        "a fresh allocation: {before:?} {after:?}"
    );

    // container ls shows them by the names the users chose.
    let ls = ok(&d.ds01_as(Some(&alice.0), &pa, &["container", "ls", "--json"]));
    let ls: serde_json::Value = serde_json::from_str(&ls).unwrap();
    let names: Vec<&str> = ls["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["thesis"]);

    // Retire stops and removes it, and the slice is back.
    let out = ok(&d.ds01_as(
        Some(&alice.0),
        &pa,
        &["container", "retire", "thesis", "--force"],
    ));
    assert!(
        out.contains("retired thesis") && out.contains("back in the pool"),
        "{out}"
    );
    d.expect_held(1);
    let out = d.ds01_as(Some(&alice.0), &pa, &["container", "attach", "thesis"]);
    assert_eq!(out.status.code(), Some(1), "gone");
    ok(&d.ds01_as(
        Some(&bob.0),
        &pb,
        &["container", "retire", "thesis", "--force"],
    ));
    d.expect_held(0);
}

#[test]
fn a_refused_deploy_prints_ds01_s_reason_and_leaves_nothing() {
    let _g = lock();
    let Some((d, _catalog)) = start_with_catalog(&["sm_80"]) else {
        return;
    };
    for i in 0..7 {
        d.run_gpu(&format!("s{i}"), &["sleep", "300"]);
    }
    let proj = tempfile::tempdir().unwrap();
    let out = d.ds01_as(None, proj.path(), &["container", "deploy", "late"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("ds01: no MIG slice free (7 of 7 in use)"),
        "{err}"
    );
    assert!(
        !err.contains("OCI runtime") && !err.contains(": unknown"),
        "unwrapped: {err}"
    );
    // Nothing left behind: the same name deploys once a slice is free.
    d.ok(&["rm", "-f", "s0"]);
    let out = d.ds01_as(
        None,
        proj.path(),
        &["container", "deploy", "late", "--", "true"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
