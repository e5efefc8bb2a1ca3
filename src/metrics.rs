//! `ds01 metrics`: what ds01 knows, in Prometheus' text format, for
//! node-exporter's textfile collector (no daemon of ds01's own). Label
//! values are escaped as the format asks; no container id is a label, so
//! the series stay as many as devices, users and groups.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use ds01_core::audit::{Event, EventKind};
use ds01_core::idle::Tracks;
use ds01_core::inventory::Inventory;
use ds01_core::ledger::Records;
use ds01_core::policy::{Groups, Policy};

/// What one device does now, where NVML (or the simulated file) says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceUse {
    pub utilization: Option<u32>,
    pub memory_used: Option<u64>,
    /// Compute processes, and how many of them are outside ds01.
    pub processes: Option<(usize, usize)>,
}

/// Everything the series are made from.
pub struct Facts<'a> {
    pub inv: &'a Inventory,
    pub records: &'a Records,
    pub policy: &'a Policy,
    pub groups: &'a dyn Groups,
    /// When each waiter joined the queue.
    pub queue: Vec<SystemTime>,
    pub events: &'a [Event],
    pub tracks: &'a Tracks,
    pub devices: BTreeMap<String, DeviceUse>,
    /// Whether the inventory differs from what the snapshot (and so the
    /// ledger's allocations) was built on, or the ledger holds a device
    /// the inventory lacks.
    pub inventory_changed: bool,
    pub now: SystemTime,
    /// How long gathering took.
    pub took_seconds: f64,
    /// Whether the reaper's pass that gathered them did its work.
    pub pass_ok: Option<bool>,
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Labels, in order, as `{a="x",b="y"}`.
fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The series under one metric name.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, pairs: &[(&str, &str)], value: f64) {
        self.samples.push((labels(pairs), value));
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (l, v) in &self.samples {
            let _ = writeln!(out, "{}{l} {}", self.name, number(*v));
        }
    }
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// What class of refusal a refuse event's reason is: `quota` (over a
/// limit), `none_free` (no device free, or the wait ran out), `policy` (the
/// rules forbid it: privileged, binds, outside the share) or `bad_request`
/// (anything else: a spec or request ds01 cannot read or honour).
pub fn refusal_class(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    // Every phrase has a space or a bracket, which no user or group name
    // has: a name in the reason never changes its class.
    let has = |phrases: &[&str]| phrases.iter().any(|p| r.contains(p));
    if has(&[
        " may use at most ",
        " already runs ",
        " already uses ",
        " may not use a full gpu",
        " may give a container at most ",
    ]) {
        "quota"
    } else if has(&[" free (", "s asked for, ", "waited ", "ledger busy"]) {
        "none_free"
    } else if has(&[
        "only members of ",
        "only an admin",
        " may not run a container with ",
        " runs outside ",
        "unknown owner",
        "owner is unknown",
        " names no valid user",
        "known owners",
    ]) {
        "policy"
    } else {
        "bad_request"
    }
}

/// The group an owner counts in: their first policy group.
fn group_of(policy: &Policy, groups: &dyn Groups, user: &str) -> String {
    policy.groups_of(Some(user), groups).first().map_or_else(
        || ds01_core::share::NO_GROUP.to_string(),
        |g| g.name.clone(),
    )
}

