//! Per-user limits: `[defaults]`, `[groups.NAME]` and `[users.NAME]` in
//! config.toml. The most specific value wins: user, then the first group
//! (in file order) the user belongs to that sets it, then defaults.

use serde::Serialize;

/// The limit keys, as written in config.toml.
pub const LIMIT_KEYS: &[&str] = &[
    "max_gpu_equivalents",
    "max_devices_per_container",
    "allow_full_gpu",
    "max_gpu_containers",
    "idle_timeout",
    "max_runtime",
    "allow_keep_alive",
    "memory_max",
    "cpus",
    "pids_max",
    "container_memory",
    "container_cpus",
    "container_pids",
    "container_shm",
];

/// Limits as one section sets them; unset keys fall through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub max_gpu_equivalents: Option<f64>,
    pub max_devices_per_container: Option<u32>,
    pub allow_full_gpu: Option<bool>,
    pub max_gpu_containers: Option<u32>,
    /// `Some(None)`: set to `never`, overriding a less specific value.
    pub idle_timeout: Option<Option<Span>>,
    pub max_runtime: Option<Option<Span>>,
    /// Whether the owner's `ds01.keep-alive=true` label lifts the idle timeout.
    pub allow_keep_alive: Option<bool>,
    /// The owner's share of the host, across all their containers (see
    /// [`crate::share`]); `Some(None)`: `"none"`, overriding.
    pub memory_max: Option<Option<u64>>,
    pub cpus: Option<Option<f64>>,
    pub pids_max: Option<Option<u64>>,
    /// Each container's limit: what it gets asking nothing, the most it
    /// may ask.
    pub container_memory: Option<Option<u64>>,
    pub container_cpus: Option<Option<f64>>,
    pub container_pids: Option<Option<u64>>,
    pub container_shm: Option<Option<u64>>,
}

/// A duration as config.toml writes it (`2h`, `30m`), shown the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub std::time::Duration);

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::idle::text(self.0))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    /// An explicit member list; `None` means the Unix group of that name.
    pub members: Option<Vec<String>>,
    pub limits: Limits,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub defaults: Limits,
    pub groups: Vec<Group>,
    pub users: Vec<(String, Limits)>,
    /// `[kinds.NAME]`: `idle_timeout` and `max_runtime` by kind of
    /// container, over `[defaults]`, under user and group sections.
    pub kinds: Vec<(crate::names::Kind, Limits)>,
}

/// The keys a `[kinds.NAME]` table may set.
pub const KIND_KEYS: &[&str] = &["idle_timeout", "max_runtime"];

/// One limit in effect, and the section that gave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Value<T> {
    pub value: T,
    /// `built-in`, `defaults`, `group NAME` or `user NAME`.
    pub from: String,
}

/// The limits in effect for one user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effective {
    /// `None` means unlimited.
    pub max_gpu_equivalents: Value<Option<f64>>,
    pub max_devices_per_container: Value<Option<u32>>,
    pub allow_full_gpu: Value<bool>,
    pub max_gpu_containers: Value<Option<u32>>,
    /// `None` means never.
    pub idle_timeout: Value<Option<Span>>,
    pub max_runtime: Value<Option<Span>>,
    pub allow_keep_alive: Value<bool>,
    /// `None` means no limit.
    pub memory_max: Value<Option<u64>>,
    pub cpus: Value<Option<f64>>,
    pub pids_max: Value<Option<u64>>,
    pub container_memory: Value<Option<u64>>,
    pub container_cpus: Value<Option<f64>>,
    pub container_pids: Value<Option<u64>>,
    pub container_shm: Value<Option<u64>>,
}

impl Effective {
    /// Whether any per-container limit is set.
    pub fn container_limited(&self) -> bool {
        self.container_memory.value.is_some()
            || self.container_cpus.value.is_some()
            || self.container_pids.value.is_some()
            || self.container_shm.value.is_some()
    }
}

/// Who is in which Unix group; behind a trait so tests need no accounts.
pub trait Groups {
    fn groups_of(&self, user: &str) -> Vec<String>;
}

