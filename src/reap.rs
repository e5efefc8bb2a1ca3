//! `ds01 reap`: one pass over the GPU containers. Each is sampled (GPU
//! processes on its devices, its cgroup's CPU time), judged by
//! [`ds01_core::idle`], warned ahead of its deadline and stopped at it
//! through Docker, so the usual release frees its devices. What a pass
//! learnt is kept in `<state_dir>/reap.json`; passes take
//! `<state_dir>/reap.lock`, so two at once do each container once.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use ds01_core::activity::{self, Activity};
use ds01_core::audit::{self, Event, EventKind};
use ds01_core::config::Config;
use ds01_core::fsutil;
use ds01_core::idle::{self, Reason, Rules, Sample, Track, Tracks, Verdict, Warning};
use ds01_core::ledger::{Ledger, Record, Records};
use ds01_core::log;
use ds01_core::names::Kind;
use ds01_core::policy::Groups;

use crate::docker::{DockerApi, DockerContainer};

pub const STATE_FILE: &str = "reap.json";
const LOCK_FILE: &str = "reap.lock";
/// The label that asks for no idle timeout (honoured where the owner's
/// limits have `allow_keep_alive = true`).
pub use ds01_core::names::KEEP_ALIVE_LABEL;

/// What a pass did (or, with `--dry-run`, would do) to one container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub container_id: String,
    pub name: String,
    pub user: Option<String>,
    /// `warn`, `stop`, or `skip` (it could not be judged).
    pub action: &'static str,
    pub why: String,
    /// When it will be stopped (a warning).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_at: Option<String>,
}

/// The side effects a pass needs, behind small seams for tests.
pub struct World<'a> {
    pub docker: &'a dyn DockerApi,
    pub activity: &'a dyn Activity,
    pub groups: &'a dyn Groups,
    /// A container's cgroup CPU time in microseconds, by its init pid.
    pub cpu_usec: &'a dyn Fn(u32) -> Option<u64>,
    /// A record's live init pid (`Record::live_init` on the real host).
    pub init_pid: &'a dyn Fn(&Record) -> Option<u32>,
    /// Tells a user something where they look (a notice in their home).
    pub notify: &'a dyn Fn(&str, &str) -> Result<(), String>,
    pub now: SystemTime,
    /// How many devices the inventory has (0: unknown), for high demand.
    pub devices: usize,
}

/// High demand: more than `high_demand_above` of the devices allocated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    pub allocated: usize,
    pub devices: usize,
    /// What idle timeouts are multiplied by.
    pub factor: f64,
}

/// The high demand in effect, if the config asks for the mode and the
/// allocated share of `devices` is above its threshold.
pub fn high_demand(cfg: &Config, records: &Records, devices: usize) -> Option<Demand> {
    let above = cfg.high_demand_above?;
    let allocated: usize = records.records.iter().map(|r| r.devices.len()).sum();
    (devices > 0 && allocated as f64 / devices as f64 > above).then(|| Demand {
        allocated,
        devices,
        factor: cfg.high_demand_factor.unwrap_or(0.5),
    })
}

pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

/// The tracks the last pass kept; none when there are none (or unreadable).
pub fn tracks(state_dir: &Path) -> Tracks {
    fsutil::read_nofollow(&state_path(state_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The track of this record's run: one kept from an earlier run of the
/// same container id (stopped, then started again) is not its.
pub fn track_of<'t>(tracks: &'t Tracks, r: &Record) -> Option<&'t Track> {
    tracks
        .get(&r.container_id)
        .filter(|t| t.alloc_id.as_deref() == Some(r.alloc_id.as_str()))
}

/// What the rules of one container depend on besides the config.
pub struct Of<'a> {
    pub user: Option<&'a str>,
    pub kind: Kind,
    pub keep_alive_label: bool,
    pub demand: Option<Demand>,
}

