//! One `ds01 reap` pass over 200 GPU containers: ds01's own time, with
//! Docker answered in-process (its list call costs what dockerd takes,
//! which is not ds01's), NVML's place taken by a simulated-activity file
//! and the cgroup's by a closure. No root needed:
//!
//!     cargo bench --bench reap [-- ROUNDS]      # default 20 passes

use std::cell::RefCell;
use std::time::{Duration, Instant, SystemTime};

use ds01::docker::{DockerApi, DockerContainer};
use ds01::reap::{World, pass};
use ds01_core::activity::SimActivity;
use ds01_core::config::Config;
use ds01_core::ledger::Ledger;
use ds01_core::policy::{Groups, Limits, Span};
use ds01_core::testing::{FakeHost, record};

const CONTAINERS: usize = 200;

struct Docker(Vec<DockerContainer>, RefCell<usize>);

impl DockerApi for Docker {
    fn containers(&self) -> Result<Vec<DockerContainer>, String> {
        Ok(self.0.clone())
    }
    fn stop(&self, _: &str) -> Result<(), String> {
        *self.1.borrow_mut() += 1;
        Ok(())
    }
}

struct NoGroups;
impl Groups for NoGroups {
    fn groups_of(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        state_dir: dir.path().join("state"),
        log: dir.path().join("runtime.log"),
        audit_log: dir.path().join("events.jsonl"),
        ..Config::default()
    };
    cfg.policy.defaults = Limits {
        idle_timeout: Some(Some(Span(Duration::from_secs(7200)))),
        max_runtime: Some(Some(Span(Duration::from_secs(7 * 86400)))),
        ..Limits::default()
    };
    let host = FakeHost::default();
    let ids: Vec<String> = (0..CONTAINERS).map(|i| format!("{i:064x}")).collect();
    Ledger::new(&cfg.state_dir)
        .update(|rs| {
            for (i, id) in ids.iter().enumerate() {
                let mut r = record(id, &[&format!("MIG-{i}")], &host);
                r.user = Some(format!("user{}", i % 40));
                r.pid = Some(1);
                rs.records.push(r);
            }
        })
        .unwrap();
    // Every third device computes.
    let activity = SimActivity {
        path: dir.path().join("activity.json"),
    };
    let busy: serde_json::Map<String, serde_json::Value> = (0..CONTAINERS)
        .step_by(3)
        .map(|i| {
            (
                format!("MIG-{i}"),
                serde_json::json!({"processes": [1000 + i]}),
            )
        })
        .collect();
    std::fs::write(&activity.path, serde_json::to_vec(&busy).unwrap()).unwrap();
    let docker = Docker(
        ids.iter()
            .map(|id| DockerContainer {
                id: id.clone(),
                name: format!("c-{}", &id[56..]),
                image: "busybox".into(),
                state: "running".into(),
                status: "Up 1 hour".into(),
                labels: Default::default(),
                mounts: vec![],
            })
            .collect(),
        RefCell::new(0),
    );
    let cpu = |_: u32| Some(1_000_000u64);
    let notify = |_: &str, _: &str| Ok(());
    let mut times = Vec::new();
    for round in 0..rounds {
        let w = World {
            docker: &docker,
            activity: &activity,
            groups: &NoGroups,
            cpu_usec: &cpu,
            init_pid: &|r| r.pid,
            notify: &notify,
            now: SystemTime::now() + Duration::from_secs(60 * round as u64),
            devices: 0,
        };
        let t = Instant::now();
        pass(&cfg, &w, false).unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "one reap pass over {CONTAINERS} GPU containers, {rounds} passes: median {:.1} ms, max {:.1} ms  (target < 200 ms)",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
}
