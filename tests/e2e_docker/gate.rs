//! The gate and the runtime's second layer: each caller known by the
//! kernel, kept to their own, and nothing run that the rules forbid.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::harness::*;

#[test]
fn the_gate_knows_each_caller_and_keeps_them_to_their_own() {
    let _g = lock();
    let Some(d) = start("gate_list = \"own\"\n", false) else {
        return;
    };
    if !Path::new("/usr/sbin/useradd").exists() {
        skip("docker", "useradd is not installed");
        return;
    }
    let (Some(alice), Some(bob)) = (TempUser::new("ga"), TempUser::new("gb")) else {
        panic!("cannot create test users");
    };
    let (_gate, gate_sock) = gate_for(&d);
    let (a, b) = (Some(alice.0.as_str()), Some(bob.0.as_str()));
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(d.env.path("gate.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = |out: Output, rule: &str| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "not refused ({rule})");
        assert!(
            err.contains("ds01-gate: ") && err.contains(&format!("(rule {rule})")),
            "{rule}: {err}"
        );
    };

    // Identity comes from the kernel: a spoofed label is replaced.
    ok(docker_via(
        &gate_sock,
        a,
        &[
            "run",
            "-d",
            "--name",
            "a1",
            "--label",
            &format!("ds01.user={}", bob.0),
            "busybox:local",
            "sleep",
            "300",
        ],
    ));
    let label = d.ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"ds01.user\"}}",
        "a1",
    ]);
    assert_eq!(label.trim(), alice.0);

    // Alice works with her own container: exec (a hijacked stream), logs, cp.
    assert_eq!(
        ok(docker_via(&gate_sock, a, &["exec", "a1", "echo", "hi"])).trim(),
        "hi"
    );
    ok(docker_via(&gate_sock, a, &["logs", "a1"]));
    ok(docker_via(
        &gate_sock,
        a,
        &["cp", "a1:/bin/busybox", "/tmp/ds01-gate-cp-test"],
    ));
    let _ = std::fs::remove_file("/tmp/ds01-gate-cp-test");
    // A run that streams: attach and logs -f to the end.
    let out = ok(docker_via(
        &gate_sock,
        a,
        &[
            "run",
            "--rm",
            "busybox:local",
            "sh",
            "-c",
            "echo one; echo two",
        ],
    ));
    assert_eq!(out, "one\ntwo\n");
    // exec -it through a pty.
    let out = Command::new("runuser")
        .args(["-u", &alice.0, "--", "script", "-qec"])
        .arg(format!(
            "{DOCKER} -H unix://{} exec -it a1 tty",
            gate_sock.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"),
        "{out:?}"
    );
    // A build with its context uploaded.
    let ctx = PathBuf::from(format!("/home/{}/ctx", alice.0));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:local\nCOPY hello /hello\n",
    )
    .unwrap();
    std::fs::write(ctx.join("hello"), "hello\n").unwrap();
    Command::new("chown")
        .args(["-R", &alice.0])
        .arg(&ctx)
        .status()
        .unwrap();
    ok(docker_via(
        &gate_sock,
        a,
        &[
            "build",
            "-q",
            "-t",
            "gate-test:built",
            ctx.to_str().unwrap(),
        ],
    ));
    // BuildKit's session would run beside the gate's judgement: refused,
    // and nothing built (docs/gate.md: users build with DOCKER_BUILDKIT=0).
    let out = Command::new("runuser")
        .args(["-u", &alice.0, "--", DOCKER, "-H"])
        .arg(format!("unix://{}", gate_sock.display()))
        .args([
            "build",
            "-q",
            "-t",
            "gate-test:buildkit",
            ctx.to_str().unwrap(),
        ])
        .env("DOCKER_BUILDKIT", "1")
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "BuildKit went through the gate");
    assert!(
        !d.docker(&["image", "inspect", "gate-test:buildkit"])
            .status
            .success()
    );

    // save works; load, which writes any name, is an admin's.
    let tar = format!("/home/{}/img.tar", alice.0);
    ok(docker_via(
        &gate_sock,
        a,
        &["save", "-o", &tar, "gate-test:built"],
    ));
    refused(docker_via(&gate_sock, a, &["load", "-i", &tar]), "endpoint");
    // logs -f of a container that ends: every line, then the end.
    let id = ok(docker_via(
        &gate_sock,
        a,
        &[
            "run",
            "-d",
            "busybox:local",
            "sh",
            "-c",
            "echo one; sleep 1; echo two",
        ],
    ));
    let out = ok(docker_via(&gate_sock, a, &["logs", "-f", id.trim()]));
    assert_eq!(out, "one\ntwo\n");
    ok(docker_via(&gate_sock, a, &["rm", id.trim()]));
    // Volumes are stamped; another user's is not bob's to remove.
    ok(docker_via(&gate_sock, a, &["volume", "create", "alices"]));
    refused(
        docker_via(&gate_sock, b, &["volume", "rm", "alices"]),
        "volume-owner",
    );
    ok(docker_via(&gate_sock, a, &["volume", "rm", "alices"]));
    // ds01's own CLI works through the gate.
    let ls = Command::new("runuser")
        .args(["-u", &alice.0, "--"])
        .arg(cli_bin())
        .args(["container", "ls", "--json"])
        .env("DS01_CONFIG", &d.env.config)
        .env("DOCKER_HOST", format!("unix://{}", gate_sock.display()))
        .output()
        .unwrap();
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let names: Vec<&str> = ls["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a1"], "{ls}");

    // A Compose project, as alice, through the gate.
    if Path::new("/usr/bin/docker-compose").exists() {
        let proj = PathBuf::from(format!("/home/{}/compose", alice.0));
        std::fs::create_dir_all(&proj).unwrap();
        std::fs::write(
            proj.join("docker-compose.yml"),
            "version: \"2.4\"\nservices:\n  app:\n    image: busybox:local\n    command: [\"sleep\", \"300\"]\n    network_mode: none\n",
        )
        .unwrap();
        Command::new("chown")
            .args(["-R", &alice.0])
            .arg(&proj)
            .status()
            .unwrap();
        let compose = |args: &[&str]| {
            Command::new("runuser")
                .args(["-u", &alice.0, "--", "/usr/bin/docker-compose", "-H"])
                .arg(format!("unix://{}", gate_sock.display()))
                .args(args)
                .current_dir(&proj)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        ok(compose(&["up", "-d"]));
        let owner = d.ok(&[
            "ps",
            "--filter",
            "label=com.docker.compose.project=compose",
            "--format",
            "{{.Label \"ds01.user\"}}",
        ]);
        assert_eq!(owner.trim(), alice.0, "compose's container is stamped too");
        refused(
            docker_via(&gate_sock, b, &["rm", "-f", "compose_app_1"]),
            "ownership",
        );
        ok(compose(&["down"]));
    } else {
        eprintln!(
            "docker-compose is not installed: the Compose project through the gate is not tried"
        );
    }

    // The Dev Containers CLI, unchanged, through the gate: up, then exec.
    let official = Path::new("/usr/local/lib/devcontainers-cli/bin/devcontainer");
    if official.exists() {
        // busybox with the passwd file the CLI's `exec -u root` needs.
        let img = tempfile::tempdir().unwrap();
        std::fs::write(
            img.path().join("Dockerfile"),
            "FROM busybox:local\nRUN echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && echo 'root:x:0:' > /etc/group\n",
        )
        .unwrap();
        let built = d.docker(&[
            "build",
            "-q",
            "-t",
            "gate-test:dc",
            img.path().to_str().unwrap(),
        ]);
        assert!(built.status.success(), "{built:?}");
        let proj = PathBuf::from(format!("/home/{}/dc", alice.0));
        std::fs::create_dir_all(proj.join(".devcontainer")).unwrap();
        std::fs::write(
            proj.join(".devcontainer/devcontainer.json"),
            r#"{"image": "gate-test:dc", "overrideCommand": true, "shutdownAction": "stopContainer"}"#,
        )
        .unwrap();
        Command::new("chown")
            .args(["-R", &alice.0])
            .arg(&proj)
            .status()
            .unwrap();
        let dc = |args: &[&str]| {
            Command::new("runuser")
                .args(["-u", &alice.0, "--"])
                .arg(official)
                .args(args)
                .env("DOCKER_HOST", format!("unix://{}", gate_sock.display()))
                .env("HOME", format!("/home/{}", alice.0))
                .current_dir(&proj)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        let folder = proj.display().to_string();
        let up = dc(&["up", "--workspace-folder", &folder]);
        assert!(
            up.status.success(),
            "devcontainer up: {}{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        let out = dc(&["exec", "--workspace-folder", &folder, "echo", "inside"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("inside"),
            "{out:?}"
        );
        let owner = d.ok(&[
            "ps",
            "--filter",
            &format!("label=devcontainer.local_folder={folder}"),
            "--format",
            "{{.Label \"ds01.user\"}}",
        ]);
        assert_eq!(owner.trim(), alice.0);
        let dc_id = d.ok(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=devcontainer.local_folder={folder}"),
        ]);
        d.ok(&["rm", "-f", dc_id.trim()]);
    } else {
        eprintln!(
            "the Dev Containers CLI is not installed: devcontainer up through the gate is not tried"
        );
    }

    // With gate_list = "own", docker ps shows each their own; the admin all.
    let ps = |who: Option<&str>| {
        ok(docker_via(
            &gate_sock,
            who,
            &["ps", "-a", "--format", "{{.Names}}"],
        ))
    };
    assert_eq!(ps(a).trim(), "a1");
    assert_eq!(ps(b).trim(), "");
    assert!(ps(None).contains("a1"));

    // Bob cannot stop, exec into, inspect or remove alice's container.
    for args in [
        &["stop", "a1"][..],
        &["exec", "a1", "true"],
        &["rm", "-f", "a1"],
        &["inspect", "a1"],
        &["logs", "a1"],
    ] {
        refused(docker_via(&gate_sock, b, args), "ownership");
    }
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "a1"]).trim(),
        "running"
    );

    // Every route around the rules is refused, with its rule.
    for (opts, rule) in [
        (&["--privileged"][..], "privileged"),
        (&["--runtime=runc"], "runtime"),
        (&["--device-cgroup-rule", "c 195:* rwm"], "device-rule"),
        (&["--cap-add", "SYS_ADMIN"], "cap-add"),
        (&["--pid=host"], "host-namespace"),
        (&["--network=host"], "host-namespace"),
        (&["--ipc=host"], "host-namespace"),
        (&["-v", "/:/host"], "bind-mount"),
        (&["--userns=host"], "userns-host"),
        (&["--security-opt", "seccomp=unconfined"], "security-opt"),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(opts);
        args.extend(["busybox:local", "true"]);
        refused(docker_via(&gate_sock, a, &args), rule);
    }
    // Her home is hers to mount.
    let home = format!("/home/{}:/work", alice.0);
    ok(docker_via(
        &gate_sock,
        a,
        &["run", "--rm", "-v", &home, "busybox:local", "ls", "/work"],
    ));

    // The admin may do all.
    ok(docker_via(&gate_sock, None, &["exec", "a1", "true"]));
    ok(docker_via(
        &gate_sock,
        None,
        // (--privileged stays the runtime's to judge: its admins are a group.)
        &[
            "run",
            "--rm",
            "--cap-add",
            "SYS_ADMIN",
            "-v",
            "/etc:/host-etc",
            "busybox:local",
            "true",
        ],
    ));
    ok(docker_via(&gate_sock, None, &["rm", "-f", "a1"]));
    let _ = d.docker(&[
        "rmi",
        "gate-test:built",
        "gate-test:buildkit",
        "gate-test:dc",
    ]);
}