/// The rules for one container: its owner's limits for its kind (idle
/// timeouts shortened in high demand), the config's warning and CPU
/// threshold, and its keep-alive label where the owner may use it.
pub fn rules_for(cfg: &Config, groups: &dyn Groups, of: &Of) -> Rules {
    let limits = cfg.policy.effective_for(of.user, groups, Some(of.kind));
    let keep_alive_label = of.keep_alive_label;
    let factor = of.demand.map_or(1.0, |d| d.factor);
    Rules {
        idle_timeout: limits.idle_timeout.value.map(|s| s.0.mul_f64(factor)),
        max_runtime: limits.max_runtime.value.map(|s| s.0),
        warning: cfg.reap_warning,
        cpu_percent: cfg.idle_cpu_percent,
        keep_alive: limits.allow_keep_alive.value && keep_alive_label,
    }
}

/// For `container ls`: how long a container has been idle and how long it
/// has left, as the last pass saw it.
pub fn timing(
    cfg: &Config,
    groups: &dyn Groups,
    tracks: &Tracks,
    r: &Record,
    of: &Of,
    now: SystemTime,
) -> (Option<Duration>, Option<Duration>) {
    let Some(track) = track_of(tracks, r) else {
        return (None, None);
    };
    let rules = rules_for(cfg, groups, of);
    let idle = track
        .idle_since_ms
        .map(|s| now.duration_since(idle::from_ms(s)).unwrap_or_default());
    let left = idle::deadline(track, r.since_time().unwrap_or(now), &rules)
        .map(|d| d.duration_since(now).unwrap_or_default());
    (idle, left)
}