/// The text format of every series.
pub fn render(f: &Facts) -> String {
    let mut fams = Vec::new();

    let mut up = Family::new(
        "ds01_up",
        "gauge",
        "1 when this file was written by a pass that read ds01's state.",
    );
    up.add(&[], 1.0);
    fams.push(up);
    if let Some(ok) = f.pass_ok {
        let mut pass = Family::new(
            "ds01_reap_pass_success",
            "gauge",
            "1 when the reaper's last pass did its work, 0 when it failed (Docker unreadable, the ledger busy).",
        );
        pass.add(&[], if ok { 1.0 } else { 0.0 });
        fams.push(pass);
    }
    let mut took = Family::new(
        "ds01_pass_duration_seconds",
        "gauge",
        "How long gathering these metrics took.",
    );
    took.add(&[], f.took_seconds);
    fams.push(took);
    let mut last = Family::new(
        "ds01_last_pass_timestamp_seconds",
        "gauge",
        "When these metrics were gathered (Unix time).",
    );
    last.add(
        &[],
        f.now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs() as f64),
    );
    fams.push(last);

    // Devices: one series each, allocated or not, to whom.
    let mut dev = Family::new(
        "ds01_device_allocated",
        "gauge",
        "1 when the device is allocated (to user), 0 when free.",
    );
    let mut idle = Family::new(
        "ds01_device_idle_seconds",
        "gauge",
        "How long the device has been held idle, by its holder, as the reaper saw it.",
    );
    let mut util = Family::new(
        "ds01_device_utilization_percent",
        "gauge",
        "A full GPU's utilisation (NVML).",
    );
    let mut mem = Family::new(
        "ds01_device_memory_used_bytes",
        "gauge",
        "Device memory in use (NVML).",
    );
    let mut procs = Family::new(
        "ds01_device_processes",
        "gauge",
        "Compute processes on the device (NVML); outside=\"true\" counts those in no container holding it.",
    );
    for u in f.inv.units() {
        let gpu = u.gpu.index.to_string();
        let profile = u.profile().to_string();
        let kind = if u.mig.is_some() { "mig" } else { "full" };
        let holder = f.records.holder(u.uuid);
        let user = holder
            .map(|r| r.user.as_deref().unwrap_or("unknown"))
            .unwrap_or("");
        let base = [
            ("gpu", gpu.as_str()),
            ("profile", profile.as_str()),
            ("uuid", u.uuid),
            ("kind", kind),
        ];
        let mut with_user = base.to_vec();
        with_user.push(("user", user));
        dev.add(&with_user, if holder.is_some() { 1.0 } else { 0.0 });
        if let Some(r) = holder
            && let Some(since) = crate::reap::track_of(f.tracks, r).and_then(|t| t.idle_since_ms)
        {
            let secs = ds01_core::idle::ms(f.now).saturating_sub(since) as f64 / 1000.0;
            idle.add(&[("uuid", u.uuid), ("user", user)], secs);
        }
        if let Some(d) = f.devices.get(u.uuid) {
            if let Some(p) = d.utilization {
                util.add(&[("uuid", u.uuid)], p as f64);
            }
            if let Some(m) = d.memory_used {
                mem.add(&[("uuid", u.uuid)], m as f64);
            }
            if let Some((all, outside)) = d.processes {
                procs.add(
                    &[("uuid", u.uuid), ("outside", "false")],
                    (all - outside) as f64,
                );
                procs.add(&[("uuid", u.uuid), ("outside", "true")], outside as f64);
            }
        }
    }
    fams.extend([dev, idle, util, mem, procs]);

    // GPU-equivalents held, per user and per group, and each user's limit.
    let mut per_user: BTreeMap<String, f64> = BTreeMap::new();
    for r in &f.records.records {
        *per_user
            .entry(r.user.clone().unwrap_or_else(|| "unknown".into()))
            .or_default() += r.gpueq;
    }
    let mut users: Vec<String> = per_user.keys().cloned().collect();
    users.extend(f.policy.users.iter().map(|(u, _)| u.clone()));
    for g in &f.policy.groups {
        users.extend(g.members.iter().flatten().cloned());
    }
    users.sort();
    users.dedup();
    let mut held_user = Family::new(
        "ds01_user_gpu_equivalents",
        "gauge",
        "GPU-equivalents held, by user.",
    );
    let mut per_group: BTreeMap<String, f64> = BTreeMap::new();
    let mut limit = Family::new(
        "ds01_user_limit_gpu_equivalents",
        "gauge",
        "Each user's max_gpu_equivalents (+Inf: no limit).",
    );
    for u in &users {
        let held = per_user.get(u).copied().unwrap_or(0.0);
        held_user.add(&[("user", u)], held);
        let known = u != "unknown";
        let group = if known {
            group_of(f.policy, f.groups, u)
        } else {
            ds01_core::share::NO_GROUP.to_string()
        };
        *per_group.entry(group).or_default() += held;
        if known {
            let e = f.policy.effective(Some(u), f.groups);
            limit.add(
                &[("user", u)],
                e.max_gpu_equivalents.value.unwrap_or(f64::INFINITY),
            );
        }
    }
    let mut held_group = Family::new(
        "ds01_group_gpu_equivalents",
        "gauge",
        "GPU-equivalents held, by each user's first policy group.",
    );
    for (g, v) in &per_group {
        held_group.add(&[("group", g)], *v);
    }
    fams.extend([held_user, held_group, limit]);

    // The queue.
    let mut qlen = Family::new(
        "ds01_queue_length",
        "gauge",
        "Creates waiting in the GPU queue.",
    );
    qlen.add(&[], f.queue.len() as f64);
    let mut qold = Family::new(
        "ds01_queue_oldest_wait_seconds",
        "gauge",
        "How long the longest waiter has waited (0: none waits).",
    );
    let oldest = f
        .queue
        .iter()
        .filter_map(|t| f.now.duration_since(*t).ok())
        .max()
        .map_or(0.0, |d| d.as_secs_f64());
    qold.add(&[], oldest);
    fams.extend([qlen, qold]);

    // Counters from the audit log.
    let mut counts: BTreeMap<(&'static str, &'static str), f64> = BTreeMap::new();
    for e in f.events {
        let key = match e.event {
            EventKind::Allocate => ("ds01_allocations_total", ""),
            EventKind::Release => ("ds01_releases_total", ""),
            EventKind::Reclaim => ("ds01_reclaims_total", ""),
            EventKind::Bypass => ("ds01_unallocated_admin_containers_total", ""),
            EventKind::Refuse => (
                "ds01_refusals_total",
                refusal_class(e.reason.as_deref().unwrap_or("")),
            ),
            EventKind::Warn => ("ds01_reaper_warnings_total", reaper_reason(e)),
            EventKind::Reap => ("ds01_reaper_stops_total", reaper_reason(e)),
            _ => continue,
        };
        *counts.entry(key).or_default() += 1.0;
    }
    let counter =
        |name: &'static str, help: &'static str, label: Option<(&str, &[&'static str])>| {
            let mut fam = Family::new(name, "counter", help);
            match label {
                None => fam.add(&[], counts.get(&(name, "")).copied().unwrap_or(0.0)),
                Some((k, values)) => {
                    for v in values {
                        fam.add(&[(k, v)], counts.get(&(name, *v)).copied().unwrap_or(0.0));
                    }
                }
            }
            fam
        };
    fams.push(counter(
        "ds01_allocations_total",
        "Allocations, from the audit log.",
        None,
    ));
    fams.push(counter(
        "ds01_refusals_total",
        "Refusals by reason class, from the audit log.",
        Some(("reason", &["quota", "none_free", "policy", "bad_request"])),
    ));
    fams.push(counter(
        "ds01_releases_total",
        "Releases, from the audit log.",
        None,
    ));
    fams.push(counter(
        "ds01_reclaims_total",
        "Allocations reclaimed from dead containers, from the audit log.",
        None,
    ));
    fams.push(counter(
        "ds01_reaper_warnings_total",
        "Warnings the reaper gave, by reason, from the audit log.",
        Some(("reason", &["idle_timeout", "max_runtime"])),
    ));
    fams.push(counter(
        "ds01_reaper_stops_total",
        "Containers the reaper stopped, by reason, from the audit log.",
        Some(("reason", &["idle_timeout", "max_runtime"])),
    ));
    fams.push(counter(
        "ds01_unallocated_admin_containers_total",
        "Admins' containers let through without an allocation (they see every GPU), from the audit log.",
        None,
    ));

    let mut changed = Family::new(
        "ds01_inventory_changed",
        "gauge",
        "1 when the GPUs (a MIG layout) differ from what the allocations were made on.",
    );
    changed.add(&[], if f.inventory_changed { 1.0 } else { 0.0 });
    fams.push(changed);

    let mut out = String::new();
    for fam in &fams {
        fam.write(&mut out);
    }
    out
}

