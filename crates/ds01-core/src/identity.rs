//! Whose container is it? Resolved in a configurable order (config key
//! `identity`), first answer wins:
//!
//! 1. `docker`: Docker's own record, `<docker_data_root>/containers/<id>/config.v2.json`:
//!    the label `ds01.user`, else a `devcontainer.local_folder` label under `/home/<user>/`;
//! 2. `env`: `DS01_USER` in the container's environment;
//! 3. `home-mount`: the owner of a bind-mounted directory under `/home/<user>`;
//! 4. `cgroup`: a cgroup parent named `ds01-<group>-<user>.slice`;
//! 5. otherwise unknown.
//!
//! Anyone who can use the Docker socket is root-equivalent and can claim any
//! name: this is fairness among cooperating users, not a security boundary.

use std::ffi::{CStr, CString};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::policy::{Groups, valid_name};

/// One way of finding the owner, as named in config.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Docker,
    Env,
    HomeMount,
    Cgroup,
}

impl Step {
    pub const ALL: [Step; 4] = [Step::Docker, Step::Env, Step::HomeMount, Step::Cgroup];

    pub fn name(self) -> &'static str {
        match self {
            Step::Docker => "docker",
            Step::Env => "env",
            Step::HomeMount => "home-mount",
            Step::Cgroup => "cgroup",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The config's `identity` list, read; the error names the bad step.
    pub fn parse_order(names: &[String]) -> Result<Vec<Step>, String> {
        names
            .iter()
            .map(|n| {
                Step::parse(n).ok_or_else(|| {
                    let allowed = Step::ALL.map(Step::name).join(", ");
                    format!("{n:?} is not one of {allowed}")
                })
            })
            .collect()
    }
}

/// The config's identity order; a bad step is the config's error.
pub fn order(cfg: &crate::config::Config) -> Result<Vec<Step>, crate::config::ConfigError> {
    Step::parse_order(&cfg.identity).map_err(|msg| crate::config::ConfigError::BadValue {
        path: cfg
            .path
            .clone()
            .unwrap_or_else(crate::config::Config::locate),
        key: "identity".into(),
        msg,
    })
}

/// What decided the owner; recorded in the ledger and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    DockerLabel,
    DevcontainerFolder,
    Env,
    HomeMount,
    CgroupParent,
    #[default]
    Unknown,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::DockerLabel => "docker-label",
            Source::DevcontainerFolder => "devcontainer-folder",
            Source::Env => "env",
            Source::HomeMount => "home-mount",
            Source::CgroupParent => "cgroup-parent",
            Source::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `None` when no source answered.
    pub user: Option<String>,
    pub source: Source,
}

/// The system's user and group database; a trait so tests need no accounts.
pub trait Accounts: Groups {
    fn user_name(&self, uid: u32) -> Option<String>;
    /// The user's home directory; `None` where unknown (binds from it are
    /// then refused).
    fn home_of(&self, _user: &str) -> Option<std::path::PathBuf> {
        None
    }
}

/// What resolution reads about the container.
pub struct Container<'a> {
    pub spec: &'a Value,
    /// Its labels in Docker's record ([`docker_labels`]), read once by the
    /// caller, which wants them for more than the owner.
    pub labels: Option<&'a Value>,
}

pub fn resolve(order: &[Step], c: &Container, accounts: &dyn Accounts) -> Owner {
    for step in order {
        let found = match step {
            // A ds01 slice in the cgroup path outranks the labels: the gate
            // sets it (and refuses a user's own --cgroup-parent), while
            // labels come with images, so a build's steps carry whatever
            // `LABEL ds01.user=` the Dockerfile or its base image wrote.
            Step::Docker => from_docker(c)
                .map(|found| cgroup_user(c.spec).map_or(found, |u| (u, Source::CgroupParent))),
            Step::Env => env_user(c.spec).map(|u| (u, Source::Env)),
            Step::HomeMount => {
                home_mount_owner(c.spec, accounts, HOME).map(|u| (u, Source::HomeMount))
            }
            Step::Cgroup => cgroup_user(c.spec).map(|u| (u, Source::CgroupParent)),
        };
        if let Some((user, source)) = found {
            return Owner {
                user: Some(user),
                source,
            };
        }
    }
    Owner {
        user: None,
        source: Source::Unknown,
    }
}

const HOME: &str = "/home";
/// The label the Dev Containers CLI puts on a dev container: its folder.
pub use crate::names::DEVCONTAINER_LABEL;