/// One pass. With `dry_run` nothing is written, nobody is told, nothing stops.
pub fn pass(cfg: &Config, w: &World, dry_run: bool) -> Result<Vec<Action>, String> {
    let _lock = if dry_run {
        None
    } else {
        Some(lock(&cfg.state_dir)?)
    };
    if !dry_run {
        // Releases the poststop hook marked since the last write reach the
        // logs within a pass, even on a host where no GPU container starts.
        // A busy or full ledger must not stop the pass: the marks wait.
        if let Err(e) = ds01_core::ledger::Ledger::of(cfg).settle() {
            log::append(&cfg.log, "warn", &format!("reap: {e}"));
        }
    }
    let records = Ledger::new(&cfg.state_dir)
        .read()
        .map_err(|e| e.to_string())?;
    if records.records.is_empty() {
        if !dry_run {
            // Saved first: a spell is written once, even if a write fails.
            let before = tracks(&cfg.state_dir);
            save(&cfg.state_dir, &Tracks::new())?;
            note_idle_spells(cfg, &before, &Tracks::new(), w.now);
        }
        return Ok(Vec::new());
    }
    // One list call for every container: what Docker says of each.
    let containers: HashMap<String, DockerContainer> = match w.docker.containers() {
        Ok(list) => list.into_iter().map(|c| (c.id.clone(), c)).collect(),
        Err(e) => {
            let msg =
                format!("reap: cannot read Docker's containers ({e}); nothing stopped this pass");
            log::append(&cfg.log, "warn", &msg);
            return Err(msg);
        }
    };
    let demand = high_demand(cfg, &records, w.devices);
    let before = tracks(&cfg.state_dir);
    let mut after = Tracks::new();
    let mut actions = Vec::new();
    for r in &records.records {
        if after.contains_key(&r.container_id) {
            continue;
        }
        let skip = |why: String| Action {
            container_id: r.container_id.clone(),
            name: String::new(),
            user: r.user.clone(),
            action: "skip",
            why,
            stop_at: None,
        };
        let Some(c) = containers.get(&r.container_id) else {
            // A create in flight, or a container Docker does not run: its
            // state cannot be read, so it is left alone.
            if let Some(t) = before.get(&r.container_id) {
                after.insert(r.container_id.clone(), t.clone());
            }
            continue;
        };
        if c.state != "running" {
            continue;
        }
        let gpu_busy = match activity::busy(w.activity, &r.devices) {
            Ok(b) => b,
            Err(e) => {
                log::append(
                    &cfg.log,
                    "warn",
                    &format!("reap: container {}: {e}; left alone", r.container_id),
                );
                if let Some(t) = before.get(&r.container_id) {
                    after.insert(r.container_id.clone(), t.clone());
                }
                actions.push(skip(e));
                continue;
            }
        };
        let sample = Sample {
            at: w.now,
            gpu_busy,
            cpu_usec: (w.init_pid)(r).and_then(|p| (w.cpu_usec)(p)),
        };
        let keep_alive = c.labels.get(KEEP_ALIVE_LABEL).is_some_and(|v| v == "true");
        let of = Of {
            user: r.user.as_deref(),
            kind: Kind::of(|k| c.labels.contains_key(k)),
            keep_alive_label: keep_alive,
            demand,
        };
        let rules = rules_for(cfg, w.groups, &of);
        let mut track = idle::observe(track_of(&before, r), &sample, rules.cpu_percent);
        track.alloc_id = Some(r.alloc_id.clone());
        track.user = r.user.clone();
        track.devices = r.devices.clone();
        track.gpueq = r.gpueq;
        let started = r.since_time().unwrap_or(w.now);
        match idle::judge(&track, started, w.now, &rules) {
            Verdict::Fine => {}
            Verdict::Warn {
                reason,
                why,
                stop_at,
            } => {
                let stop_text = ds01_core::time::timestamp(stop_at);
                if !dry_run {
                    track.warned = Some(Warning {
                        reason,
                        at_ms: idle::ms(w.now),
                        stop_at_ms: idle::ms(stop_at),
                    });
                    warn(cfg, w, r, &c.name, reason, &why, stop_at);
                }
                actions.push(Action {
                    container_id: r.container_id.clone(),
                    name: c.name.clone(),
                    user: r.user.clone(),
                    action: "warn",
                    why,
                    stop_at: Some(stop_text),
                });
            }
            Verdict::Stop { reason, why } => {
                if !dry_run {
                    match w.docker.stop(&r.container_id) {
                        Ok(()) => {
                            note(
                                cfg,
                                EventKind::Reap,
                                r,
                                &format!("{}: {why}", reason_key(reason)),
                            );
                            log::append(
                                &cfg.log,
                                "info",
                                &format!(
                                    "reap: stopped container {} ({}): {why}",
                                    r.container_id, c.name
                                ),
                            );
                        }
                        Err(e) => {
                            log::append(
                                &cfg.log,
                                "warn",
                                &format!("reap: cannot stop container {}: {e}", r.container_id),
                            );
                        }
                    }
                }
                actions.push(Action {
                    container_id: r.container_id.clone(),
                    name: c.name.clone(),
                    user: r.user.clone(),
                    action: "stop",
                    why,
                    stop_at: None,
                });
            }
        }
        after.insert(r.container_id.clone(), track);
    }
    if !dry_run {
        // Saved first: a spell is written once, even if a write fails.
        save(&cfg.state_dir, &after)?;
        note_idle_spells(cfg, &before, &after, w.now);
    }
    Ok(actions)
}

/// Writes down each idle spell that ended since the last pass (its
/// container became busy, went away, or is a new run): an `idle` event
/// with its length, which `ds01 report` and the metrics read.
fn note_idle_spells(cfg: &Config, before: &Tracks, after: &Tracks, now: SystemTime) {
    for (id, b) in before {
        let Some(since) = b.idle_since_ms else {
            continue;
        };
        let goes_on = after
            .get(id)
            .is_some_and(|a| a.idle_since_ms == Some(since) && a.alloc_id == b.alloc_id);
        if goes_on {
            continue;
        }
        let secs = idle::ms(now).saturating_sub(since) / 1000;
        let event = Event {
            time: ds01_core::time::timestamp(now),
            event: EventKind::Idle,
            user: b.user.clone(),
            identity_source: Default::default(),
            container_id: id.clone(),
            devices: b.devices.clone(),
            gpueq: b.gpueq,
            reason: Some(format!(
                "held idle for {}",
                idle::text(Duration::from_secs(secs))
            )),
            seconds: Some(secs),
            alloc_id: b.alloc_id.clone(),
        };
        if let Err(e) = audit::append(&cfg.audit_log, &event) {
            log::append(&cfg.log, "error", &e.to_string());
        }
    }
}