/// Gathers the facts from the host and renders them.
/// `pass_ok`: how the reaper's pass that writes them went (`None`: no
/// pass, `ds01 metrics` by hand).
pub fn collect(cfg: &ds01_core::config::Config, pass_ok: Option<bool>) -> Result<String, String> {
    use ds01_core::host::RealHost;
    use ds01_core::identity::SystemAccounts;
    use ds01_core::ledger::Ledger;
    let started = std::time::Instant::now();
    let now = SystemTime::now();
    let records = Ledger::new(&cfg.state_dir)
        .read()
        .map_err(|e| format!("cannot read the allocations: {e}"))?;
    let snapshot = ds01_core::inventory::snapshot::cached(cfg);
    let fresh = crate::scan::source(cfg).scan().ok();
    let uuids = |inv: &Inventory| {
        let mut u: Vec<String> = inv.units().iter().map(|u| u.uuid.to_string()).collect();
        u.sort();
        u
    };
    let inv = match (fresh, snapshot.as_ref()) {
        (Some(f), _) => f,
        (None, Some(s)) => s.clone(),
        (None, None) => crate::scan::load(cfg).map_err(|e| e.to_string())?,
    };
    let known = uuids(&inv);
    let inventory_changed = snapshot.as_ref().is_some_and(|s| uuids(s) != known)
        || records
            .records
            .iter()
            .flat_map(|r| &r.devices)
            .any(|d| known.binary_search(d).is_err());
    let events = ds01_core::audit::read(&cfg.audit_log).map_err(|e| e.to_string())?;
    // Sanctioned use outside an allocation: admins' containers ds01 let
    // through (they see every GPU), and users with a bare-metal grant.
    let bypass: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| e.event == EventKind::Bypass)
        .map(|e| e.container_id.as_str())
        .collect();
    let granted: Vec<String> = crate::bare_metal::read(&cfg.bare_metal_grants)
        .unwrap_or_default()
        .into_iter()
        .filter(|g| ds01_core::time::parse(&g.until).is_some_and(|t| t > now))
        .map(|g| g.user)
        .collect();
    let activity = crate::scan::activity(cfg);
    let procs = crate::views::device_processes(activity.as_ref(), &inv, &records);
    let devices = inv
        .units()
        .iter()
        .map(|u| {
            // Both counts from the one list, asked once.
            let listed = procs.get(u.uuid).map(|ps| {
                let outside = ps
                    .iter()
                    .filter(|p| p.outside)
                    .filter(|p| {
                        !p.container_id
                            .as_deref()
                            .is_some_and(|c| bypass.contains(c))
                    })
                    .filter(|p| !p.user.as_ref().is_some_and(|u| granted.contains(u)))
                    .count();
                (ps.len(), outside)
            });
            let d = DeviceUse {
                utilization: activity.utilization(u.uuid),
                memory_used: activity.memory_used(u.uuid),
                processes: listed,
            };
            (u.uuid.to_string(), d)
        })
        .collect();
    let queue = ds01_core::queue::live(&cfg.state_dir, &RealHost)
        .into_iter()
        .map(|e| ds01_core::idle::from_ms(e.since_ms))
        .collect();
    let tracks = crate::reap::tracks(&cfg.state_dir);
    let facts = Facts {
        inv: &inv,
        records: &records,
        policy: &cfg.policy,
        groups: &SystemAccounts,
        queue,
        events: &events,
        tracks: &tracks,
        devices,
        inventory_changed,
        now,
        took_seconds: started.elapsed().as_secs_f64(),
        pass_ok,
    };
    Ok(render(&facts))
}

