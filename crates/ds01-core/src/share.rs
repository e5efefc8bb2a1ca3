//! Each owner's share of the host beyond its GPUs: memory, CPU and
//! processes across all their containers, enforced by the kernel through
//! one cgroup parent per owner (`/ds01/<user>` with Docker's cgroupfs
//! driver, `ds01-<group>-<user>.slice` with its systemd driver).
//!
//! The limits sit on the parent, so when a user is over `memory_max` the
//! kernel reclaims or kills inside that user's parent only.

use std::path::{Path, PathBuf};

use crate::fsutil;
use crate::policy::Effective;

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("cannot write {path:?}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `64G`, `512M`, `1.5G`, `1024K` or bytes (powers of 1024, as Docker's
/// `--memory` reads them).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix(['b', 'B']))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let bad = || format!("{s:?} is not a size such as \"64G\" or \"512M\"");
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let bytes = n * (1u64 << shift) as f64;
    if !(1.0..=(1u64 << 62) as f64).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// A size as config.toml would write it: `64G`, `512M`, `1.25G`; never
/// rounded (a size that is no whole hundredth of a unit is written in a
/// smaller one).
pub fn size_text(n: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        let u = 1u64 << shift;
        if n >= u && (n as u128 * 100).is_multiple_of(u as u128) {
            let s = format!("{:.2}", n as f64 / u as f64);
            let s = s.trim_end_matches('0').trim_end_matches('.');
            return format!("{s}{unit}");
        }
    }
    n.to_string()
}

/// A size as measured, to a tenth of its unit: `210.3M`, for use shown
/// beside a limit.
pub fn size_approx(n: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        let u = 1u64 << shift;
        if n >= u {
            let s = format!("{:.1}", n as f64 / u as f64);
            let s = s.strip_suffix(".0").unwrap_or(&s);
            return format!("{s}{unit}");
        }
    }
    n.to_string()
}

/// CPUs as people write them: `8`, `2.5`, `2.004`.
pub fn cpus_text(n: f64) -> String {
    let s = format!("{n:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// How Docker names cgroups (`--exec-opt native.cgroupdriver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Cgroupfs,
    Systemd,
}

/// The group part of a systemd parent when the owner is in no policy group.
pub const NO_GROUP: &str = "users";

/// systemd reads `-` in a slice name as nesting: `ds01-a-b.slice` would
/// sit inside `ds01-a.slice`, another user's. Escaped, a name is one level.
fn escape(name: &str) -> String {
    name.replace('-', "\\x2d")
}

/// The cgroup parent of `user`'s containers (`group`: the first policy
/// group they are in, which names the systemd slice between).
pub fn parent(driver: Driver, group: &str, user: &str) -> String {
    match driver {
        Driver::Cgroupfs => format!("/ds01/{user}"),
        Driver::Systemd => format!("ds01-{}-{}.slice", escape(group), escape(user)),
    }
}

/// The parent of `user`'s containers under `policy`: the systemd form
/// names their first policy group.
pub fn parent_in(
    policy: &crate::policy::Policy,
    groups: &dyn crate::policy::Groups,
    driver: Driver,
    user: &str,
) -> String {
    let in_groups = policy.groups_of(Some(user), groups);
    let group = in_groups.first().map_or(NO_GROUP, |g| g.name.as_str());
    parent(driver, group, user)
}

/// Has systemd read its units again, where systemd runs (a slice's unit
/// changed); without systemd, nothing to do.
pub fn reload_units() -> Result<(), String> {
    if !Path::new("/run/systemd/system").exists() {
        return Ok(());
    }
    let out = std::process::Command::new("systemctl")
        .arg("daemon-reload")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("systemctl daemon-reload: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "systemctl daemon-reload: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Where a container's `linux.cgroupsPath` puts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Where Docker puts a container given no parent: `/docker/<id>`, or
    /// `system.slice:docker:<id>`; or no path at all (runc's own default).
    Default,
    /// Inside the parent of this user.
    Parent(String),
    /// Anywhere else.
    Other,
}

/// A container id as Docker writes it in a cgroups path.
fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A container's cgroups path as its parent and id: `<parent>/<id>`
/// (cgroupfs) or `<slice>:docker:<id>` (systemd).
fn split(path: &str) -> Option<(&str, &str)> {
    let (parent, id) = match path.split_once(':') {
        Some((slice, rest)) => (slice, rest.strip_prefix("docker:")?),
        None => path.rsplit_once('/')?,
    };
    plain_id(id).then_some((parent, id))
}

/// Reads a cgroups path back to its placement. Only the exact forms
/// Docker writes count: anything else (a longer path, `..`, a slice
/// nested by a raw `-`) is [`Placement::Other`].
pub fn placement(path: Option<&str>) -> Placement {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Placement::Default;
    };
    let Some((parent, _)) = split(path) else {
        return Placement::Other;
    };
    let systemd = path.contains(':');
    if (systemd && parent == "system.slice") || (!systemd && parent == "/docker") {
        return Placement::Default;
    }
    match parent_user(parent) {
        Some(u) if systemd != parent.starts_with('/') => Placement::Parent(u),
        _ => Placement::Other,
    }
}

/// The parent part of a container's cgroups path (see [`split`]).
pub fn parent_part(path: &str) -> Option<&str> {
    split(path).map(|(parent, _)| parent)
}

/// The user a parent names, read strictly: `/ds01/<user>`, or
/// `ds01-<group>-<user>.slice` with any `-` in either name escaped.
pub fn parent_user(parent: &str) -> Option<String> {
    let valid = |u: &str| crate::policy::valid_name(u).then(|| u.to_string());
    if let Some(user) = parent.strip_prefix("/ds01/") {
        return valid(user);
    }
    let inner = parent.strip_prefix("ds01-")?.strip_suffix(".slice")?;
    let (group, user) = inner.split_once('-')?;
    if user.contains('-') {
        return None;
    }
    let unescape = |s: &str| s.replace("\\x2d", "-");
    valid(&unescape(group))?;
    valid(&unescape(user))
}

/// The driver a parent is written for.
pub fn driver_of(parent: &str) -> Driver {
    if parent.starts_with('/') {
        Driver::Cgroupfs
    } else {
        Driver::Systemd
    }
}

/// One owner's share, as the parent carries it; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Share {
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
}