/// The user named by a `<home>/<user>/...` path.
fn home_user(path: &str, home: &str) -> Option<String> {
    let rest = path.strip_prefix(home)?.strip_prefix('/')?;
    let user = rest.split('/').next()?;
    valid_name(user).then(|| user.to_string())
}

fn from_docker(c: &Container) -> Option<(String, Source)> {
    let labels = c.labels?;
    from_labels(|k| labels.get(k).and_then(Value::as_str))
}

/// A container's labels as Docker recorded them
/// (`<docker_data_root>/containers/<id>/config.v2.json`): Docker does not
/// pass them to the runtime.
pub fn docker_labels(docker_data_root: &Path, id: &str) -> Option<Value> {
    if id.is_empty() || id.contains('/') {
        return None;
    }
    let path = docker_data_root
        .join("containers")
        .join(id)
        .join("config.v2.json");
    // Only the labels are built: the record (several KB, written by
    // dockerd) is read on every owned GPU create.
    #[derive(serde::Deserialize)]
    struct Record {
        #[serde(rename = "Config")]
        config: Option<RecordConfig>,
    }
    #[derive(serde::Deserialize)]
    struct RecordConfig {
        #[serde(rename = "Labels")]
        labels: Option<Value>,
    }
    let record: Record = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    record.config?.labels
}

/// The owner a container's Docker labels name: `ds01.user`, else a dev
/// container's [`DEVCONTAINER_LABEL`] under `/home/<user>/`.
pub fn from_labels<'a>(label: impl Fn(&str) -> Option<&'a str>) -> Option<(String, Source)> {
    if let Some(u) = label(crate::names::USER_LABEL).filter(|u| valid_name(u)) {
        return Some((u.to_string(), Source::DockerLabel));
    }
    home_user(label(DEVCONTAINER_LABEL)?, HOME).map(|u| (u, Source::DevcontainerFolder))
}

fn env_user(spec: &Value) -> Option<String> {
    let env = crate::oci::env(spec);
    crate::oci::env_value(&env, "DS01_USER")
        .filter(|u| valid_name(u))
        .map(String::from)
}

fn home_mount_owner(spec: &Value, accounts: &dyn Accounts, home: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mounts = spec.get("mounts")?.as_array()?;
    mounts.iter().find_map(|m| {
        let is_bind = m.get("type").and_then(Value::as_str) == Some("bind")
            || m.get("options").and_then(Value::as_array).is_some_and(|o| {
                o.iter()
                    .any(|x| matches!(x.as_str(), Some("bind" | "rbind")))
            });
        let source = m.get("source").and_then(Value::as_str)?;
        if !is_bind {
            return None;
        }
        home_user(source, home)?;
        let uid = std::fs::metadata(source).ok()?.uid();
        accounts.user_name(uid).filter(|u| valid_name(u))
    })
}

/// The user whose parent `linux.cgroupsPath` is in ([`crate::share`]).
fn cgroup_user(spec: &Value) -> Option<String> {
    let path = spec.pointer("/linux/cgroupsPath")?.as_str();
    match crate::share::placement(path) {
        crate::share::Placement::Parent(u) => Some(u),
        _ => None,
    }
}

/// The real user and group database, through libc (so NSS, LDAP and
/// SSSD users are seen as `id` sees them).
pub struct SystemAccounts;

impl Groups for SystemAccounts {
    fn groups_of(&self, user: &str) -> Vec<String> {
        let Ok(name) = CString::new(user) else {
            return Vec::new();
        };
        // SAFETY: getpwnam returns a pointer into static storage or null;
        // we copy what we need before any other passwd call.
        let gid = unsafe {
            let pw = libc::getpwnam(name.as_ptr());
            if pw.is_null() {
                return Vec::new();
            }
            (*pw).pw_gid
        };
        let mut n: libc::c_int = 64;
        let mut gids: Vec<libc::gid_t> = vec![0; n as usize];
        // SAFETY: gids has room for n entries; on -1, n holds the count needed.
        unsafe {
            if libc::getgrouplist(name.as_ptr(), gid, gids.as_mut_ptr(), &mut n) == -1 {
                gids = vec![0; n as usize];
                libc::getgrouplist(name.as_ptr(), gid, gids.as_mut_ptr(), &mut n);
            }
        }
        gids.truncate(n.max(0) as usize);
        gids.into_iter()
            .filter_map(|g| {
                // SAFETY: as above, the result is copied at once.
                unsafe {
                    let gr = libc::getgrgid(g);
                    (!gr.is_null())
                        .then(|| CStr::from_ptr((*gr).gr_name).to_string_lossy().into_owned())
                }
            })
            .collect()
    }
}

