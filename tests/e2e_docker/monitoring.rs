//! The metrics through the real tools: the reaper's pass writes the
//! textfile, Debian's node-exporter serves it, Debian's Prometheus scrapes
//! it, and its HTTP API answers with what ds01 holds; every dashboard
//! panel's query runs there, and the alert rules load.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::harness::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET path` on 127.0.0.1:port; the body.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Prometheus' answer to an instant query.
fn query(port: u16, q: &str) -> serde_json::Value {
    let body = get(port, &format!("/api/v1/query?query={}", encode(q)))
        .unwrap_or_else(|| panic!("no answer to {q}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The samples of a query: (labels, value).
fn samples(port: u16, q: &str) -> Vec<(serde_json::Value, f64)> {
    let v = query(port, q);
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let value: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"].clone(), value)
        })
        .collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn prometheus_scrapes_what_ds01_holds_and_every_panel_queries() {
    let _g = lock();
    if !Path::new(PROMETHEUS).exists() || !Path::new(NODE_EXPORTER).exists() {
        if std::env::var("DS01_E2E").as_deref() == Ok("1") {
            panic!("DS01_E2E=1 but prometheus or prometheus-node-exporter is not installed");
        }
        skip(
            "monitoring",
            "prometheus or prometheus-node-exporter is not installed",
        );
        return;
    }
    let textfiles = tempfile::tempdir().unwrap();
    let prom_file = textfiles.path().join("ds01.prom");
    let Some(d) = start(&format!("metrics_textfile = {prom_file:?}\n"), false) else {
        return;
    };
    // GPU containers of two users.
    for (name, user) in [("a1", "alice"), ("b1", "bob")] {
        d.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--label",
            &format!("ds01.user={user}"),
            "-e",
            "NVIDIA_VISIBLE_DEVICES=all",
            "busybox:local",
            "sleep",
            "300",
        ]);
    }
    d.expect_held(2);
    // The reaper's pass writes the textfile.
    let out = d.ds01(&["reap"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&prom_file).expect("the pass wrote no metrics");
    // promtool accepts it.
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // node-exporter serves it; Prometheus scrapes it, with ds01's rules.
    let (np, pp) = (free_port(), free_port());
    let _node = Killed(
        Command::new(NODE_EXPORTER)
            .arg(format!("--web.listen-address=127.0.0.1:{np}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!(
                "--collector.textfile.directory={}",
                textfiles.path().display()
            ))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.env.path("node-exporter.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let prom_dir = tempfile::tempdir().unwrap();
    let config = prom_dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {:?}\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [\"127.0.0.1:{np}\"]\n",
            repo().join("packaging/prometheus/ds01-rules.yml")
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{pp}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.env.path("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = get(pp, &format!("/api/v1/query?query={}", encode("ds01_up")))
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .is_some_and(|v| {
                v["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            });
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped ds01_up: {}",
            std::fs::read_to_string(d.env.path("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // What Prometheus says is what ds01 holds.
    let gpus: serde_json::Value =
        serde_json::from_slice(&d.ds01(&["gpus", "--json"]).stdout).unwrap();
    let devices = gpus["devices"].as_array().unwrap();
    let held: Vec<(&str, &str, f64)> = devices
        .iter()
        .filter(|x| !x["held_by"].is_null())
        .map(|x| {
            (
                x["uuid"].as_str().unwrap(),
                x["held_by"]["user"].as_str().unwrap(),
                x["gpueq"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(held.len(), 2);
    for user in ["alice", "bob"] {
        let want: f64 = held.iter().filter(|h| h.1 == user).map(|h| h.2).sum();
        let got = samples(pp, &format!("ds01_user_gpu_equivalents{{user=\"{user}\"}}"));
        assert_eq!(got.len(), 1, "{user}: {got:?}");
        assert!(
            (got[0].1 - want).abs() < 1e-9,
            "{user}: {} vs {want}",
            got[0].1
        );
    }
    let allocated = samples(pp, "ds01_device_allocated");
    assert_eq!(allocated.len(), devices.len(), "one series per device");
    for (labels, value) in &allocated {
        let uuid = labels["uuid"].as_str().unwrap();
        match held.iter().find(|h| h.0 == uuid) {
            Some((_, user, _)) => {
                assert_eq!((*value, labels["user"].as_str().unwrap()), (1.0, *user));
            }
            None => assert_eq!(*value, 0.0, "{labels}"),
        }
    }
    assert_eq!(samples(pp, "sum(ds01_device_allocated)")[0].1, 2.0);
    assert_eq!(
        samples(pp, "ds01_reap_pass_success")[0].1,
        1.0,
        "the pass did its work"
    );

    // Every panel's query runs (Grafana's own variables filled in).
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("packaging/grafana/ds01.json")).unwrap(),
    )
    .unwrap();
    let mut queried = 0;
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
                .replace("$__interval", "1m");
            let v = query(pp, &expr);
            assert_eq!(
                v["status"], "success",
                "panel {:?}: {expr}: {v}",
                p["title"]
            );
            queried += 1;
        }
    }
    assert!(queried >= 10, "{queried} queries");
    // The rules loaded.
    let rules: serde_json::Value =
        serde_json::from_str(&get(pp, "/api/v1/rules").unwrap()).unwrap();
    let names: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    for c in ["a1", "b1"] {
        d.ok(&["rm", "-f", c]);
    }
}