impl Group {
    pub fn contains(&self, user: &str, unix_groups: &[String]) -> bool {
        match &self.members {
            Some(m) => m.iter().any(|u| u == user),
            None => unix_groups.iter().any(|g| g == &self.name),
        }
    }
}

impl Policy {
    /// The groups of the policy `user` belongs to, in file order.
    pub fn groups_of<'a>(&'a self, user: Option<&str>, groups: &dyn Groups) -> Vec<&'a Group> {
        let Some(user) = user else { return Vec::new() };
        let unix = groups.groups_of(user);
        self.groups
            .iter()
            .filter(|g| g.contains(user, &unix))
            .collect()
    }

    /// Whether `user` is in `admin_group`: its explicit member list
    /// (`[groups.<admin_group>]`), else the Unix group. An unknown owner never is.
    pub fn is_admin(&self, admin_group: &str, user: Option<&str>, groups: &dyn Groups) -> bool {
        let Some(user) = user else {
            return false;
        };
        let unix = groups.groups_of(user);
        match self.groups.iter().find(|g| g.name == admin_group) {
            Some(g) => g.contains(user, &unix),
            None => unix.iter().any(|g| g == admin_group),
        }
    }

    /// May a container whose device rules open NVIDIA devices around the
    /// allocator (`rule`; `wide`: every device, as `--privileged` gives) run
    /// for `user`? Only for an admin; otherwise the reason, for the user.
    pub fn check_privileged(
        &self,
        admin_group: &str,
        user: Option<&str>,
        groups: &dyn Groups,
        rule: &str,
        wide: bool,
    ) -> Result<(), String> {
        if self.is_admin(admin_group, user, groups) {
            return Ok(());
        }
        let what = if wide {
            format!(
                "may open every device (device rule {rule:?}, as --privileged gives), which reaches every GPU"
            )
        } else {
            format!("has device rules that open NVIDIA devices ({rule})")
        };
        Err(format!(
            "this container {what} around the allocator; only members of {admin_group} may start such \
             containers ({} is not); drop --privileged and --device-cgroup-rule, and ask for a GPU with --gpus",
            user.unwrap_or("an unknown owner")
        ))
    }

    /// Resolves each limit for `user` (`None`: an unknown owner, who gets the defaults).
    pub fn effective(&self, user: Option<&str>, groups: &dyn Groups) -> Effective {
        self.effective_for(user, groups, None)
    }

    /// Resolves each limit for `user`'s container of `kind` (`None`: any).
    pub fn effective_for(
        &self,
        user: Option<&str>,
        groups: &dyn Groups,
        kind: Option<crate::names::Kind>,
    ) -> Effective {
        let mut layers: Vec<(String, &Limits)> = Vec::new();
        if let Some(u) = user
            && let Some((_, l)) = self.users.iter().find(|(name, _)| name == u)
        {
            layers.push((format!("user {u}"), l));
        }
        for g in self.groups_of(user, groups) {
            layers.push((format!("group {}", g.name), &g.limits));
        }
        if let Some((k, l)) = kind.and_then(|k| self.kinds.iter().find(|(x, _)| *x == k)) {
            layers.push((format!("kinds.{}", k.as_str()), l));
        }
        layers.push(("defaults".into(), &self.defaults));
        fn pick<T: Clone>(
            layers: &[(String, &Limits)],
            get: impl Fn(&Limits) -> Option<T>,
            builtin: T,
        ) -> Value<T> {
            layers
                .iter()
                .find_map(|(from, l)| {
                    get(l).map(|value| Value {
                        value,
                        from: from.clone(),
                    })
                })
                .unwrap_or(Value {
                    value: builtin,
                    from: "built-in".into(),
                })
        }
        Effective {
            max_gpu_equivalents: pick(&layers, |l| l.max_gpu_equivalents.map(Some), None),
            max_devices_per_container: pick(
                &layers,
                |l| l.max_devices_per_container.map(Some),
                None,
            ),
            allow_full_gpu: pick(&layers, |l| l.allow_full_gpu, false),
            max_gpu_containers: pick(&layers, |l| l.max_gpu_containers.map(Some), None),
            idle_timeout: pick(&layers, |l| l.idle_timeout, None),
            max_runtime: pick(&layers, |l| l.max_runtime, None),
            allow_keep_alive: pick(&layers, |l| l.allow_keep_alive, false),
            memory_max: pick(&layers, |l| l.memory_max, None),
            cpus: pick(&layers, |l| l.cpus, None),
            pids_max: pick(&layers, |l| l.pids_max, None),
            container_memory: pick(&layers, |l| l.container_memory, None),
            container_cpus: pick(&layers, |l| l.container_cpus, None),
            container_pids: pick(&layers, |l| l.container_pids, None),
            container_shm: pick(&layers, |l| l.container_shm, None),
        }
    }

    /// Whether any section sets a share of the host or a container limit:
    /// then every non-admin's container must run in its owner's parent.
    pub fn shares_host(&self) -> bool {
        let sets = |l: &Limits| {
            [l.memory_max, l.pids_max, l.container_memory]
                .iter()
                .chain([l.container_pids, l.container_shm].iter())
                .any(|v| matches!(v, Some(Some(_))))
                || [l.cpus, l.container_cpus]
                    .iter()
                    .any(|v| matches!(v, Some(Some(_))))
        };
        sets(&self.defaults)
            || self.groups.iter().any(|g| sets(&g.limits))
            || self.users.iter().any(|(_, l)| sets(l))
    }
}