/// A group's gid, through libc (NSS).
pub fn group_id(group: &str) -> Option<u32> {
    let name = CString::new(group).ok()?;
    // SAFETY: getgrnam returns a pointer into static storage or null; the
    // gid is copied at once.
    unsafe {
        let g = libc::getgrnam(name.as_ptr());
        (!g.is_null()).then(|| (*g).gr_gid)
    }
}

/// A user's uid, primary gid and home directory, through libc (NSS).
pub fn account(user: &str) -> Option<(u32, u32, String)> {
    let name = CString::new(user).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; the
    // fields are copied at once.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        (!pw.is_null()).then(|| {
            (
                (*pw).pw_uid,
                (*pw).pw_gid,
                CStr::from_ptr((*pw).pw_dir).to_string_lossy().into_owned(),
            )
        })
    }
}

impl Accounts for SystemAccounts {
    fn home_of(&self, user: &str) -> Option<std::path::PathBuf> {
        account(user).map(|(_, _, h)| std::path::PathBuf::from(h))
    }

    fn user_name(&self, uid: u32) -> Option<String> {
        // SAFETY: as above.
        unsafe {
            let pw = libc::getpwuid(uid);
            (!pw.is_null()).then(|| CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fake;
    impl Groups for Fake {
        fn groups_of(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
    }
    impl Accounts for Fake {
        fn user_name(&self, uid: u32) -> Option<String> {
            (uid == 0).then(|| "root".to_string())
        }
    }

    fn docker_record(root: &Path, id: &str, labels: Value) {
        let dir = root.join("containers").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.v2.json"),
            json!({"Config": {"Labels": labels}}).to_string(),
        )
        .unwrap();
    }

    #[test]
    fn docker_s_record_gives_its_labels_and_nothing_else_is_built() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("containers/c1");
        std::fs::create_dir_all(&dir).unwrap();
        // As dockerd writes it: the labels among much else.
        let record = json!({
            "StreamConfig": {}, "State": {"Running": true, "Pid": 42},
            "ID": "c1", "Path": "sh", "Args": ["-c", "x"],
            "Config": {"Hostname": "c1", "Env": ["A=1"], "Cmd": ["sh"], "Image": "busybox",
                       "Labels": {"ds01.user": "alice", "x": "y"}, "OnBuild": null},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
            "MountPoints": {}, "HostConfig": {"Binds": null}
        });
        std::fs::write(dir.join("config.v2.json"), record.to_string()).unwrap();
        assert_eq!(
            docker_labels(d.path(), "c1"),
            Some(json!({"ds01.user": "alice", "x": "y"}))
        );
        // No labels, no record, a record not JSON: none.
        std::fs::write(dir.join("config.v2.json"), r#"{"Config": {}}"#).unwrap();
        assert_eq!(docker_labels(d.path(), "c1"), None);
        std::fs::write(dir.join("config.v2.json"), "not json").unwrap();
        assert_eq!(docker_labels(d.path(), "c1"), None);
        assert_eq!(docker_labels(d.path(), "c2"), None);
    }

    #[test]
    fn the_config_s_order_is_read_here_and_a_bad_step_is_a_config_error() {
        use crate::config::Config;
        assert_eq!(order(&Config::default()).unwrap(), Step::ALL);
        let cfg = Config::parse(
            Path::new("/etc/ds01/config.toml"),
            "identity = [\"docker\", \"ldap\"]",
        )
        .unwrap();
        let msg = order(&cfg).unwrap_err().to_string();
        assert!(
            msg.contains("\"/etc/ds01/config.toml\": key \"identity\": \"ldap\" is not one of docker, env, home-mount, cgroup"),
            "{msg}"
        );
    }

    fn resolve_with(order: &[Step], root: &Path, spec: &Value) -> Owner {
        let labels = docker_labels(root, "c1");
        resolve(
            order,
            &Container {
                spec,
                labels: labels.as_ref(),
            },
            &Fake,
        )
    }

    fn owner(user: &str, source: Source) -> Owner {
        Owner {
            user: Some(user.into()),
            source,
        }
    }

    #[test]
    fn documented_order_first_answer_wins() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let spec = json!({
            "process": {"env": ["DS01_USER=erin"]},
            "mounts": [{"destination": "/w", "type": "bind", "source": "/home/root", "options": ["rbind"]}],
            "linux": {"cgroupsPath": "system.slice:docker:c1"}
        });
        let mut frank = spec.clone();
        frank["linux"]["cgroupsPath"] = json!("ds01-students-frank.slice:docker:c1");
        let all = Step::ALL;
        // No Docker record: the environment answers.
        assert_eq!(
            resolve_with(&all, dir.path(), &spec),
            owner("erin", Source::Env)
        );
        docker_record(
            dir.path(),
            "c1",
            json!({"devcontainer.local_folder": "/home/dana/proj"}),
        );
        assert_eq!(
            resolve_with(&all, dir.path(), &spec),
            owner("dana", Source::DevcontainerFolder)
        );
        docker_record(
            dir.path(),
            "c1",
            json!({"ds01.user": "alice", "devcontainer.local_folder": "/home/dana/p"}),
        );
        assert_eq!(
            resolve_with(&all, dir.path(), &spec),
            owner("alice", Source::DockerLabel)
        );
        // A ds01 slice outranks the labels (images carry labels into a
        // build's steps; the gate sets the slice), not what comes after.
        assert_eq!(
            resolve_with(&all, dir.path(), &frank),
            owner("frank", Source::CgroupParent)
        );
        assert_eq!(
            resolve_with(&[Step::Env, Step::Docker], dir.path(), &frank),
            owner("erin", Source::Env)
        );
        // The order is the admin's to choose.
        assert_eq!(
            resolve_with(&[Step::Cgroup, Step::Docker], dir.path(), &frank),
            owner("frank", Source::CgroupParent)
        );
        assert_eq!(
            resolve_with(&[], dir.path(), &spec),
            Owner {
                user: None,
                source: Source::Unknown
            }
        );
    }

    #[test]
    fn bad_names_and_foreign_folders_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        docker_record(
            dir.path(),
            "c1",
            json!({"ds01.user": "../etc", "devcontainer.local_folder": "/srv/x"}),
        );
        let spec =
            json!({"process": {"env": ["DS01_USER=a b"]}, "linux": {"cgroupsPath": "/docker/c1"}});
        assert_eq!(
            resolve_with(&Step::ALL, dir.path(), &spec).source,
            Source::Unknown
        );
    }

    #[test]
    fn cgroup_parent_forms() {
        let spec = |p: &str| json!({"linux": {"cgroupsPath": p}});
        // Only the forms Docker writes for a ds01 parent name a user.
        assert_eq!(
            cgroup_user(&spec("/ds01-staff-bob.slice/docker-1.scope")),
            None
        );
        assert_eq!(cgroup_user(&spec("/x/ds01/bob/1")), None);
        assert_eq!(cgroup_user(&spec("/ds01/bob/1")), Some("bob".into()));
        assert_eq!(
            cgroup_user(&spec("ds01-staff-bob.slice:docker:1")),
            Some("bob".into())
        );
        assert_eq!(cgroup_user(&spec("system.slice:docker:1")), None);
        use crate::share::{Driver, parent};
        for driver in [Driver::Systemd, Driver::Cgroupfs] {
            let parent = parent(driver, "students", "al-ice");
            let path = match driver {
                Driver::Systemd => format!("{parent}:docker:1"),
                Driver::Cgroupfs => format!("{parent}/1"),
            };
            assert_eq!(cgroup_user(&spec(&path)), Some("al-ice".into()));
        }
    }

    #[test]
    fn home_mount_owner_is_the_directory_owner() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path().to_str().unwrap();
        // Named after one user, owned by another (root, uid 0): the owner counts.
        std::fs::create_dir_all(home.path().join("gina/project")).unwrap();
        let mount = |source: String, kind: &str| {
            json!({"mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/w", "type": kind, "source": source, "options": ["rbind", "rw"]}
            ]})
        };
        let owner = |spec: &Value| home_mount_owner(spec, &Fake, h);
        assert_eq!(
            owner(&mount(format!("{h}/gina/project"), "bind")),
            Some("root".into())
        );
        // Docker writes "type": "bind"; other runtimes only the rbind option.
        assert_eq!(
            owner(&mount(format!("{h}/gina/project"), "none")),
            Some("root".into())
        );
        assert_eq!(
            owner(&mount("/srv/data".into(), "bind")),
            None,
            "not under home"
        );
        assert_eq!(
            owner(&mount(format!("{h}/gina/missing"), "bind")),
            None,
            "nothing to stat"
        );
    }

    #[test]
    fn system_accounts_know_root() {
        assert_eq!(SystemAccounts.user_name(0).as_deref(), Some("root"));
        assert!(
            SystemAccounts
                .groups_of("root")
                .contains(&"root".to_string())
        );
        assert!(SystemAccounts.groups_of("no-such-user-ds01").is_empty());
    }
}