/// Writes the metrics where node-exporter's textfile collector reads
/// them: a temp file in the same directory, renamed, so a scrape never
/// sees half a file.
pub fn write_textfile(path: &std::path::Path, text: &str) -> Result<(), String> {
    let dir = path.parent().unwrap_or(std::path::Path::new("/"));
    if !dir.is_dir() {
        return Err(format!(
            "{}: no such directory; install prometheus-node-exporter, or set metrics_textfile in config.toml",
            dir.display()
        ));
    }
    ds01_core::fsutil::write_atomic(path, text.as_bytes(), 0o644)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `idle_timeout` or `max_runtime`, from a reaper event's reason.
fn reaper_reason(e: &Event) -> &'static str {
    if e.reason
        .as_deref()
        .is_some_and(|r| r.starts_with("max_runtime"))
    {
        "max_runtime"
    } else {
        "idle_timeout"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_refusals_classed() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(labels(&[("user", "x\"y")]), "{user=\"x\\\"y\"}");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.5), "0.5");
        for (reason, class) in [
            (
                "ds01: alice already uses 1.0 of 1.0 GPU-equivalents",
                "quota",
            ),
            (
                "bob may give a container at most 32G of memory (container_memory, defaults); asked for 64G",
                "quota",
            ),
            (
                "no MIG slice free (7 of 7 in use), and no full GPU free",
                "none_free",
            ),
            ("GPU ledger busy", "none_free"),
            (
                "freddy may not use a full GPU (allow_full_gpu = false, defaults)",
                "quota",
            ),
            (
                "frank already runs 2 of 2 GPU containers (defaults)",
                "quota",
            ),
            (
                "3 MIG slices asked for, 1 free (6 of 7 in use)",
                "none_free",
            ),
            (
                "no 2g.20gb MIG slices on this host; profiles here: 1g.10gb",
                "bad_request",
            ),
            (
                "the owner is unknown and GPUs go only to known owners",
                "policy",
            ),
            (
                "this container has device rules ...; only members of ds01-admin may start such containers",
                "policy",
            ),
            (
                "this container runs outside bob's share of the host",
                "policy",
            ),
            ("the spec holds invalid UTF-8", "bad_request"),
        ] {
            assert_eq!(refusal_class(reason), class, "{reason}");
        }
    }
}