impl Share {
    pub fn of(e: &Effective) -> Share {
        Share {
            memory: e.memory_max.value,
            cpus: e.cpus.value,
            pids: e.pids_max.value,
        }
    }
}

/// One container's memory, CPUs, processes and `/dev/shm`, as asked or
/// as given; `None`: nothing (no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sizing {
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
    pub shm: Option<u64>,
}

/// The per-container limits (`container_memory`, ...) applied to what a
/// container asks: each limit is what a container asking nothing gets
/// (with `fill`; else asking nothing is over the limit) and the most it
/// may ask. `Err`: one line naming the limit and where it comes from.
pub fn fit(user: &str, e: &Effective, asked: Sizing, fill: bool) -> Result<Sizing, String> {
    /// One resource: its limit, what was asked, its key and words.
    struct One<'a, T> {
        limit: &'a crate::policy::Value<Option<T>>,
        asked: Option<T>,
        key: &'a str,
        what: &'a str,
    }
    let check = |r: One<'_, _>, more: &dyn Fn(f64, f64) -> bool, text: &dyn Fn(f64) -> String| {
        let Some(max) = r.limit.value else {
            return Ok(r.asked);
        };
        let over = match r.asked {
            None if fill => return Ok(Some(max)),
            None => "no limit".to_string(),
            Some(a) if more(a, max) => text(a),
            Some(a) => return Ok(Some(a)),
        };
        Err(format!(
            "{user} may give a container at most {}{} ({}, {}); asked for {over}",
            text(max),
            r.what,
            r.key,
            r.limit.from
        ))
    };
    let bytes = |v: &crate::policy::Value<Option<u64>>| crate::policy::Value {
        value: v.value.map(|n| n as f64),
        from: v.from.clone(),
    };
    let exact = |a: f64, max: f64| a > max;
    // A CPU quota is whole microseconds of a period: allow its rounding.
    let near = |a: f64, max: f64| a > max + 1e-5;
    let size = |n: f64| size_text(n as u64);
    let count = |n: f64| (n as u64).to_string();
    let cpus = |n: f64| format!("{} CPUs", cpus_text(n));
    let as_u64 = |v: Option<f64>| v.map(|n| n as u64);
    let memory = check(
        One {
            limit: &bytes(&e.container_memory),
            asked: asked.memory.map(|n| n as f64),
            key: "container_memory",
            what: " of memory",
        },
        &exact,
        &size,
    )?;
    // No container may have more CPUs than its owner's whole share (on
    // cgroup v1 the kernel refuses a child's quota above its parent's):
    // the lower of the two is the container's limit, and only
    // container_cpus fills in what is not asked.
    let share_lower = match (e.cpus.value, e.container_cpus.value) {
        (Some(u), Some(c)) => u < c,
        (Some(_), None) => asked.cpus.is_some(),
        _ => false,
    };
    let (cpu_limit, cpu_key) = if share_lower {
        (&e.cpus, "cpus")
    } else {
        (&e.container_cpus, "container_cpus")
    };
    let cpu = check(
        One {
            limit: cpu_limit,
            asked: asked.cpus,
            key: cpu_key,
            what: "",
        },
        &near,
        &cpus,
    )?;
    let pids = check(
        One {
            limit: &bytes(&e.container_pids),
            asked: asked.pids.map(|n| n as f64),
            key: "container_pids",
            what: " processes",
        },
        &exact,
        &count,
    )?;
    let shm = check(
        One {
            limit: &bytes(&e.container_shm),
            asked: asked.shm.map(|n| n as f64),
            key: "container_shm",
            what: " of /dev/shm",
        },
        &exact,
        &size,
    )?;
    Ok(Sizing {
        memory: as_u64(memory),
        cpus: cpu,
        pids: as_u64(pids),
        shm: as_u64(shm),
    })
}