fn reason_key(r: Reason) -> &'static str {
    match r {
        Reason::IdleTimeout => "idle_timeout",
        Reason::MaxRuntime => "max_runtime",
    }
}

fn warn(
    cfg: &Config,
    w: &World,
    r: &Record,
    name: &str,
    reason: Reason,
    why: &str,
    stop_at: SystemTime,
) {
    let left = stop_at.duration_since(w.now).unwrap_or(Duration::ZERO);
    let text = format!(
        "ds01: your container {} ({}) will be stopped in {} (at {}): {why}. \
         Use it (a GPU process, or CPU work) to keep it, or save your work.",
        if name.is_empty() {
            &r.container_id
        } else {
            name
        },
        short_id(&r.container_id),
        idle::text(left),
        ds01_core::time::timestamp(stop_at),
    );
    note(
        cfg,
        EventKind::Warn,
        r,
        &format!("{}: {why}", reason_key(reason)),
    );
    if let Some(user) = &r.user
        && let Err(e) = (w.notify)(user, &text)
    {
        log::append(
            &cfg.log,
            "warn",
            &format!("reap: cannot leave {user} a notice: {e}"),
        );
    }
    log::append(
        &cfg.log,
        "info",
        &format!("reap: warned about container {}: {why}", r.container_id),
    );
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn note(cfg: &Config, kind: EventKind, r: &Record, why: &str) {
    let event = Event::of(kind, r, Some(why.to_string()));
    if let Err(e) = audit::append(&cfg.audit_log, &event) {
        log::append(&cfg.log, "error", &e.to_string());
    }
}

fn save(state_dir: &Path, tracks: &Tracks) -> Result<(), String> {
    let p = state_path(state_dir);
    let mut data = serde_json::to_vec_pretty(tracks).expect("tracks serialise");
    data.push(b'\n');
    fsutil::write_atomic(&p, &data, 0o644).map_err(|e| format!("cannot write {p:?}: {e}"))
}

/// The pass lock: one pass at a time, so a container is warned once.
fn lock(state_dir: &Path) -> Result<File, String> {
    let p = state_dir.join(LOCK_FILE);
    fsutil::ensure_dir(state_dir).map_err(|e| format!("cannot create {state_dir:?}: {e}"))?;
    let f = fsutil::open_lock(&p).map_err(|e| format!("cannot open {p:?}: {e}"))?;
    f.lock().map_err(|e| format!("cannot lock {p:?}: {e}"))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ds01_core::activity::SimActivity;
    use ds01_core::policy::{Limits, Span};
    use ds01_core::testing::{FakeHost, record};
    use std::cell::RefCell;

    struct FakeDocker {
        list: Result<Vec<DockerContainer>, String>,
        stopped: RefCell<Vec<String>>,
    }

    impl DockerApi for FakeDocker {
        fn containers(&self) -> Result<Vec<DockerContainer>, String> {
            self.list.clone()
        }
        fn stop(&self, id: &str) -> Result<(), String> {
            self.stopped.borrow_mut().push(id.to_string());
            Ok(())
        }
    }

    struct NoGroups;
    impl Groups for NoGroups {
        fn groups_of(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
    }

    /// The world of a pass `secs` after `t0`, with no CPU readings.
    fn world<'a>(
        docker: &'a dyn DockerApi,
        activity: &'a dyn Activity,
        notify: &'a dyn Fn(&str, &str) -> Result<(), String>,
        t0: SystemTime,
        secs: u64,
    ) -> World<'a> {
        World {
            docker,
            activity,
            groups: &NoGroups,
            cpu_usec: &|_| None,
            init_pid: &|r| r.pid,
            notify,
            now: t0 + Duration::from_secs(secs),
            devices: 7,
        }
    }

    fn running(id: &str, labels: &[(&str, &str)]) -> DockerContainer {
        DockerContainer {
            id: id.into(),
            name: format!("n-{id}"),
            image: "busybox".into(),
            state: "running".into(),
            status: "Up".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mounts: vec![],
        }
    }

    /// A config over a temp state dir whose defaults idle out after 60 s,
    /// warning 20 s ahead, with two held containers: c1 on MIG-1, c2 on MIG-2.
    fn setup(dir: &Path) -> Config {
        let mut cfg = Config {
            state_dir: dir.join("state"),
            log: dir.join("runtime.log"),
            audit_log: dir.join("events.jsonl"),
            reap_warning: Duration::from_secs(20),
            ..Config::default()
        };
        cfg.policy.defaults = Limits {
            idle_timeout: Some(Some(Span(Duration::from_secs(60)))),
            allow_keep_alive: Some(true),
            ..Limits::default()
        };
        let host = FakeHost::default();
        Ledger::new(&cfg.state_dir)
            .update(|rs| {
                for (id, dev) in [("c1", "MIG-1"), ("c2", "MIG-2")] {
                    let mut r = record(id, &[dev], &host);
                    r.user = Some("alice".into());
                    rs.records.push(r);
                }
            })
            .unwrap();
        cfg
    }

    #[test]
    fn an_idle_container_is_warned_then_stopped_and_a_busy_one_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let cfg = setup(d.path());
        let activity = SimActivity {
            path: d.path().join("activity.json"),
        };
        std::fs::write(&activity.path, r#"{"MIG-2": {"processes": [4242]}}"#).unwrap();
        let docker = FakeDocker {
            list: Ok(vec![running("c1", &[]), running("c2", &[])]),
            stopped: RefCell::new(vec![]),
        };
        let told = RefCell::new(Vec::<(String, String)>::new());
        let notify = |u: &str, t: &str| {
            told.borrow_mut().push((u.to_string(), t.to_string()));
            Ok(())
        };
        let t0 = SystemTime::now();
        let run = |secs: u64, dry: bool| {
            pass(&cfg, &world(&docker, &activity, &notify, t0, secs), dry).unwrap()
        };
        assert!(run(0, false).is_empty());
        // 45 s idle: within 20 s of its timeout. A dry run says so and does nothing.
        let dry = run(45, true);
        assert_eq!((dry.len(), dry[0].action), (1, "warn"));
        assert!(told.borrow().is_empty());
        let a = run(45, false);
        assert_eq!(
            (a.len(), a[0].container_id.as_str(), a[0].action),
            (1, "c1", "warn")
        );
        assert_eq!(told.borrow()[0].0, "alice");
        assert!(
            told.borrow()[0].1.contains("n-c1")
                && told.borrow()[0].1.contains("will be stopped in")
        );
        // Twice in a row is harmless: warned once.
        assert!(run(46, false).is_empty());
        let a = run(66, false);
        assert_eq!((a[0].container_id.as_str(), a[0].action), ("c1", "stop"));
        assert_eq!(*docker.stopped.borrow(), ["c1"]);
        let audit = std::fs::read_to_string(&cfg.audit_log).unwrap();
        assert!(
            audit.contains("\"event\":\"warn\"") && audit.contains("\"event\":\"reap\""),
            "{audit}"
        );
        assert!(
            !audit.contains("\"container_id\":\"c2\""),
            "c2 computes: {audit}"
        );
        // Started again under the same id: a new allocation, a new run.
        // It gets its full time and a new warning, not the old stop.
        Ledger::new(&cfg.state_dir)
            .update(|rs| {
                let mut old = rs.take(|r| r.container_id == "c1").remove(0);
                old.alloc_id = "c1-2".into();
                rs.records.push(old);
            })
            .unwrap();
        assert!(run(70, false).is_empty(), "a new run starts afresh");
        // The old run's idle spell, 0 s to 70 s, is written down.
        let spells: Vec<(String, Option<u64>)> = audit::read(&cfg.audit_log)
            .unwrap()
            .into_iter()
            .filter(|e| e.event == EventKind::Idle)
            .map(|e| (e.container_id, e.seconds))
            .collect();
        assert_eq!(spells, [("c1".to_string(), Some(70))]);
        assert!(run(105, false).is_empty());
        let a = run(116, false);
        assert_eq!((a[0].container_id.as_str(), a[0].action), ("c1", "warn"));
        assert_eq!(told.borrow().len(), 2, "warned again");
        let a = run(137, false);
        assert_eq!((a[0].container_id.as_str(), a[0].action), ("c1", "stop"));
    }

    #[test]
    fn a_container_busy_on_its_cpus_is_not_idle_though_only_runc_knows_its_init() {
        let d = tempfile::tempdir().unwrap();
        let cfg = setup(d.path());
        let activity = SimActivity {
            path: d.path().join("activity.json"),
        };
        std::fs::write(&activity.path, "{}").unwrap();
        let docker = FakeDocker {
            list: Ok(vec![running("c1", &[]), running("c2", &[])]),
            stopped: RefCell::new(vec![]),
        };
        let notify = |_: &str, _: &str| Ok(());
        // Neither record notes an init (their creates became runc); runc's
        // state names c1's, whose cgroup gains 30 s of CPU between passes.
        let used = std::cell::Cell::new(0u64);
        let cpu = |pid: u32| {
            assert_eq!(pid, 4242);
            used.set(used.get() + 30_000_000);
            Some(used.get())
        };
        let init = |r: &Record| (r.pid.is_none() && r.container_id == "c1").then_some(4242);
        let t0 = SystemTime::now();
        let run = |secs: u64| {
            let mut w = world(&docker, &activity, &notify, t0, secs);
            w.cpu_usec = &cpu;
            w.init_pid = &init;
            pass(&cfg, &w, false).unwrap()
        };
        assert!(run(0).is_empty());
        let a = run(45);
        assert_eq!((a.len(), a[0].container_id.as_str()), (1, "c2"));
        let a = run(66);
        assert_eq!(
            (a.len(), a[0].container_id.as_str(), a[0].action),
            (1, "c2", "stop")
        );
        assert_eq!(*docker.stopped.borrow(), ["c2"]);
    }

    #[test]
    fn a_kind_has_its_own_timeout_and_high_demand_shortens_idle_ones() {
        use ds01_core::names::{COMPOSE_LABEL, DEVCONTAINER_LABEL};
        let d = tempfile::tempdir().unwrap();
        let mut cfg = setup(d.path());
        // Dev containers idle out after 120 s, anything else after 60 s.
        cfg.policy.kinds.push((
            Kind::Devcontainer,
            Limits {
                idle_timeout: Some(Some(Span(Duration::from_secs(120)))),
                ..Limits::default()
            },
        ));
        let activity = SimActivity {
            path: d.path().join("none.json"),
        };
        let docker = FakeDocker {
            list: Ok(vec![
                running("c1", &[(DEVCONTAINER_LABEL, "/home/alice/p")]),
                running("c2", &[(COMPOSE_LABEL, "p")]),
            ]),
            stopped: RefCell::new(vec![]),
        };
        let notify = |_: &str, _: &str| Ok(());
        let t0 = SystemTime::now();
        let run = |cfg: &Config, secs: u64| {
            pass(cfg, &world(&docker, &activity, &notify, t0, secs), false).unwrap()
        };
        let acts = |a: Vec<Action>| -> Vec<(String, &'static str)> {
            a.into_iter().map(|a| (a.container_id, a.action)).collect()
        };
        assert!(run(&cfg, 0).is_empty());
        assert_eq!(acts(run(&cfg, 45)), [("c2".to_string(), "warn")]);
        assert_eq!(
            acts(run(&cfg, 66)),
            [("c2".to_string(), "stop")],
            "the dev container has 120 s"
        );
        // Stopped, its hook releases it.
        Ledger::new(&cfg.state_dir)
            .update(|rs| {
                rs.take(|r| r.container_id == "c2");
            })
            .unwrap();
        assert_eq!(acts(run(&cfg, 99)), []);
        assert_eq!(acts(run(&cfg, 101)), [("c1".to_string(), "warn")]);
        assert_eq!(acts(run(&cfg, 122)), [("c1".to_string(), "stop")]);

        // High demand: 2 of 7 devices allocated is not above 0.5; above
        // 0.2 it is, and a fresh pair of idle containers get half the time.
        let d = tempfile::tempdir().unwrap();
        let mut cfg = setup(d.path());
        cfg.high_demand_above = Some(0.5);
        let records = Ledger::new(&cfg.state_dir).read().unwrap();
        assert_eq!(high_demand(&cfg, &records, 7), None);
        cfg.high_demand_above = Some(0.2);
        assert_eq!(
            high_demand(&cfg, &records, 7),
            Some(Demand {
                allocated: 2,
                devices: 7,
                factor: 0.5
            })
        );
        assert_eq!(
            high_demand(&cfg, &records, 0),
            None,
            "no inventory, no mode"
        );
        let plain = FakeDocker {
            list: Ok(vec![running("c1", &[]), running("c2", &[])]),
            stopped: RefCell::new(vec![]),
        };
        let run =
            |secs: u64| pass(&cfg, &world(&plain, &activity, &notify, t0, secs), false).unwrap();
        assert!(run(0).is_empty());
        let a = run(15);
        assert_eq!((a.len(), a[0].action), (2, "warn"), "30 s instead of 60 s");
        let a = run(36);
        assert_eq!((a.len(), a[0].action), (2, "stop"));
    }

    #[test]
    fn keep_alive_counts_only_where_the_limits_allow_it_and_docker_unread_stops_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = setup(d.path());
        let activity = SimActivity {
            path: d.path().join("none.json"),
        };
        let docker = FakeDocker {
            list: Ok(vec![
                running("c1", &[(KEEP_ALIVE_LABEL, "true")]),
                running("c2", &[]),
            ]),
            stopped: RefCell::new(vec![]),
        };
        let notify = |_: &str, _: &str| Ok(());
        let t0 = SystemTime::now();
        let run = |cfg: &Config, secs: u64| {
            pass(cfg, &world(&docker, &activity, &notify, t0, secs), false)
        };
        run(&cfg, 0).unwrap();
        let a = run(&cfg, 50).unwrap();
        let ids: Vec<&str> = a.iter().map(|a| a.container_id.as_str()).collect();
        assert_eq!(ids, ["c2"], "c1 keeps alive");
        cfg.policy.defaults.allow_keep_alive = Some(false);
        let a = run(&cfg, 51).unwrap();
        assert_eq!(a[0].container_id, "c1", "not allowed: the label is ignored");
        // Docker cannot be read: an error, and nothing is stopped.
        let blind = FakeDocker {
            list: Err("no socket".into()),
            stopped: RefCell::new(vec![]),
        };
        let w = world(&blind, &activity, &notify, t0, 500);
        assert!(pass(&cfg, &w, false).unwrap_err().contains("no socket"));
        assert!(blind.stopped.borrow().is_empty());
    }
}
