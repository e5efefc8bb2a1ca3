//! How long the ledger lock is held under contention: 64 GPU creates at
//! once through ds01-runtime (a stand-in runc that only succeeds, so the
//! lock is the contended part), on a simulated inventory of 70 slices.
//! Each hold is measured inside the runtime (`DS01_LOCK_TRACE`), not
//! estimated. Run it as root, as dockerd runs the runtime: the holder's
//! priority ceiling needs it (without, the figures are those of a runtime
//! that may not raise its priority):
//!
//!     cargo build --release --workspace && cargo bench --bench lock [-- ROUNDS]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The runtime, its own crate, built beside the CLI.
fn shim() -> PathBuf {
    let p = Path::new(CLI).with_file_name("ds01-runtime");
    assert!(
        p.exists(),
        "{p:?} is missing: build it first with 'cargo build --release --workspace'"
    );
    p
}
const CLI: &str = env!("CARGO_BIN_EXE_ds01");
const CREATES: usize = 64;

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::Builder::new()
        .prefix("ds01-lock-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let d = dir.path();
    let inv = d.join("inventory.toml");
    std::fs::write(&inv, inventory(10)).unwrap();
    let trace = d.join("holds");
    let mut holds: Vec<u64> = Vec::new();
    for round in 0..rounds {
        let state = d.join(format!("state{round}"));
        let config = d.join(format!("config{round}.toml"));
        std::fs::write(
            &config,
            format!(
                "runc = \"/bin/true\"\nstate_dir = {state:?}\nlog = {:?}\ninventory = {inv:?}\n",
                d.join("runtime.log")
            ),
        )
        .unwrap();
        // As on a host in use: the snapshot and the ledger exist (a missing
        // ledger is rebuilt once, which is not what this measures).
        for args in [["gpus", "refresh"], ["gc", "--json"]] {
            assert!(
                Command::new(CLI)
                    .args(args)
                    .env("DS01_CONFIG", &config)
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let _ = std::fs::remove_file(&trace);
        let children: Vec<_> = (0..CREATES)
            .map(|i| {
                let b = d.join(format!("b{round}-{i}"));
                std::fs::create_dir_all(&b).unwrap();
                std::fs::write(
                    b.join("config.json"),
                    r#"{"ociVersion":"1.0.2","process":{"env":["NVIDIA_VISIBLE_DEVICES=all"]},"linux":{}}"#,
                )
                .unwrap();
                Command::new(shim())
                    .env("DS01_CONFIG", &config)
                    .env("DS01_LOCK_TRACE", &trace)
                    .args(["--root", d.join("root").to_str().unwrap(), "create", "--bundle"])
                    .arg(&b)
                    .arg(format!("c{round}-{i}"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "a create failed");
        }
        holds.extend(
            std::fs::read_to_string(&trace)
                .unwrap()
                .lines()
                .map(|l| l.parse::<u64>().unwrap()),
        );
    }
    holds.sort();
    let over = holds.iter().filter(|h| **h > 2000).count();
    println!("holds over 2 ms: {over} of {}", holds.len());
    let pct = |p: f64| holds[((holds.len() - 1) as f64 * p).round() as usize];
    println!(
        "{rounds} rounds of {CREATES} concurrent GPU creates: {} lock holds; p50 {} us, p99 {} us, max {} us  (target p99 < 2000 us)",
        holds.len(),
        pct(0.5),
        pct(0.99),
        holds[holds.len() - 1]
    );
}

/// `gpus` GPUs of seven 1g.10gb slices each.
fn inventory(gpus: u32) -> String {
    let mut t = String::from("[majors]\nuvm = 511\ncaps = 236\n");
    for g in 0..gpus {
        t += &format!(
            "\n[[gpu]]\nindex = {g}\nuuid = \"GPU-{g:08}\"\nname = \"NVIDIA A100-SXM4-80GB\"\nmemory_mib = 81920\nminor = {g}\nmig = true\nslices = 7\n"
        );
        for s in 0..7 {
            t += &format!(
                "\n[[gpu.instances]]\nuuid = \"MIG-{g:04}-{s:04}\"\nprofile = \"1g.10gb\"\nslices = 1\nmemory_mib = 9856\ngpu_instance = {}\ncompute_instance = 0\n",
                7 + s
            );
        }
    }
    t
}