/// CFS period for CPU quotas, as Docker's `--cpus` uses.
const PERIOD_US: u64 = 100_000;

/// What a parent uses: bytes of memory, CPU time so far, processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    pub memory: Option<u64>,
    pub cpu_usec: Option<u64>,
    pub pids: Option<u64>,
}

/// One file a parent's limits are written to, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub path: PathBuf,
    pub text: String,
    /// A write a later one repeats (an ordering the kernel may refuse).
    pub may_fail: bool,
}

/// The cgroup filesystem (and where systemd units are), a root each so
/// tests write a scratch tree.
#[derive(Debug, Clone)]
pub struct Tree {
    pub root: PathBuf,
    pub units: PathBuf,
}

/// Which cgroup version a tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Tree {
    pub fn real() -> Tree {
        Tree {
            root: PathBuf::from("/sys/fs/cgroup"),
            units: PathBuf::from("/etc/systemd/system"),
        }
    }

    /// v2 has one hierarchy, whose root lists its controllers.
    pub fn version(&self) -> Version {
        if self.root.join("cgroup.controllers").exists() {
            Version::V2
        } else {
            Version::V1
        }
    }

    /// The directories a parent is, relative to a hierarchy's root:
    /// `ds01/alice`, or systemd's nesting of the slice.
    pub fn rel(parent: &str) -> PathBuf {
        match parent.strip_suffix(".slice") {
            Some(name) if !parent.starts_with('/') => {
                // `a-b-c.slice` is `a.slice/a-b.slice/a-b-c.slice`.
                let mut p = PathBuf::new();
                let mut prefix = String::new();
                for part in name.split('-') {
                    if !prefix.is_empty() {
                        prefix.push('-');
                    }
                    prefix.push_str(part);
                    p.push(format!("{prefix}.slice"));
                }
                p
            }
            _ => PathBuf::from(parent.trim_start_matches('/')),
        }
    }

    /// The files that carry `share` on `parent`, in the order written.
    pub fn writes(&self, parent: &str, share: &Share) -> Vec<Write> {
        let rel = Self::rel(parent);
        let w = |path: PathBuf, text: String| Write {
            path,
            text,
            may_fail: false,
        };
        let quota = share.cpus.map(|c| (c * PERIOD_US as f64).round() as u64);
        let mut out = Vec::new();
        match self.version() {
            Version::V1 => {
                let at = |ctl: &str, file: &str| self.root.join(ctl).join(&rel).join(file);
                // Memory and swap together (`memsw`, where the kernel
                // accounts swap) may be no more than memory_max, else swap
                // is a way around it. memsw may never be under the memory
                // limit: written before the limit (raising) and after it
                // (lowering), the one that fits holds.
                let mem = share.memory.map_or("-1".into(), |n| n.to_string());
                let memsw = at("memory", "memory.memsw.limit_in_bytes");
                let swap_accounted = self
                    .root
                    .join("memory/memory.memsw.limit_in_bytes")
                    .exists()
                    || !self.root.join("memory").exists();
                if swap_accounted {
                    out.push(Write {
                        path: memsw.clone(),
                        text: mem.clone(),
                        may_fail: true,
                    });
                }
                out.push(w(at("memory", "memory.limit_in_bytes"), mem.clone()));
                if swap_accounted {
                    out.push(w(memsw, mem));
                }
                out.push(w(at("cpu", "cpu.cfs_period_us"), PERIOD_US.to_string()));
                out.push(w(
                    at("cpu", "cpu.cfs_quota_us"),
                    quota.map_or("-1".into(), |q| q.to_string()),
                ));
                out.push(w(
                    at("pids", "pids.max"),
                    share.pids.map_or("max".into(), |n| n.to_string()),
                ));
            }
            Version::V2 => {
                // Each level above the parent hands its children the
                // controllers, else the parent has no files to write.
                let mut dir = self.root.clone();
                out.push(w(
                    dir.join("cgroup.subtree_control"),
                    "+memory +cpu +pids".into(),
                ));
                for c in rel.components() {
                    dir.push(c);
                    out.push(w(
                        dir.join("cgroup.subtree_control"),
                        "+memory +cpu +pids".into(),
                    ));
                }
                let at = |file: &str| self.root.join(&rel).join(file);
                out.pop();
                out.push(w(
                    at("memory.max"),
                    share.memory.map_or("max".into(), |n| n.to_string()),
                ));
                // No swap beyond memory_max: swap would be a way around it.
                out.push(w(
                    at("memory.swap.max"),
                    share.memory.map_or("max".into(), |_| "0".into()),
                ));
                out.push(w(
                    at("cpu.max"),
                    format!(
                        "{} {PERIOD_US}",
                        quota.map_or("max".into(), |q| q.to_string())
                    ),
                ));
                out.push(w(
                    at("pids.max"),
                    share.pids.map_or("max".into(), |n| n.to_string()),
                ));
            }
        }
        out
    }

    /// A systemd slice's unit, so that systemd, which owns the slice, sets
    /// the same limits whenever it makes it.
    pub fn unit(&self, parent: &str, share: &Share) -> Option<Write> {
        if parent.starts_with('/') {
            return None;
        }
        let text = format!(
            "# Written by ds01 from config.toml (memory_max, cpus, pids_max); ds01 rewrites it.\n\
             [Slice]\nMemoryMax={}\nCPUQuota={}\nTasksMax={}\n",
            share.memory.map_or("infinity".into(), |n| n.to_string()),
            share.cpus.map_or(String::new(), |c| format!(
                "{}%",
                (c * 100.0).round() as u64
            )),
            share.pids.map_or("infinity".into(), |n| n.to_string()),
        );
        Some(Write {
            path: self.units.join(parent),
            text,
            may_fail: false,
        })
    }

    /// What `parent` uses now, where the kernel says; `None` where a file
    /// cannot be read (no parent yet: nothing ran).
    pub fn usage(&self, parent: &str) -> Usage {
        self.usage_at(&Self::rel(parent))
    }

    /// Where a container's cgroup is, relative to a hierarchy's root:
    /// Docker's default place or a ds01 parent, under either driver.
    pub fn container(&self, id: &str) -> Option<PathBuf> {
        if !plain_id(id) {
            return None;
        }
        let base = match self.version() {
            Version::V1 => self.root.join("memory"),
            Version::V2 => self.root.clone(),
        };
        let scope = format!("docker-{id}.scope");
        let mut found = [
            PathBuf::from("docker").join(id),
            PathBuf::from("system.slice").join(&scope),
        ]
        .into_iter()
        .find(|p| base.join(p).is_dir());
        let subdirs = |p: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(base.join(p))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| p.join(e.file_name()))
                .collect()
        };
        if found.is_none() {
            found = subdirs(Path::new("ds01"))
                .into_iter()
                .map(|u| u.join(id))
                .find(|p| base.join(p).is_dir());
        }
        if found.is_none() {
            found = subdirs(Path::new("ds01.slice"))
                .iter()
                .flat_map(|g| subdirs(g))
                .map(|u| u.join(&scope))
                .find(|p| base.join(p).is_dir());
        }
        found
    }

    /// What each cgroup at `rels` uses, with its CPUs over one `over`
    /// (one wait for all of them): `(usage at the end, CPUs)`.
    pub fn sample(&self, rels: &[&Path], over: std::time::Duration) -> Vec<(Usage, Option<f64>)> {
        let first: Vec<Usage> = rels.iter().map(|r| self.usage_at(r)).collect();
        if !rels.is_empty() {
            std::thread::sleep(over);
        }
        rels.iter()
            .zip(first)
            .map(|(r, before)| {
                let now = self.usage_at(r);
                let cpus = before
                    .cpu_usec
                    .zip(now.cpu_usec)
                    .map(|(a, b)| b.saturating_sub(a) as f64 / over.as_micros() as f64);
                (now, cpus)
            })
            .collect()
    }

    /// What the cgroup at `rel` (in each hierarchy) uses now.
    pub fn usage_at(&self, rel: &Path) -> Usage {
        let num =
            |p: PathBuf| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
        match self.version() {
            Version::V1 => Usage {
                memory: num(self
                    .root
                    .join("memory")
                    .join(rel)
                    .join("memory.usage_in_bytes")),
                cpu_usec: num(self.root.join("cpuacct").join(rel).join("cpuacct.usage"))
                    .map(|ns| ns / 1000),
                pids: num(self.root.join("pids").join(rel).join("pids.current")),
            },
            Version::V2 => {
                let at = |f: &str| self.root.join(rel).join(f);
                let cpu = std::fs::read_to_string(at("cpu.stat")).ok().and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|n| n.trim().parse().ok())
                });
                Usage {
                    memory: num(at("memory.current")),
                    cpu_usec: cpu,
                    pids: num(at("pids.current")),
                }
            }
        }
    }

    /// Makes `parent` and writes `share` on it. Every file is tried (a
    /// memory limit under what is used now fails, the others still hold);
    /// the first failure is returned. `Ok(true)`: a systemd unit changed,
    /// so systemd must reload its units.
    pub fn apply(&self, parent: &str, share: &Share) -> Result<bool, ShareError> {
        let mut first = None;
        for w in self.writes(parent, share) {
            let r = w
                .path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&w.path, &w.text));
            if let Err(source) = r
                && !w.may_fail
            {
                first.get_or_insert(ShareError::Write {
                    path: w.path,
                    source,
                });
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        // The unit last: one written is one systemd was told of, so a
        // failure above leaves it to differ, and be reloaded, next time.
        let Some(u) = self.unit(parent, share) else {
            return Ok(false);
        };
        if std::fs::read_to_string(&u.path).ok().as_deref() == Some(u.text.as_str()) {
            return Ok(false);
        }
        std::fs::create_dir_all(&self.units)
            .and_then(|()| fsutil::write_atomic(&u.path, u.text.as_bytes(), 0o644))
            .map_err(|source| ShareError::Write {
                path: u.path.clone(),
                source,
            })?;
        Ok(true)
    }
}