#[test]
fn the_gate_survives_disconnects_crowds_and_restarts() {
    let _g = lock();
    let Some(d) = start("", false) else { return };
    let gate_sock = d.env.path("gate.sock");
    let spawn = || {
        let child = Command::new(gate_bin())
            .arg("--listen")
            .arg(&gate_sock)
            .arg("--docker")
            .arg(d.env.path("docker.sock"))
            .env("DS01_CONFIG", &d.env.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Killed on drop, even when the wait below fails.
        let child = GateProc(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while raw_request(
            &gate_sock,
            "GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        )
        .is_empty()
        {
            assert!(Instant::now() < deadline, "the gate did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    };
    let gate = spawn();
    let pid = gate.0.id();
    let ping = "GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_request(&gate_sock, ping), "HTTP/1.1 200 OK");
    let head = "HEAD /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_request(&gate_sock, head), "HTTP/1.1 200 OK");
    let fds_before = fds_of(pid);

    // 200 connections at once.
    let oks = std::thread::scope(|s| {
        let hs: Vec<_> = (0..200)
            .map(|_| s.spawn(|| raw_request(&gate_sock, ping)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .filter(|l| l == "HTTP/1.1 200 OK")
            .count()
    });
    assert_eq!(oks, 200);

    // A client that hangs up in the middle of a stream (`docker events`).
    for _ in 0..20 {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&gate_sock).unwrap();
        s.write_all(b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 64];
        let _ = s.read(&mut head);
        drop(s);
    }

    // 10,000 requests on 4 keep-alive connections.
    let rss_before = rss_kib(pid);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                use std::io::{BufRead, BufReader, Read, Write};
                let sock = std::os::unix::net::UnixStream::connect(&gate_sock).unwrap();
                let mut r = BufReader::new(sock.try_clone().unwrap());
                let mut w = sock;
                for _ in 0..2500 {
                    w.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
                        .unwrap();
                    let mut len = 0;
                    loop {
                        let mut line = String::new();
                        r.read_line(&mut line).unwrap();
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    assert_eq!(body, b"OK");
                }
            });
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let (fds_after, rss_after) = (fds_of(pid), rss_kib(pid));
    eprintln!(
        "gate: {fds_before} -> {fds_after} fds, {rss_before} -> {rss_after} KiB over 10,000 requests"
    );
    assert!(
        fds_after <= fds_before + 4,
        "fds leak: {fds_before} -> {fds_after}"
    );
    assert!(
        rss_after < rss_before + 20 * 1024,
        "memory grows: {rss_before} -> {rss_after} KiB"
    );

    // A restart with a container running leaves the container alone.
    let gate_out = |args: &[&str]| docker_via(&gate_sock, None, args);
    assert!(
        gate_out(&["run", "-d", "--name", "r1", "busybox:local", "sleep", "300"])
            .status
            .success()
    );
    drop(gate);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "r1"]).trim(),
        "running"
    );
    let _gate = spawn();
    let out = gate_out(&["exec", "r1", "echo", "still"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "still");
    d.ok(&["rm", "-f", "r1"]);
}

#[test]
fn the_gate_cannot_be_walked_around() {
    let _g = lock();
    let Some((d, users)) = start_with_users("gate_max_connections = 8\n", &["wa", "wb"]) else {
        return;
    };
    let (alice, bob) = (&users[0], &users[1]);
    let (gate, sock) = gate_for(&d);
    let (a, b) = (Some(alice.0.as_str()), Some(bob.0.as_str()));
    let log = || std::fs::read_to_string(d.env.path("gate.log")).unwrap_or_default();
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let refused = |out: Output, rule: &str| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "not refused ({rule})");
        assert!(err.contains(&format!("(rule {rule})")), "{rule}: {err}");
    };
    let count = || d.ok(&["ps", "-aq"]).lines().count();
    // A secret only root may read, and bob's running and stopped containers.
    let secret = d.env.path("secret");
    std::fs::write(&secret, "root only\n").unwrap();
    ok(docker_via(
        &sock,
        b,
        &["run", "-d", "--name", "b1", "busybox:local", "sleep", "300"],
    ));
    ok(docker_via(
        &sock,
        b,
        &["create", "--name", "b2", "busybox:local", "true"],
    ));
    ok(docker_via(&sock, b, &["volume", "create", "bobs"]));
    ok(docker_via(
        &sock,
        a,
        &["run", "-d", "--name", "a1", "busybox:local", "sleep", "300"],
    ));
    let before = count();
    let alice_u = alice.0.as_str();

    // 1. Escaped paths are not judged in one form and run in another.
    let privileged = r#"{"Image":"busybox:local","Cmd":["true"],"HostConfig":{"Privileged":true}}"#;
    for p in ["/v1.41/%63ontainers/create", "/v1.41/containers%2Fcreate"] {
        let (code, body) = curl_as(&sock, alice_u, "POST", p, Some(privileged));
        assert_eq!(code, 403, "{p}: {body}");
        assert!(body.contains("(rule endpoint)"), "{body}");
    }
    for p in ["/%63ontainers/b1/stop", "/v1.41/containers/x/../b1/stop"] {
        let (code, _) = curl_as(&sock, alice_u, "POST", p, None);
        assert_eq!(code, 403, "{p}");
    }
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "b1"]).trim(),
        "running"
    );

    // 2. Keys in another case, repeated keys, and 3. the old API forms.
    let create = "/v1.41/containers/create";
    for body in [
        r#"{"Image":"busybox:local","hostconfig":{"Runtime":"runc","Devices":[{"PathOnHost":"/dev/null","PathInContainer":"/dev/x","CgroupPermissions":"rwm"}]}}"#,
        r#"{"Image":"busybox:local","HostConfig":{"privileged":true}}"#,
        r#"{"Image":"busybox:local","HostConfig":{"binds":["/:/h"]}}"#,
        r#"{"Image":"busybox:local","HostConfig":{"capadd":["SYS_ADMIN"],"pidmode":"host","securityopt":["seccomp=unconfined"]}}"#,
        r#"{"Image":"busybox:local","Labels":{},"labels":{"ds01.user":"BOB"}}"#,
        r#"{"Image":"busybox:local","HostConfig":{"Mounts":[{"Type":"bind","Source":"/home","source":"/","Target":"/h"}]}}"#,
        r#"{"Image":"busybox:local","Privileged":true,"Binds":["/:/h"]}"#,
    ] {
        let body = body.replace("BOB", &bob.0);
        let (code, out) = curl_as(&sock, alice_u, "POST", create, Some(&body));
        assert_eq!(code, 403, "{body}: {out}");
    }
    assert_eq!(count(), before, "no container was made");
    let (code, out) = curl_as(
        &sock,
        alice_u,
        "POST",
        "/v1.41/containers/create?name=a2",
        Some(r#"{"Image":"busybox:local","Cmd":["cat","/h/secret"]}"#),
    );
    assert_eq!(code, 201, "{out}");
    let (code, out) = curl_as(
        &sock,
        alice_u,
        "POST",
        "/v1.23/containers/a2/start",
        Some(&format!(
            r#"{{"Binds":["{}:/h"]}}"#,
            d.env.dir.path().display()
        )),
    );
    assert_eq!(code, 403, "{out}");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "a2"]).trim(),
        "created"
    );

    // 5. Volumes that are host paths.
    refused(
        docker_via(
            &sock,
            a,
            &[
                "volume",
                "create",
                "-o",
                "type=none",
                "-o",
                "o=bind",
                "-o",
                "device=/",
                "hostroot",
            ],
        ),
        "volume-opt",
    );
    assert!(
        !d.docker(&["volume", "inspect", "hostroot"])
            .status
            .success()
    );
    refused(
        docker_via(
            &sock,
            a,
            &[
                "run",
                "--rm",
                "--mount",
                "type=volume,src=etc,dst=/e,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/etc",
                "busybox:local",
                "true",
            ],
        ),
        "volume-opt",
    );

    // 6. Other users' containers as sources; 7. devices, masks, namespaces.
    let allow_all = allow_all_seccomp(&d);
    for (opts, rule) in [
        (&["--volumes-from", "b1"][..], "ownership"),
        (&["--pid", "container:b1"], "ownership"),
        (&["--network", "container:b1"], "ownership"),
        (&["--ipc", "container:b1"], "ownership"),
        (&["--link", "b1:db"], "ownership"),
        (&["--device", "/dev/kmsg"], "device"),
        (&["--device-cgroup-rule", "b *:* rwm"], "device-rule"),
        (
            &["--security-opt", "systempaths=unconfined"],
            "security-opt",
        ),
        (&["--security-opt", &allow_all], "security-opt"),
        (&["--cgroupns", "host"], "host-namespace"),
        (&["--uts", "host"], "host-namespace"),
        (&["--cgroup-parent", "/"], "cgroup-parent"),
        (&["--log-driver", "syslog"], "log-driver"),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(opts);
        args.extend(["busybox:local", "cat", "/proc/1/root/etc/hostname"]);
        refused(docker_via(&sock, a, &args), rule);
    }
    // Her own container she may share with: namespaces and volumes.
    ok(docker_via(
        &sock,
        a,
        &[
            "run",
            "--rm",
            "--pid",
            "container:a1",
            "busybox:local",
            "true",
        ],
    ));

    // Another user's volume or network is not hers to join; a subnet of
    // her choosing is not hers to make.
    refused(
        docker_via(
            &sock,
            a,
            &["run", "--rm", "-v", "bobs:/v", "busybox:local", "true"],
        ),
        "volume-owner",
    );
    refused(
        docker_via(
            &sock,
            a,
            &[
                "run",
                "--rm",
                "--mount",
                "type=volume,src=bobs,dst=/v",
                "busybox:local",
                "true",
            ],
        ),
        "volume-owner",
    );
    ok(docker_via(&sock, b, &["network", "create", "bobnet"]));
    refused(
        docker_via(
            &sock,
            a,
            &[
                "run",
                "--rm",
                "--network",
                "bobnet",
                "busybox:local",
                "true",
            ],
        ),
        "network-owner",
    );
    refused(
        docker_via(&sock, a, &["network", "connect", "bobnet", "a1"]),
        "network-owner",
    );
    refused(
        docker_via(
            &sock,
            a,
            &["network", "create", "--subnet", "10.99.0.0/30", "alicesub"],
        ),
        "network",
    );
    // A volume she names is made in her name.
    ok(docker_via(
        &sock,
        a,
        &["run", "--rm", "-v", "alicevol:/v", "busybox:local", "true"],
    ));
    let owner = d.ok(&[
        "volume",
        "inspect",
        "-f",
        "{{index .Labels \"ds01.user\"}}",
        "alicevol",
    ]);
    assert_eq!(owner.trim(), alice.0);

    // docker cp through a bind whose source became a link to the host:
    // dockerd would mount it again by path, as root. Refused.
    let x = format!("/home/{}/x", alice.0);
    std::fs::create_dir_all(&x).unwrap();
    let bind = format!("{x}:/x");
    ok(docker_via(
        &sock,
        a,
        &[
            "create",
            "--name",
            "a3",
            "-v",
            &bind,
            "busybox:local",
            "true",
        ],
    ));
    std::fs::remove_dir(&x).unwrap();
    std::os::unix::fs::symlink(d.env.dir.path(), &x).unwrap();
    let out = docker_via(
        &sock,
        a,
        &[
            "cp",
            &format!("a3:/x/{}", secret.file_name().unwrap().to_str().unwrap()),
            "-",
        ],
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("root only"));
    refused(out, "archive-bind");
    // A form body would say the query again to dockerd (filters= empty:
    // everyone's volumes).
    let (code, out) = {
        let o = Command::new("runuser")
            .args([
                "-u",
                &alice.0,
                "--",
                "curl",
                "-s",
                "-w",
                "\n%{http_code}",
                "--unix-socket",
            ])
            .arg(&sock)
            .args([
                "-X",
                "POST",
                "-H",
                "Content-Type: application/x-www-form-urlencoded",
                "--data",
                "filters=",
                "http://d/v1.41/volumes/prune",
            ])
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        let (b, c) = t.rsplit_once('\n').unwrap_or(("", ""));
        (c.trim().to_string(), b.to_string())
    };
    assert_eq!(code, "403", "{out}");
    assert!(d.docker(&["volume", "inspect", "bobs"]).status.success());

    // 8. A privileged exec, even into her own container.
    refused(
        docker_via(&sock, a, &["exec", "--privileged", "a1", "true"]),
        "privileged",
    );

    // 9. Daemon-wide powers.
    refused(docker_via(&sock, a, &["swarm", "init"]), "endpoint");
    refused(docker_via(&sock, a, &["plugin", "ls"]), "endpoint");
    refused(
        docker_via(&sock, a, &["builder", "prune", "-af"]),
        "endpoint",
    );
    ok(docker_via(&sock, a, &["network", "create", "alicenet"]));
    refused(
        docker_via(&sock, a, &["network", "connect", "alicenet", "b1"]),
        "ownership",
    );
    refused(
        docker_via(&sock, b, &["network", "rm", "alicenet"]),
        "network-owner",
    );
    ok(docker_via(&sock, a, &["network", "rm", "alicenet"]));
    let ctx = PathBuf::from(format!("/home/{}/ctx", alice.0));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:local\nRUN true\n").unwrap();
    refused(
        docker_via(
            &sock,
            a,
            &[
                "build",
                "--network",
                "host",
                "-t",
                "a:net",
                ctx.to_str().unwrap(),
            ],
        ),
        "build",
    );

    // 10. Other users' things: commit, prunes, tags, events.
    refused(
        docker_via(&sock, a, &["commit", "b1", "stolen"]),
        "ownership",
    );
    let export_to = format!("/home/{}/b1.tar", alice.0);
    refused(
        docker_via(&sock, a, &["export", "-o", &export_to, "b1"]),
        "ownership",
    );
    let bob_ctx = PathBuf::from(format!("/home/{}/ctx", bob.0));
    std::fs::create_dir_all(&bob_ctx).unwrap();
    std::fs::write(
        bob_ctx.join("Dockerfile"),
        "FROM busybox:local\nRUN echo bob > /who\n",
    )
    .unwrap();
    ok(docker_via(
        &sock,
        b,
        &[
            "build",
            "-q",
            "-t",
            "bobs-app:latest",
            bob_ctx.to_str().unwrap(),
        ],
    ));
    let bobs_image = d.ok(&["image", "inspect", "-f", "{{.Id}}", "bobs-app:latest"]);
    refused(
        docker_via(
            &sock,
            a,
            &[
                "build",
                "-q",
                "-t",
                "bobs-app:latest",
                ctx.to_str().unwrap(),
            ],
        ),
        "image-owner",
    );
    refused(
        docker_via(&sock, a, &["tag", "busybox:local", "bobs-app:latest"]),
        "image-owner",
    );
    refused(
        docker_via(&sock, a, &["commit", "a1", "bobs-app:latest"]),
        "image-owner",
    );
    refused(
        docker_via(&sock, a, &["rmi", "bobs-app:latest"]),
        "image-owner",
    );
    refused(
        docker_via(&sock, a, &["tag", "bobs-app:latest", "busybox:local"]),
        "image-owner",
    );
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", "bobs-app:latest"]),
        bobs_image
    );
    // Her own build carries her name; she may build it again.
    ok(docker_via(
        &sock,
        a,
        &["build", "-q", "-t", "alices-app", ctx.to_str().unwrap()],
    ));
    let owner = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"ds01.user\"}}",
        "alices-app",
    ]);
    assert_eq!(owner.trim(), alice.0);
    ok(docker_via(
        &sock,
        a,
        &["build", "-q", "-t", "alices-app", ctx.to_str().unwrap()],
    ));
    // 4. A build's steps are the builder's, whatever labels the image
    // holds: one that asks for a GPU is allocated as alice's, not bob's.
    let gpu_ctx = PathBuf::from(format!("/home/{}/gpuctx", alice.0));
    std::fs::create_dir_all(&gpu_ctx).unwrap();
    std::fs::write(
        gpu_ctx.join("Dockerfile"),
        format!(
            "FROM busybox:local\nLABEL ds01.user={}\nENV NVIDIA_VISIBLE_DEVICES=all\nRUN true\n",
            bob.0
        ),
    )
    .unwrap();
    ok(docker_via(
        &sock,
        a,
        &["build", "-q", "-t", "alices-gpu", gpu_ctx.to_str().unwrap()],
    ));
    let bobs = events_of(&d, &bob.0);
    assert!(
        bobs.iter().all(|e| e.0 != "allocate"),
        "bob paid for alice's build: {bobs:?}"
    );
    let hers = events_of(&d, &alice.0);
    assert!(
        hers.iter()
            .any(|e| e.0 == "allocate" && e.2 == "cgroup-parent"),
        "{hers:?}"
    );
    // A stopped container of hers, made just now: the prune's own control.
    // Looked up by its full id afterwards: `inspect a4` would also match
    // any other container whose id starts with "a4".
    let a4 = ok(docker_via(
        &sock,
        a,
        &["create", "--name", "a4", "busybox:local", "true"],
    ));
    let a4 = a4.trim();
    assert_eq!(a4.len(), 64, "{a4}");
    let pruned = ok(docker_via(&sock, a, &["container", "prune", "-f"]));
    assert!(
        !d.docker(&["inspect", "--type", "container", a4])
            .status
            .success(),
        "her own were pruned: {pruned}"
    );
    ok(docker_via(&sock, a, &["volume", "prune", "-f"]));
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "b2"]).trim(),
        "created"
    );
    assert!(d.docker(&["volume", "inspect", "bobs"]).status.success());
    // Events: hers only.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    ok(docker_via(&sock, b, &["restart", "-t", "0", "b1"]));
    ok(docker_via(&sock, a, &["restart", "-t", "0", "a1"]));
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let seen = ok(docker_via(
        &sock,
        a,
        &[
            "events",
            "--since",
            &(start - 1).to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            "type=container",
            "--format",
            "{{.Actor.Attributes.name}}",
        ],
    ));
    assert!(seen.lines().any(|l| l == "a1"), "{seen}");
    assert!(!seen.lines().any(|l| l == "b1"), "{seen}");

    // 13-15. No user takes the gate away from another: a cap on each
    // user's connections, a header deadline, a body cap.
    let pid = gate.0.id();
    let idle: Vec<_> = (0..8).map(|_| hold_as(&alice.0, &sock)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let (code, _) = curl_as(&sock, alice_u, "GET", "/_ping", None);
    assert_eq!(code, 429, "alice is over her cap");
    let t = Instant::now();
    ok(docker_via(&sock, b, &["ps"]));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "bob is not kept waiting"
    );
    for mut c in idle {
        let _ = c.kill();
        let _ = c.wait();
    }
    // Half a header, then nothing: closed at the deadline.
    {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let t = Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(
            t.elapsed() < Duration::from_secs(25),
            "the half header was kept open"
        );
    }
    // A body larger than the cap is refused, the gate stays small.
    let big = format!(
        r#"{{"Image":"busybox:local","Env":["X={}"]}}"#,
        "x".repeat(4 << 20)
    );
    let big_file = d.env.path("big.json");
    std::fs::write(&big_file, big).unwrap();
    let out = Command::new("runuser")
        .args([
            "-u",
            &alice.0,
            "--",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(&sock)
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", big_file.display()))
        .arg("http://d/v1.41/containers/create")
        .output()
        .unwrap();
    // (curl may see the refusal, or the gate hanging up on the rest.)
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(code == "400" || code == "000", "{code}");
    assert_eq!(count(), before, "no container was made");
    assert!(
        rss_kib(pid) < 64 * 1024,
        "the gate grew to {} KiB",
        rss_kib(pid)
    );
    for c in ["a1", "a2", "a3", "b1", "b2"] {
        let _ = d.docker(&["rm", "-f", c]);
    }
    let _ = d.docker(&["network", "rm", "bobnet"]);
    let _ = d.docker(&["volume", "rm", "alicevol"]);
    let _ = d.docker(&["rmi", "bobs-app:latest", "alices-app", "alices-gpu"]);
    let _ = d.docker(&["volume", "rm", "bobs"]);
}

/// The second layer: whatever route a container took to dockerd (here the
/// root socket, standing in for a gate bug or a swarm task), ds01-runtime
/// runs nothing a non-admin may not run.
#[test]
fn the_runtime_runs_nothing_a_user_may_not_whatever_the_route() {
    let _g = lock();
    let Some((d, users)) = start_with_users("", &["ra", "rb"]) else {
        return;
    };
    let (alice, bob) = (&users[0], &users[1]);
    let as_user = |u: &str| format!("ds01.user={u}");
    let (la, lb) = (as_user(&alice.0), as_user(&bob.0));
    d.ok(&[
        "run",
        "-d",
        "--name",
        "rb1",
        "--label",
        &lb,
        "busybox:local",
        "sleep",
        "300",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ra1",
        "--label",
        &la,
        "--ipc",
        "shareable",
        "busybox:local",
        "sleep",
        "300",
    ]);
    let secret = d.env.path("runtime-secret");
    std::fs::write(&secret, "root only\n").unwrap();
    let allow_all = allow_all_seccomp(&d);
    let secret_bind = format!("{}:/s", secret.display());
    d.ok(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &format!("device={}", d.env.dir.path().display()),
        "hostdir",
    ]);
    let home = format!("/home/{}", alice.0);
    std::fs::write(format!("{home}/mine"), "hers\n").unwrap();
    let home_bind = format!("{home}:/h");
    let link = format!("{home}/out");
    std::os::unix::fs::symlink(d.env.dir.path(), &link).unwrap();
    let link_bind = format!("{link}:/o");
    for (opts, what) in [
        (&["--cap-add", "SYS_ADMIN"][..], "CAP_SYS_ADMIN"),
        (&["--pid", "host"], "the host's pid namespace"),
        (&["--network", "host"], "the host's network namespace"),
        (&["--uts", "host"], "the host's uts namespace"),
        (&["--pid", "container:rb1"], "the pid namespace of /proc/"),
        (
            &["--network", "container:rb1"],
            "the network namespace of /proc/",
        ),
        (&["-v", &secret_bind], "a bind mount of"),
        (&["-v", &link_bind], "a bind mount of"),
        (&["-v", "hostdir:/x"], "a volume bound to a host path"),
        (&["--device", "/dev/kmsg"], "the device /dev/kmsg"),
        (
            &["--device-cgroup-rule", "b *:* rwm"],
            "the device rule b *:* rwm",
        ),
        (&["--security-opt", "systempaths=unconfined"], "unmasked"),
        (&["--security-opt", &allow_all], "no seccomp filter"),
        (
            &["--security-opt", "seccomp=unconfined"],
            "no seccomp filter",
        ),
        (
            &["--ulimit", "rtprio=99"],
            "the resource limit RLIMIT_RTPRIO",
        ),
    ] {
        let mut args = vec!["run", "--rm", "--label", &la];
        args.extend(opts);
        args.extend([
            "busybox:local",
            "sh",
            "-c",
            "cat /s /o/runtime-secret /x/runtime-secret 2>/dev/null; echo ran",
        ]);
        let out = d.docker(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{opts:?} ran: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("root only"));
        assert!(
            err.contains(&format!("ds01: {} may not run a container with", alice.0))
                && err.contains(what),
            "{opts:?}: {err}"
        );
    }
    // Hers she may: her home, her own container's namespaces.
    let out = d.ok(&[
        "run",
        "--rm",
        "--label",
        &la,
        "-v",
        &home_bind,
        "busybox:local",
        "cat",
        "/h/mine",
    ]);
    assert_eq!(out, "hers\n");
    d.ok(&[
        "run",
        "--rm",
        "--label",
        &la,
        "--pid",
        "container:ra1",
        "--ipc",
        "container:ra1",
        "busybox:local",
        "true",
    ]);
    // A privileged exec into her own container is refused; a plain one runs.
    let out = d.docker(&["exec", "--privileged", "ra1", "true"]);
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("may not run") && said.contains("CAP_"),
        "{said}"
    );
    d.ok(&["exec", "ra1", "true"]);
    // The host's own containers (no owner) and an admin's are theirs to run.
    d.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "-v",
        &secret_bind,
        "busybox:local",
        "cat",
        "/s",
    ]);
    d.ok(&[
        "run",
        "--rm",
        "--label",
        "ds01.user=root",
        "--pid",
        "host",
        "busybox:local",
        "true",
    ]);
    // A label that names no valid user is no way around it.
    let out = d.docker(&[
        "run",
        "--rm",
        "--label",
        "ds01.user=../x",
        "--pid",
        "host",
        "busybox:local",
        "true",
    ]);
    assert!(
        !out.status.success(),
        "an invalid owner ran with the host's pids"
    );
    let events = std::fs::read_to_string(d.env.path("events.jsonl")).unwrap_or_default();
    assert!(
        events.contains("may not run a container with"),
        "refusals are audited"
    );
    let _ = d.docker(&["rm", "-f", "ra1", "rb1"]);
    let _ = d.docker(&["volume", "rm", "hostdir"]);
}