/// Parses one limits section; errors are `(key, message)`.
pub fn parse_limits(table: &toml::Table, extra_ok: &[&str]) -> Result<Limits, (String, String)> {
    let mut l = Limits::default();
    for (key, value) in table {
        let bad = |msg: String| (key.clone(), msg);
        let count = || {
            value
                .as_integer()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(format!("must be a whole number, 0 or more, got {value}")))
        };
        match key.as_str() {
            "max_gpu_equivalents" => {
                let n = value
                    .as_float()
                    .or_else(|| value.as_integer().map(|i| i as f64))
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| bad(format!("must be a number of GPU-equivalents, 0 or more (1.0 is a full GPU), got {value}")))?;
                l.max_gpu_equivalents = Some(n);
            }
            "max_devices_per_container" => l.max_devices_per_container = Some(count()?),
            "max_gpu_containers" => l.max_gpu_containers = Some(count()?),
            "idle_timeout" | "max_runtime" => {
                let span = value
                    .as_str()
                    .ok_or_else(|| bad(format!("must be a duration such as \"2h\" or \"30m\", or \"never\", got {value}")))
                    .and_then(|s| crate::idle::parse(s).map_err(bad))?
                    .map(Span);
                if key == "idle_timeout" {
                    l.idle_timeout = Some(span);
                } else {
                    l.max_runtime = Some(span);
                }
            }
            "allow_keep_alive" => {
                l.allow_keep_alive = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| bad(format!("must be true or false, got {value}")))?,
                )
            }
            "allow_full_gpu" => {
                l.allow_full_gpu = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| bad(format!("must be true or false, got {value}")))?,
                )
            }
            "memory_max" | "container_memory" | "container_shm" => {
                let n = none_or(value, |v| {
                    v.as_str().and_then(|s| crate::share::parse_size(s).ok())
                })
                .ok_or_else(|| {
                    bad(format!(
                        "must be a size such as \"64G\" or \"512M\", or \"none\", got {value}"
                    ))
                })?;
                match key.as_str() {
                    "memory_max" => l.memory_max = Some(n),
                    "container_memory" => l.container_memory = Some(n),
                    _ => l.container_shm = Some(n),
                }
            }
            "cpus" | "container_cpus" => {
                let n = none_or(value, |v| {
                    v.as_float()
                        .or_else(|| v.as_integer().map(|i| i as f64))
                        .filter(|n| n.is_finite() && *n >= 0.01 && *n <= 100_000.0)
                })
                .ok_or_else(|| {
                    bad(format!(
                        "must be a number of CPUs such as 8 or 2.5 (0.01 or more), or \"none\", got {value}"
                    ))
                })?;
                if key == "cpus" {
                    l.cpus = Some(n);
                } else {
                    l.container_cpus = Some(n);
                }
            }
            "pids_max" | "container_pids" => {
                let n = none_or(value, |v| {
                    v.as_integer()
                        .and_then(|n| u64::try_from(n).ok())
                        .filter(|n| *n >= 1)
                })
                .ok_or_else(|| {
                    bad(format!(
                        "must be a whole number of processes, 1 or more, or \"none\", got {value}"
                    ))
                })?;
                if key == "pids_max" {
                    l.pids_max = Some(n);
                } else {
                    l.container_pids = Some(n);
                }
            }
            k if extra_ok.contains(&k) => {}
            _ => {
                let mut allowed: Vec<&str> = LIMIT_KEYS.to_vec();
                allowed.extend(extra_ok);
                return Err(bad(format!(
                    "unknown key; allowed here: {}",
                    allowed.join(", ")
                )));
            }
        }
    }
    Ok(l)
}