/// Where the parents ds01 made are noted: `<state_dir>/shares/<user>`,
/// holding the parent, so that a pass rewrites each after a config change
/// and a create knows without a look at cgroupfs that its parent is set.
pub fn stamp_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("shares")
}

/// Notes that `user`'s parent carries its limits.
pub fn stamp(state_dir: &Path, user: &str, parent: &str) -> std::io::Result<()> {
    let dir = stamp_dir(state_dir);
    fsutil::ensure_dir(&dir)?;
    fsutil::write_atomic(&dir.join(user), parent.as_bytes(), 0o644)
}

/// Whether `user`'s parent is noted as `parent`.
pub fn stamped(state_dir: &Path, user: &str, parent: &str) -> bool {
    std::fs::read(stamp_dir(state_dir).join(user)).is_ok_and(|b| b == parent.as_bytes())
}

/// Every noted parent: `(user, parent)`.
pub fn stamps(state_dir: &Path) -> Vec<(String, String)> {
    let Ok(rd) = std::fs::read_dir(stamp_dir(state_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = rd
        .flatten()
        .filter_map(|e| {
            let user = e.file_name().into_string().ok()?;
            let parent = std::fs::read_to_string(e.path()).ok()?;
            crate::policy::valid_name(&user).then_some((user, parent))
        })
        .collect();
    out.sort();
    out
}

/// The marker that per-user shares are on: a create of a non-admin's
/// container outside its owner's parent is then refused. The runtime's
/// cheap first look reads only this.
pub fn marker(state_dir: &Path) -> PathBuf {
    state_dir.join("shares.on")
}

/// Writes or removes [`marker`] to match the config.
pub fn mark(state_dir: &Path, on: bool) -> std::io::Result<()> {
    let m = marker(state_dir);
    if on {
        if !m.exists() {
            fsutil::ensure_dir(state_dir)?;
            fsutil::write_atomic(&m, b"", 0o644)?;
        }
        Ok(())
    } else {
        match std::fs::remove_file(&m) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_reads_them_and_print_back() {
        assert_eq!(parse_size("64G"), Ok(64 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "G", "-1G", "1X", "0", "1e9", "none"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(size_text(64 << 30), "64G");
        assert_eq!(size_text(3 << 29), "1.5G");
        assert_eq!(size_text(256 << 20), "256M");
        assert_eq!(size_text(100), "100");
        assert_eq!(size_text(5 << 28), "1.25G");
        assert_eq!(size_text((1 << 30) + 1), "1073741825");
        assert_eq!(size_approx((210 << 20) + (300 << 10)), "210.3M");
        assert_eq!(size_approx(64 << 30), "64G");
        assert_eq!(cpus_text(2.5), "2.5");
        assert_eq!(cpus_text(2.004), "2.004");
        assert_eq!(cpus_text(8.0), "8");
    }

    #[test]
    fn container_limits_fill_what_is_not_asked_and_refuse_more() {
        use crate::policy::{Group, Limits, Policy};
        struct In;
        impl crate::policy::Groups for In {
            fn groups_of(&self, _: &str) -> Vec<String> {
                vec!["students".into()]
            }
        }
        let policy = Policy {
            defaults: Limits {
                container_pids: Some(Some(512)),
                ..Limits::default()
            },
            groups: vec![Group {
                name: "students".into(),
                members: None,
                limits: Limits {
                    container_memory: Some(Some(32 << 30)),
                    container_cpus: Some(Some(2.0)),
                    ..Limits::default()
                },
            }],
            users: Vec::new(),
            kinds: Vec::new(),
        };
        let e = policy.effective(Some("bob"), &In);
        let given = fit("bob", &e, Sizing::default(), true).unwrap();
        assert_eq!(
            given,
            Sizing {
                memory: Some(32 << 30),
                cpus: Some(2.0),
                pids: Some(512),
                shm: None
            }
        );
        let less = Sizing {
            memory: Some(1 << 30),
            cpus: Some(0.5),
            pids: Some(10),
            shm: Some(1 << 30),
        };
        assert_eq!(fit("bob", &e, less, false), Ok(less));
        let more = Sizing {
            memory: Some(64 << 30),
            ..Sizing::default()
        };
        assert_eq!(
            fit("bob", &e, more, true).unwrap_err(),
            "bob may give a container at most 32G of memory (container_memory, group students); asked for 64G"
        );
        let cpus = Sizing {
            cpus: Some(4.0),
            ..less
        };
        assert_eq!(
            fit("bob", &e, cpus, true).unwrap_err(),
            "bob may give a container at most 2 CPUs (container_cpus, group students); asked for 4 CPUs"
        );
        // A quota's rounding is not more.
        let quota = Sizing {
            cpus: Some(200_001.0 / 100_000.0 - 0.000_005),
            ..less
        };
        assert!(fit("bob", &e, quota, false).is_ok());
        // The owner's whole share is a container's limit too, where lower.
        let mut small = policy.clone();
        small.users.push((
            "bob".into(),
            Limits {
                cpus: Some(Some(1.0)),
                ..Limits::default()
            },
        ));
        let e2 = small.effective(Some("bob"), &In);
        assert_eq!(
            fit("bob", &e2, Sizing::default(), true).unwrap().cpus,
            Some(1.0)
        );
        assert_eq!(
            fit(
                "bob",
                &e2,
                Sizing {
                    cpus: Some(1.5),
                    ..less
                },
                true
            )
            .unwrap_err(),
            "bob may give a container at most 1 CPUs (cpus, user bob); asked for 1.5 CPUs"
        );
        assert_eq!(
            fit("bob", &e, Sizing { pids: None, ..less }, false).unwrap_err(),
            "bob may give a container at most 512 processes (container_pids, defaults); asked for no limit"
        );
    }

    #[test]
    fn a_parent_names_its_user_under_each_driver_and_reads_back() {
        assert_eq!(parent(Driver::Cgroupfs, "students", "alice"), "/ds01/alice");
        assert_eq!(
            parent(Driver::Systemd, "students", "al-ice"),
            "ds01-students-al\\x2dice.slice"
        );
        for (path, want) in [
            ("/ds01/alice/0123abc", Placement::Parent("alice".into())),
            (
                "ds01-students-al\\x2dice.slice:docker:0123abc",
                Placement::Parent("al-ice".into()),
            ),
            (
                "ds01-build-bob.slice:docker:1",
                Placement::Parent("bob".into()),
            ),
            ("/docker/0123abc", Placement::Default),
            ("system.slice:docker:0123abc", Placement::Default),
            ("", Placement::Default),
            ("/docker/../ds01x/1", Placement::Other),
            ("/", Placement::Other),
            ("/ds01/../evil/1", Placement::Other),
            ("/ds01/x/alice/1", Placement::Other),
            ("/x/ds01-g-alice.slice/1", Placement::Other),
            ("/ds01-build-alice.slice/1", Placement::Other),
            ("ds01-users-al-ice.slice:docker:1", Placement::Other),
            (
                "ds01-a-alice.slice/../../etc/x.slice:docker:1",
                Placement::Other,
            ),
            ("/ds01/alice:docker:1", Placement::Other),
            ("ds01-a-alice.slice/1", Placement::Other),
            ("/ds01/alice/1/2", Placement::Other),
            ("/ds01/alice/", Placement::Other),
            ("user.slice:docker:1", Placement::Other),
            ("system.slice:crio:1", Placement::Other),
            ("/other/1", Placement::Other),
        ] {
            assert_eq!(placement(Some(path)), want, "{path}");
        }
        assert_eq!(placement(None), Placement::Default);
        assert_eq!(parent_part("/ds01/alice/0123"), Some("/ds01/alice"));
        assert_eq!(
            parent_part("ds01-students-alice.slice:docker:1"),
            Some("ds01-students-alice.slice")
        );
    }

    fn tree(v2: bool) -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cgroup");
        std::fs::create_dir_all(&root).unwrap();
        if v2 {
            std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        }
        let t = Tree {
            root,
            units: dir.path().join("units"),
        };
        (dir, t)
    }

    fn read(t: &Tree, rel: &str) -> String {
        std::fs::read_to_string(t.root.join(rel)).unwrap()
    }

    const SHARE: Share = Share {
        memory: Some(256 << 20),
        cpus: Some(0.5),
        pids: Some(100),
    };

    #[test]
    fn cgroup_v1_files_under_each_driver() {
        let (_d, t) = tree(false);
        assert!(!t.apply("/ds01/alice", &SHARE).unwrap());
        assert_eq!(
            read(&t, "memory/ds01/alice/memory.limit_in_bytes"),
            "268435456"
        );
        assert_eq!(read(&t, "cpu/ds01/alice/cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&t, "cpu/ds01/alice/cpu.cfs_period_us"), "100000");
        assert_eq!(read(&t, "pids/ds01/alice/pids.max"), "100");
        assert!(!t.units.exists(), "no unit for cgroupfs");
        // Unlimited again: the kernel's words for none.
        t.apply("/ds01/alice", &Share::default()).unwrap();
        assert_eq!(read(&t, "memory/ds01/alice/memory.limit_in_bytes"), "-1");
        assert_eq!(read(&t, "cpu/ds01/alice/cpu.cfs_quota_us"), "-1");
        assert_eq!(read(&t, "pids/ds01/alice/pids.max"), "max");

        let slice = parent(Driver::Systemd, "students", "al-ice");
        assert!(t.apply(&slice, &SHARE).unwrap(), "a new unit");
        let dir = "ds01.slice/ds01-students.slice/ds01-students-al\\x2dice.slice";
        assert_eq!(
            read(&t, &format!("memory/{dir}/memory.limit_in_bytes")),
            "268435456"
        );
        assert_eq!(read(&t, &format!("pids/{dir}/pids.max")), "100");
        let unit = std::fs::read_to_string(t.units.join(&slice)).unwrap();
        assert!(
            unit.contains("\nMemoryMax=268435456\nCPUQuota=50%\nTasksMax=100\n"),
            "{unit}"
        );
        assert!(
            !t.apply(&slice, &SHARE).unwrap(),
            "the same unit needs no reload"
        );
        for (f, n) in [
            ("memory/ds01/alice/memory.usage_in_bytes", "1024\n"),
            ("cpuacct/ds01/alice/cpuacct.usage", "5000000\n"),
            ("pids/ds01/alice/pids.current", "3\n"),
        ] {
            std::fs::create_dir_all(t.root.join(f).parent().unwrap()).unwrap();
            std::fs::write(t.root.join(f), n).unwrap();
        }
        assert_eq!(
            t.usage("/ds01/alice"),
            Usage {
                memory: Some(1024),
                cpu_usec: Some(5000),
                pids: Some(3)
            }
        );
        assert_eq!(t.usage("/ds01/nobody"), Usage::default());
        std::fs::create_dir_all(t.root.join("memory/ds01/alice/c0ffee")).unwrap();
        assert_eq!(
            t.container("c0ffee"),
            Some(PathBuf::from("ds01/alice/c0ffee"))
        );
        std::fs::create_dir_all(t.root.join("memory/docker/beef")).unwrap();
        assert_eq!(t.container("beef"), Some(PathBuf::from("docker/beef")));
        assert_eq!(t.container("../x"), None);
        assert_eq!(t.container("nothere"), None);
    }

    #[test]
    fn cgroup_v2_files_under_each_driver() {
        let (_d, t) = tree(true);
        t.apply("/ds01/alice", &SHARE).unwrap();
        assert_eq!(read(&t, "cgroup.subtree_control"), "+memory +cpu +pids");
        assert_eq!(
            read(&t, "ds01/cgroup.subtree_control"),
            "+memory +cpu +pids"
        );
        assert_eq!(read(&t, "ds01/alice/memory.max"), "268435456");
        assert_eq!(read(&t, "ds01/alice/memory.swap.max"), "0");
        assert_eq!(read(&t, "ds01/alice/cpu.max"), "50000 100000");
        assert_eq!(read(&t, "ds01/alice/pids.max"), "100");
        assert!(!t.root.join("ds01/alice/cgroup.subtree_control").exists());
        t.apply("/ds01/alice", &Share::default()).unwrap();
        assert_eq!(read(&t, "ds01/alice/memory.max"), "max");
        assert_eq!(read(&t, "ds01/alice/cpu.max"), "max 100000");

        let slice = parent(Driver::Systemd, "staff", "bob");
        t.apply(&slice, &SHARE).unwrap();
        assert_eq!(
            read(&t, "ds01.slice/ds01-staff.slice/cgroup.subtree_control"),
            "+memory +cpu +pids"
        );
        assert_eq!(
            read(
                &t,
                "ds01.slice/ds01-staff.slice/ds01-staff-bob.slice/memory.max"
            ),
            "268435456"
        );
        assert!(t.units.join("ds01-staff-bob.slice").exists());
        let dir = t.root.join("ds01/alice");
        std::fs::write(dir.join("memory.current"), "2048\n").unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 77\nuser_usec 70\n").unwrap();
        std::fs::write(dir.join("pids.current"), "4\n").unwrap();
        assert_eq!(
            t.usage("/ds01/alice"),
            Usage {
                memory: Some(2048),
                cpu_usec: Some(77),
                pids: Some(4)
            }
        );
    }

    #[test]
    fn stamps_name_each_parent_and_the_marker_follows_the_config() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!stamped(dir.path(), "alice", "/ds01/alice"));
        stamp(dir.path(), "alice", "/ds01/alice").unwrap();
        assert!(stamped(dir.path(), "alice", "/ds01/alice"));
        assert!(!stamped(dir.path(), "alice", "ds01-x-alice.slice"));
        assert_eq!(stamps(dir.path()), [("alice".into(), "/ds01/alice".into())]);
        mark(dir.path(), true).unwrap();
        assert!(marker(dir.path()).exists());
        mark(dir.path(), false).unwrap();
        mark(dir.path(), false).unwrap();
        assert!(!marker(dir.path()).exists());
    }
}