/// Routes 11 and 12 of the gate's threat model: root in a container cannot
/// leave the host a setuid program or a device node through a bind of the
/// owner's home, and a bind source swapped for a link to `/` while the
/// container starts never mounts `/`.
#[test]
fn binds_cannot_hurt_the_host() {
    let _g = lock();
    let Some((d, users)) = start_with_users("", &["pa"]) else {
        return;
    };
    let alice = &users[0];
    let label = format!("ds01.user={}", alice.0);
    let home = PathBuf::from(format!("/home/{}", alice.0));
    let as_alice = |cmd: &str| {
        Command::new("runuser")
            .args(["-u", &alice.0, "--", "sh", "-c", cmd])
            .current_dir("/")
            .output()
            .unwrap()
    };
    // Container root plants a setuid-root busybox and a writable device
    // node in her home (nosuid,nodev, as the harness mounts homes).
    let bind = format!("{}:/h", home.display());
    d.ok(&[
        "run", "--rm", "--label", &label, "-v", &bind, "busybox:local", "sh", "-c",
        "cp /bin/busybox /h/busybox && chown 0:0 /h/busybox && chmod 4755 /h/busybox && mknod /h/k c 1 3 && chmod 666 /h/k",
    ]);
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let planted = std::fs::metadata(home.join("busybox")).unwrap();
    assert_eq!(
        planted.permissions().mode() & 0o4000,
        0o4000,
        "the setuid bit is there"
    );
    assert!(
        std::fs::metadata(home.join("k"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // On the host they give her nothing: the program runs as her, the node
    // does not open.
    let out = as_alice(&format!("{}/busybox id -u", home.display()));
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !uid.is_empty() && uid != "0",
        "the planted program ran as {uid:?}: {out:?}"
    );
    let out = as_alice(&format!("echo x > {}/k", home.display()));
    assert!(!out.status.success(), "the planted node opened");

    // A bind from a filesystem without nosuid,nodev is refused.
    let plain = d.env.path("plain-dir");
    std::fs::create_dir_all(&plain).unwrap();
    let plain_bind = format!("{}:/p", plain.display());
    let toml = std::fs::read_to_string(&d.env.config).unwrap();
    std::fs::write(
        &d.env.config,
        format!("gate_shared_paths = [\"{}\"]\n{toml}", plain.display()),
    )
    .unwrap();
    let out = d.docker(&[
        "run",
        "--rm",
        "--label",
        &label,
        "-v",
        &plain_bind,
        "busybox:local",
        "true",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is not mounted nosuid,nodev"),
        "{err}"
    );

    // The source swapped between a directory and a link to `/` while
    // containers start: none ever sees the host's root.
    let secret = d.env.path("swap-secret");
    std::fs::write(&secret, "root only\n").unwrap();
    let x = home.join("x-dir");
    let l = home.join("x-link");
    std::fs::create_dir(&x).unwrap();
    std::os::unix::fs::symlink("/", &l).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let bind = format!("{}:/x", x.display());
    let inside = format!("cat /x{} 2>/dev/null; true", secret.display());
    let leaked = std::thread::scope(|s| {
        s.spawn(|| {
            let (a, b) = (
                std::ffi::CString::new(x.as_os_str().as_encoded_bytes()).unwrap(),
                std::ffi::CString::new(l.as_os_str().as_encoded_bytes()).unwrap(),
            );
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: a plain syscall on two NUL-terminated paths.
                unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
            }
        });
        let mut leaked = 0;
        for _ in 0..40 {
            let out = d.docker(&[
                "run",
                "--rm",
                "--label",
                &label,
                "-v",
                &bind,
                "busybox:local",
                "sh",
                "-c",
                &inside,
            ]);
            if String::from_utf8_lossy(&out.stdout).contains("root only") {
                leaked += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        leaked
    });
    assert_eq!(leaked, 0, "the swapped link mounted the host's root");
    assert!(
        std::fs::read_dir(d.env.path("state/binds")).map_or(true, |mut r| r.next().is_none()),
        "pins are taken down"
    );
}

/// The differential fuzz: random create bodies (keys in any case or Go's
/// folds, repeated, at the top or nested, unknown fields, escaped paths)
/// sent through the gate as alice. Either the gate refuses, or the
/// container dockerd made (`docker inspect`) holds nothing the gate's
/// rules refuse.
#[test]
fn what_the_gate_lets_through_dockerd_runs_within_the_rules() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let _g = lock();
    let Some((d, users)) = start_with_users("", &["fa", "fb"]) else {
        return;
    };
    let (alice, bob) = (&users[0], &users[1]);
    let (_gate, sock) = gate_for(&d);
    let b = Some(bob.0.as_str());
    assert!(
        docker_via(
            &sock,
            b,
            &["create", "--name", "fzbob", "busybox:local", "true"]
        )
        .status
        .success()
    );
    // (field, a value the rules refuse for a non-admin)
    let fields: Vec<(&str, String)> = vec![
        ("Privileged", "true".into()),
        ("CapAdd", r#"["SYS_ADMIN"]"#.into()),
        ("Binds", r#"["/etc:/h"]"#.into()),
        ("PidMode", r#""host""#.into()),
        ("NetworkMode", r#""host""#.into()),
        ("IpcMode", r#""host""#.into()),
        ("UTSMode", r#""host""#.into()),
        ("UsernsMode", r#""host""#.into()),
        ("Devices", r#"[{"PathOnHost":"/dev/kmsg","PathInContainer":"/dev/kmsg","CgroupPermissions":"rwm"}]"#.into()),
        ("SecurityOpt", r#"["seccomp=unconfined"]"#.into()),
        ("Runtime", r#""runc""#.into()),
        ("CgroupParent", r#""/""#.into()),
        ("MaskedPaths", "[]".into()),
        ("Mounts", r#"[{"Type":"bind","Source":"/etc","Target":"/h"}]"#.into()),
        ("VolumesFrom", r#"["fzbob"]"#.into()),
        ("Labels", format!(r#"{{"ds01.user":"{}"}}"#, bob.0)),
        ("ShmSize", "1048576".into()),
        ("Tmpfs", r#"{"/t":""}"#.into()),
        ("SomethingNew", "1".into()),
        // And what a user may: these alone go through.
        ("Privileged", "false".into()),
        ("CapAdd", "[]".into()),
        ("CapDrop", r#"["NET_RAW"]"#.into()),
        ("NetworkMode", r#""none""#.into()),
        ("ReadonlyRootfs", "true".into()),
        ("Binds", format!(r#"["/home/{}:/h"]"#, alice.0)),
        ("Mounts", format!(r#"[{{"Type":"bind","Source":"/home/{}","Target":"/h"}}]"#, alice.0)),
        ("Labels", r#"{"team":"vision"}"#.into()),
    ];
    let spell = |k: &str, how: u8| -> String {
        match how {
            0 => k.to_string(),
            1 => k.to_ascii_lowercase(),
            2 => k.to_ascii_uppercase(),
            3 => k.replace('s', "\u{17f}").replace('k', "\u{212a}"),
            _ => {
                let mut c = k.chars();
                c.next()
                    .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        }
    };
    let spelling = prop_oneof![4 => Just(0u8), 1 => 1u8..5];
    let place = prop_oneof![4 => Just(0u8), 1 => 1u8..4];
    let strategy = (
        proptest::collection::vec((0..fields.len(), spelling, place), 1..3),
        prop_oneof![4 => Just(false), 1 => Just(true)],
        prop_oneof![3 => Just(0u8), 1 => 1u8..3],
    );
    // A fixed seed: the same 64 bodies each run, so CI never sees a run
    // that happened to try nothing benign.
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    use std::cell::Cell;
    let (n, made, refused) = (Cell::new(0), Cell::new(0), Cell::new(0));
    runner
        .run(&strategy, |(entries, repeat, path_form)| {
            n.set(n.get() + 1);
            let name = format!("fz{}", n.get());
            let mut top = vec![
                r#""Image":"busybox:local""#.to_string(),
                r#""Cmd":["true"]"#.to_string(),
            ];
            let mut hc: Vec<(String, Vec<String>)> = Vec::new();
            for (f, how, place) in &entries {
                let (k, v) = &fields[*f];
                let pair = format!("{:?}:{v}", spell(k, *how));
                let wrapper = match place {
                    0 => "HostConfig",
                    1 => "",
                    2 => "hostconfig",
                    _ => "HOSTCONFIG",
                };
                if wrapper.is_empty() || *k == "Labels" {
                    top.push(pair);
                } else {
                    match hc.iter_mut().find(|(w, _)| w == wrapper) {
                        Some((_, v)) => v.push(pair),
                        None => hc.push((wrapper.to_string(), vec![pair])),
                    }
                }
            }
            if repeat {
                top.push(r#""Labels":{}"#.to_string());
            }
            for (w, pairs) in hc {
                top.push(format!("{w:?}:{{{}}}", pairs.join(",")));
            }
            let body = format!("{{{}}}", top.join(","));
            let path = match path_form {
                0 => format!("/v1.41/containers/create?name={name}"),
                1 => format!("/v1.41/%63ontainers/create?name={name}"),
                _ => format!("/containers/create?name={name}"),
            };
            let (code, out) = curl_as(&sock, &alice.0, "POST", &path, Some(&body));
            if code != 201 {
                prop_assert!(
                    code == 403 || code == 400 || code >= 500,
                    "{code} {out} for {body}"
                );
                prop_assert!(
                    !d.docker(&["inspect", &name]).status.success(),
                    "refused, yet made: {body}"
                );
                refused.set(refused.get() + 1);
                return Ok(());
            }
            made.set(made.get() + 1);
            let v: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", &name])).unwrap();
            let c = &v[0];
            let hc = &c["HostConfig"];
            let home = format!("/home/{}", alice.0);
            let within = |src: &str| !src.starts_with('/') || Path::new(src).starts_with(&home);
            prop_assert_eq!(
                c["Config"]["Labels"]["ds01.user"].as_str(),
                Some(alice.0.as_str()),
                "{}",
                body
            );
            prop_assert_ne!(hc["Privileged"].as_bool(), Some(true), "{}", body);
            prop_assert!(
                hc["CapAdd"].as_array().is_none_or(|a| a.is_empty()),
                "{body}"
            );
            prop_assert!(
                hc["Devices"].as_array().is_none_or(|a| a.is_empty()),
                "{body}"
            );
            prop_assert!(
                hc["SecurityOpt"].as_array().is_none_or(|a| a.is_empty()),
                "{body}"
            );
            prop_assert!(
                hc["VolumesFrom"].as_array().is_none_or(|a| a.is_empty()),
                "{body}"
            );
            prop_assert!(
                hc["MaskedPaths"].as_array().is_none_or(|a| !a.is_empty()),
                "{body}"
            );
            // Her parent, whatever the body asked.
            let parent = format!("/ds01/{}", alice.0);
            prop_assert_eq!(
                hc["CgroupParent"].as_str(),
                Some(parent.as_str()),
                "{}",
                body
            );
            prop_assert_ne!(hc["Runtime"].as_str(), Some("runc"), "{}", body);
            for k in ["PidMode", "NetworkMode", "IpcMode", "UTSMode", "UsernsMode"] {
                prop_assert_ne!(hc[k].as_str(), Some("host"), "{} {}", k, body);
            }
            for b in hc["Binds"].as_array().into_iter().flatten() {
                let src = b.as_str().unwrap_or("").split(':').next().unwrap_or("");
                prop_assert!(within(src), "{src} in {body}");
            }
            for m in hc["Mounts"].as_array().into_iter().flatten() {
                prop_assert!(within(m["Source"].as_str().unwrap_or("")), "{body}");
            }
            d.ok(&["rm", "-f", &name]);
            Ok(())
        })
        .unwrap();
    let (made, refused) = (made.get(), refused.get());
    eprintln!("differential fuzz: {made} made within the rules, {refused} refused");
    assert!(
        made > 0,
        "no benign body went through: the fuzz tried nothing"
    );
    let _ = d.docker(&["rm", "-f", "fzbob"]);
}

/// `container deploy`, attach and retire, as a user through the gate: the
/// CLI's requests (a build, a create with the home and project bound, a
/// GPU) all pass both layers.
#[test]
fn container_deploy_works_through_the_gate() {
    let _g = lock();
    let Some((d, _catalog)) = start_with_catalog(&["sm_80", "sm_90"]) else {
        return;
    };
    if !Path::new("/usr/sbin/useradd").exists() {
        skip("docker", "useradd is not installed");
        return;
    }
    let Some(alice) = TempUser::new("da") else {
        panic!("cannot create a test user");
    };
    let (_gate, sock) = gate_for(&d);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(d.env.path("state")).unwrap();
        std::fs::set_permissions(d.env.path("state"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let proj = PathBuf::from(format!("/home/{}/thesis", alice.0));
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(
        proj.join("Dockerfile"),
        "FROM busybox:local\nRUN echo built > /built\n",
    )
    .unwrap();
    Command::new("chown")
        .args(["-R", &format!("{0}:{0}", alice.0)])
        .arg(&proj)
        .status()
        .unwrap();
    let ds01 = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", &alice.0, "--"])
            .arg(cli_bin())
            .args(args)
            .current_dir(&proj)
            .env("DS01_CONFIG", &d.env.config)
            .env("NO_COLOR", "1")
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(d.env.path("gate.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = ok(ds01(&["container", "deploy", "thesis"]));
    assert!(out.contains("thesis is running with MIG"), "{out}");
    let out = ok(ds01(&[
        "container",
        "attach",
        "thesis",
        "--",
        "sh",
        "-c",
        "cat /built; pwd",
    ]));
    assert!(
        out.starts_with("built\n") && out.contains(&proj.display().to_string()),
        "{out}"
    );
    ok(ds01(&["container", "retire", "thesis", "--force"]));
    d.expect_held(0);
}