/// `"none"` as `Some(None)`, else what `read` makes of the value.
fn none_or<T>(value: &toml::Value, read: impl Fn(&toml::Value) -> Option<T>) -> Option<Option<T>> {
    if value.as_str() == Some("none") {
        return Some(None);
    }
    read(value).map(Some)
}

/// A user or group name as found in a label or a path: something
/// `useradd` would accept, so that no path or markup rides along.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name != "."
        && name != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeGroups(Vec<(&'static str, &'static str)>);

    impl Groups for FakeGroups {
        fn groups_of(&self, user: &str) -> Vec<String> {
            self.0
                .iter()
                .filter(|(u, _)| *u == user)
                .map(|(_, g)| g.to_string())
                .collect()
        }
    }

    fn limits(eq: Option<f64>, full: Option<bool>, containers: Option<u32>) -> Limits {
        Limits {
            max_gpu_equivalents: eq,
            max_devices_per_container: None,
            allow_full_gpu: full,
            max_gpu_containers: containers,
            ..Limits::default()
        }
    }

    fn policy() -> Policy {
        Policy {
            defaults: limits(Some(0.5), Some(false), Some(2)),
            groups: vec![
                Group {
                    name: "staff".into(),
                    members: None,
                    limits: limits(Some(2.0), Some(true), None),
                },
                Group {
                    name: "students".into(),
                    members: Some(vec!["carol".into(), "dave".into()]),
                    limits: limits(Some(0.3), None, Some(1)),
                },
            ],
            users: vec![("alice".into(), limits(Some(1.0), None, None))],
            kinds: vec![],
        }
    }

    #[test]
    fn idle_timeout_and_max_runtime_resolve_like_the_others_and_never_overrides() {
        let t: toml::Table = toml::from_str(
            "idle_timeout = \"2h\"\nmax_runtime = \"never\"\nallow_keep_alive = true",
        )
        .unwrap();
        let l = parse_limits(&t, &[]).unwrap();
        let two_h = Span(std::time::Duration::from_secs(7200));
        assert_eq!(
            (l.idle_timeout, l.max_runtime, l.allow_keep_alive),
            (Some(Some(two_h)), Some(None), Some(true))
        );
        let p = Policy {
            defaults: Limits {
                idle_timeout: Some(Some(two_h)),
                max_runtime: Some(Some(two_h)),
                ..Limits::default()
            },
            groups: vec![],
            users: vec![("alice".into(), l)],
            kinds: vec![],
        };
        let none = FakeGroups(vec![]);
        let alice = p.effective(Some("alice"), &none);
        assert_eq!(
            (alice.idle_timeout.value, alice.idle_timeout.from.as_str()),
            (Some(two_h), "user alice")
        );
        assert_eq!(
            (alice.max_runtime.value, alice.max_runtime.from.as_str()),
            (None, "user alice")
        );
        let bob = p.effective(Some("bob"), &none);
        assert_eq!(
            (bob.max_runtime.value, bob.allow_keep_alive.value),
            (Some(two_h), false)
        );
        assert_eq!(
            serde_json::to_value(&bob.idle_timeout).unwrap()["value"],
            "2h"
        );
        let t: toml::Table = toml::from_str("idle_timeout = \"soon\"").unwrap();
        let (k, m) = parse_limits(&t, &[]).unwrap_err();
        assert!(k == "idle_timeout" && m.contains("\"30m\""), "{m}");
    }

    #[test]
    fn admins_come_from_the_group_s_member_list_else_the_unix_group() {
        let groups = FakeGroups(vec![("alice", "staff"), ("carol", "students")]);
        let p = policy();
        // No [groups.staff] members list: the Unix group decides.
        assert!(p.is_admin("staff", Some("alice"), &groups));
        assert!(!p.is_admin("staff", Some("bob"), &groups));
        // A members list overrides the Unix group: dave is listed, not in it.
        assert!(p.is_admin("students", Some("dave"), &groups));
        assert!(p.is_admin("students", Some("carol"), &groups));
        assert!(!p.is_admin("students", None, &groups));
        assert!(
            p.check_privileged("staff", Some("alice"), &groups, "a *:* rwm", true)
                .is_ok()
        );
        let why = p
            .check_privileged("staff", Some("bob"), &groups, "a *:* rwm", true)
            .unwrap_err();
        assert!(
            why.contains("every GPU") && why.contains("only members of staff"),
            "{why}"
        );
        assert!(why.contains("(bob is not)"), "{why}");
        let why = p
            .check_privileged("staff", None, &groups, "c 195:* rw", false)
            .unwrap_err();
        assert!(
            why.contains("(c 195:* rw)") && why.contains("an unknown owner"),
            "{why}"
        );
    }

    #[test]
    fn most_specific_value_wins_and_says_where_from() {
        let groups = FakeGroups(vec![
            ("alice", "staff"),
            ("bob", "staff"),
            ("dave", "staff"),
        ]);
        let p = policy();
        // (user, max gpueq and its source, full gpu and source, containers and source)
        type Row<'a> = (
            Option<&'a str>,
            (Option<f64>, &'a str),
            (bool, &'a str),
            (Option<u32>, &'a str),
        );
        let table: &[Row] = &[
            (
                Some("alice"),
                (Some(1.0), "user alice"),
                (true, "group staff"),
                (Some(2), "defaults"),
            ),
            (
                Some("bob"),
                (Some(2.0), "group staff"),
                (true, "group staff"),
                (Some(2), "defaults"),
            ),
            (
                Some("carol"),
                (Some(0.3), "group students"),
                (false, "defaults"),
                (Some(1), "group students"),
            ),
            // In two groups: the first in file order that sets a key.
            (
                Some("dave"),
                (Some(2.0), "group staff"),
                (true, "group staff"),
                (Some(1), "group students"),
            ),
            (
                Some("erin"),
                (Some(0.5), "defaults"),
                (false, "defaults"),
                (Some(2), "defaults"),
            ),
            (
                None,
                (Some(0.5), "defaults"),
                (false, "defaults"),
                (Some(2), "defaults"),
            ),
        ];
        for (user, eq, full, containers) in table {
            let e = p.effective(*user, &groups);
            assert_eq!(
                (
                    e.max_gpu_equivalents.value,
                    e.max_gpu_equivalents.from.as_str()
                ),
                *eq,
                "{user:?}"
            );
            assert_eq!(
                (e.allow_full_gpu.value, e.allow_full_gpu.from.as_str()),
                *full,
                "{user:?}"
            );
            assert_eq!(
                (
                    e.max_gpu_containers.value,
                    e.max_gpu_containers.from.as_str()
                ),
                *containers,
                "{user:?}"
            );
            assert_eq!(e.max_devices_per_container.from, "built-in");
        }
    }

    #[test]
    fn nothing_configured_means_unlimited_mig_only() {
        let e = Policy::default().effective(Some("x"), &FakeGroups(vec![]));
        assert_eq!(e.max_gpu_equivalents.value, None);
        assert_eq!(e.max_gpu_containers.value, None);
        assert!(!e.allow_full_gpu.value);
    }

    #[test]
    fn limits_sections_are_checked() {
        let t = |s: &str| parse_limits(&s.parse::<toml::Table>().unwrap(), &["members"]);
        assert_eq!(
            t("max_gpu_equivalents = 1").unwrap().max_gpu_equivalents,
            Some(1.0)
        );
        assert_eq!(
            t("max_gpu_equivalents = 0.25").unwrap().max_gpu_equivalents,
            Some(0.25)
        );
        assert!(
            t("max_gpu_equivalents = -1")
                .unwrap_err()
                .1
                .contains("0 or more")
        );
        assert!(
            t("max_gpu_containers = 1.5")
                .unwrap_err()
                .1
                .contains("whole number")
        );
        let (key, msg) = t("max_gpus = 1").unwrap_err();
        assert_eq!(key, "max_gpus");
        assert!(msg.contains("max_gpu_equivalents, max_devices_per_container, allow_full_gpu, max_gpu_containers, idle_timeout, max_runtime, allow_keep_alive, memory_max, cpus, pids_max, container_memory, container_cpus, container_pids, container_shm, members"), "{msg}");
        let l = t("memory_max = \"64G\"\ncpus = 2.5\npids_max = 100\ncontainer_memory = \"none\"\ncontainer_cpus = 1\ncontainer_pids = 10\ncontainer_shm = \"512M\"").unwrap();
        assert_eq!(l.memory_max, Some(Some(64 << 30)));
        assert_eq!(l.cpus, Some(Some(2.5)));
        assert_eq!(l.pids_max, Some(Some(100)));
        assert_eq!(l.container_memory, Some(None));
        assert_eq!(l.container_cpus, Some(Some(1.0)));
        assert_eq!(l.container_pids, Some(Some(10)));
        assert_eq!(l.container_shm, Some(Some(512 << 20)));
        for (bad, says) in [
            ("memory_max = 64", "must be a size such as \"64G\""),
            ("memory_max = \"64Q\"", "must be a size"),
            ("cpus = 0", "number of CPUs"),
            ("cpus = \"8\"", "number of CPUs"),
            ("pids_max = 0", "whole number of processes"),
            ("container_shm = true", "must be a size"),
        ] {
            let (_, msg) = t(bad).unwrap_err();
            assert!(msg.contains(says), "{bad}: {msg}");
        }
    }

    #[test]
    fn a_kind_s_timeouts_sit_between_the_owner_s_sections_and_the_defaults() {
        use crate::names::Kind;
        let span = |s| Some(Some(Span(std::time::Duration::from_secs(s))));
        let p = Policy {
            defaults: Limits {
                idle_timeout: span(3600),
                max_runtime: span(86400),
                ..Limits::default()
            },
            kinds: vec![(
                Kind::Devcontainer,
                Limits {
                    idle_timeout: span(7200),
                    ..Limits::default()
                },
            )],
            users: vec![(
                "carol".into(),
                Limits {
                    idle_timeout: span(60),
                    ..Limits::default()
                },
            )],
            ..Policy::default()
        };
        let g = FakeGroups(vec![]);
        let dev = p.effective_for(Some("bob"), &g, Some(Kind::Devcontainer));
        assert_eq!(dev.idle_timeout.from, "kinds.devcontainer");
        assert_eq!(dev.max_runtime.from, "defaults");
        let plain = p.effective_for(Some("bob"), &g, Some(Kind::Docker));
        assert_eq!(plain.idle_timeout.from, "defaults");
        let carol = p.effective_for(Some("carol"), &g, Some(Kind::Devcontainer));
        assert_eq!(carol.idle_timeout.from, "user carol");
    }

    #[test]
    fn a_share_set_anywhere_turns_placement_on() {
        let mut p = Policy::default();
        assert!(!p.shares_host());
        p.users.push((
            "bob".into(),
            Limits {
                memory_max: Some(None),
                ..Limits::default()
            },
        ));
        assert!(!p.shares_host(), "\"none\" sets no share");
        p.groups.push(Group {
            name: "students".into(),
            members: None,
            limits: Limits {
                cpus: Some(Some(4.0)),
                ..Limits::default()
            },
        });
        assert!(p.shares_host());
    }

    #[test]
    fn names_from_labels_are_plain() {
        for ok in ["alice", "a.b", "user_1", "x-y"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "..", "a/b", "-x", "a b", "ünï", &"x".repeat(33)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
