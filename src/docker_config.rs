//! Registering ds01-runtime in Docker's `/etc/docker/daemon.json`, and
//! undoing it: merge, never overwrite; keep every other key; refuse a file
//! that is not valid JSON; remember the previous default runtime.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use ds01_core::fsutil;

pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";
pub const RUNTIME_NAME: &str = "ds01";
/// Also a name for ds01-runtime: the Dev Containers CLI honours
/// `hostRequirements.gpu` only when Docker lists a runtime named so, and
/// tutorials say `--runtime=nvidia`, which must not go around ds01.
pub const NVIDIA_NAME: &str = "nvidia";
/// What registration remembers, for unregistration.
pub const STATE_FILE: &str = "/var/lib/ds01/docker-registration.json";
pub const RESTART_HINT: &str =
    "restart Docker to apply it: systemctl restart docker (or: service docker restart)";

#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("{0}")]
    Reload(String),
    #[error("{path:?}: invalid JSON ({msg}); fix it or move it aside, nothing was changed")]
    Invalid { path: PathBuf, msg: String },
    #[error("{path:?}: {msg}; nothing was changed")]
    Shape { path: PathBuf, msg: String },
    #[error("{path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("runtime {0:?} is not an executable file; refusing to point Docker at it")]
    MissingRuntime(PathBuf),
}

/// Remembered between register and unregister.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// `default-runtime` before ds01 took it; `None` when there was none.
    pub previous_default: Option<String>,
    /// Whether daemon.json existed before.
    pub had_file: bool,
    /// The `nvidia` runtime before ds01 took the name (NVIDIA's own).
    #[serde(default)]
    pub previous_nvidia: Option<Value>,
}

/// Where the files are; tests point these elsewhere.
#[derive(Debug, Clone)]
pub struct Paths {
    pub daemon_json: PathBuf,
    pub state: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            daemon_json: DAEMON_JSON.into(),
            state: STATE_FILE.into(),
        }
    }
}

impl Paths {
    /// The untouched original, kept beside daemon.json.
    pub fn backup(&self) -> PathBuf {
        let mut name = self
            .daemon_json
            .file_name()
            .unwrap_or_default()
            .to_os_string();
        name.push(".ds01-backup");
        self.daemon_json.with_file_name(name)
    }
}

/// What a call did, for the admin.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Changed(String),
    Unchanged(String),
}

impl Outcome {
    pub fn message(&self) -> &str {
        match self {
            Outcome::Changed(m) | Outcome::Unchanged(m) => m,
        }
    }
}

/// Parses daemon.json text; an empty file counts as `{}`.
fn parse(path: &Path, text: &str) -> Result<Map<String, Value>, DockerConfigError> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let v: Value = serde_json::from_str(text).map_err(|e| DockerConfigError::Invalid {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(DockerConfigError::Shape {
            path: path.to_path_buf(),
            msg: "the top level is not a JSON object".into(),
        }),
    }
}

/// The merge itself: adds the runtime and makes it the default.
pub fn merge_register(
    path: &Path,
    mut cfg: Map<String, Value>,
    runtime: &Path,
) -> Result<Map<String, Value>, DockerConfigError> {
    let runtimes = cfg
        .entry("runtimes")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(runtimes) = runtimes.as_object_mut() else {
        return Err(DockerConfigError::Shape {
            path: path.to_path_buf(),
            msg: "\"runtimes\" is not an object".into(),
        });
    };
    runtimes.insert(RUNTIME_NAME.into(), serde_json::json!({"path": runtime}));
    runtimes.insert(NVIDIA_NAME.into(), serde_json::json!({"path": runtime}));
    cfg.insert("default-runtime".into(), Value::String(RUNTIME_NAME.into()));
    Ok(cfg)
}

/// The reverse merge: drops the runtime and restores the previous default.
pub fn merge_unregister(
    mut cfg: Map<String, Value>,
    previous_default: Option<&str>,
    previous_nvidia: Option<&Value>,
) -> Map<String, Value> {
    let ours = cfg
        .get("runtimes")
        .and_then(|r| r.get(RUNTIME_NAME))
        .and_then(|r| r.get("path"))
        .cloned();
    if cfg.get("default-runtime").and_then(Value::as_str) == Some(RUNTIME_NAME) {
        match previous_default.filter(|p| *p != RUNTIME_NAME) {
            Some(p) => {
                cfg.insert("default-runtime".into(), Value::String(p.into()));
            }
            None => {
                cfg.remove("default-runtime");
            }
        }
    }
    if let Some(runtimes) = cfg.get_mut("runtimes").and_then(Value::as_object_mut) {
        runtimes.remove(RUNTIME_NAME);
        let nvidia_is_ours = ours.is_some()
            && runtimes.get(NVIDIA_NAME).and_then(|r| r.get("path")) == ours.as_ref();
        if nvidia_is_ours {
            match previous_nvidia {
                Some(v) => {
                    runtimes.insert(NVIDIA_NAME.into(), v.clone());
                }
                None => {
                    runtimes.remove(NVIDIA_NAME);
                }
            }
        }
        if runtimes.is_empty() {
            cfg.remove("runtimes");
        }
    }
    cfg
}

fn read_optional(path: &Path) -> Result<Option<String>, DockerConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DockerConfigError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write(path: &Path, data: &[u8]) -> Result<(), DockerConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| DockerConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    // A symlinked daemon.json (kept in configuration management, say)
    // stays a symlink: the file it points at is the one replaced.
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mode = std::fs::metadata(&target).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    if let Some(dir) = target.parent() {
        fsutil::ensure_dir(dir).map_err(io)?;
    }
    fsutil::write_atomic(&target, data, mode).map_err(io)
}

fn render(cfg: &Map<String, Value>) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(cfg).expect("JSON serialises");
    out.push(b'\n');
    out
}

/// Registers `runtime` as Docker's default runtime.
pub fn register(paths: &Paths, runtime: &Path) -> Result<Outcome, DockerConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let executable = std::fs::metadata(runtime)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !executable || !runtime.is_absolute() {
        return Err(DockerConfigError::MissingRuntime(runtime.to_path_buf()));
    }
    let path = &paths.daemon_json;
    let original = read_optional(path)?;
    let cfg = parse(path, original.as_deref().unwrap_or(""))?;
    let previous = cfg
        .get("default-runtime")
        .and_then(Value::as_str)
        .map(String::from);
    let merged = merge_register(path, cfg.clone(), runtime)?;
    if merged == cfg {
        return Ok(Outcome::Unchanged(format!(
            "ds01-runtime is already Docker's default runtime in {path:?}"
        )));
    }
    // Remember the state before ds01, once: a re-registration (a new
    // runtime path, say) must not forget the admin's own default.
    if previous.as_deref() != Some(RUNTIME_NAME) || read_optional(&paths.state)?.is_none() {
        let reg = Registration {
            previous_default: previous.clone().filter(|p| p != RUNTIME_NAME),
            had_file: original.is_some(),
            previous_nvidia: cfg
                .get("runtimes")
                .and_then(|r| r.get(NVIDIA_NAME))
                .cloned(),
        };
        write(
            &paths.state,
            &serde_json::to_vec_pretty(&reg).expect("serialises"),
        )?;
        if let Some(text) = &original
            && !paths.backup().exists()
        {
            write(&paths.backup(), text.as_bytes())?;
        }
    }
    write(path, &render(&merged))?;
    let was = previous.map_or("Docker's built-in runc".to_string(), |p| format!("{p:?}"));
    let nvidia = match cfg.get("runtimes").and_then(|r| r.get(NVIDIA_NAME)) {
        Some(v) => format!(
            "; the name \"nvidia\" runs ds01-runtime now too (NVIDIA's runtime at {} is kept for \
             unregistering; to run it behind ds01, set runc to it in /etc/ds01/config.toml)",
            v.get("path").unwrap_or(&Value::Null)
        ),
        None => "; the name \"nvidia\" runs ds01-runtime too".to_string(),
    };
    Ok(Outcome::Changed(format!(
        "registered ds01-runtime as Docker's default runtime in {path:?} (the default was {was}){nvidia}; {RESTART_HINT}"
    )))
}

/// Undoes [`register`]: the previous default runtime comes back, and the
/// original file byte for byte when nothing else changed since.
pub fn unregister(paths: &Paths) -> Result<Outcome, DockerConfigError> {
    unregister_from(paths, read_optional(&paths.daemon_json)?)
}

/// [`unregister`] from daemon.json's text as it was before this call
/// wrote anything.
fn unregister_from(paths: &Paths, text: Option<String>) -> Result<Outcome, DockerConfigError> {
    let path = &paths.daemon_json;
    let reg: Registration = read_optional(&paths.state)?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Registration {
            previous_default: None,
            had_file: true,
            previous_nvidia: None,
        });
    let Some(text) = text else {
        return Ok(Outcome::Unchanged(format!(
            "{path:?} does not exist; nothing to undo"
        )));
    };
    let cfg = parse(path, &text)?;
    let restored = merge_unregister(
        cfg.clone(),
        reg.previous_default.as_deref(),
        reg.previous_nvidia.as_ref(),
    );
    let backup = read_optional(&paths.backup())?;
    if restored == cfg {
        remove_quietly(&paths.state);
        return Ok(Outcome::Unchanged(format!(
            "ds01-runtime is not registered in {path:?}"
        )));
    }
    let backup_matches = backup
        .as_deref()
        .is_some_and(|b| parse(path, b).ok().as_ref() == Some(&restored));
    if backup_matches {
        write(path, backup.as_deref().unwrap_or_default().as_bytes())?;
        remove_quietly(&paths.backup());
    } else if restored.is_empty() && !reg.had_file {
        std::fs::remove_file(path).map_err(|source| DockerConfigError::Io {
            path: path.clone(),
            source,
        })?;
    } else {
        write(path, &render(&restored))?;
    }
    remove_quietly(&paths.state);
    let now = reg
        .previous_default
        .map_or("Docker's built-in runc".to_string(), |p| format!("{p:?}"));
    Ok(Outcome::Changed(format!(
        "removed ds01-runtime from {path:?}; the default runtime is {now} again; {RESTART_HINT}"
    )))
}

/// What dockerd must reload before the final file is written: a reload
/// only applies keys the file names, so a file that drops
/// `default-runtime` would leave ds01 as the default in the running
/// daemon. The interim file names Docker's built-in `runc` instead.
pub fn interim_for_reload(restored: &Map<String, Value>) -> Option<Map<String, Value>> {
    if restored.contains_key("default-runtime") && restored.contains_key("runtimes") {
        return None;
    }
    let mut interim = restored.clone();
    interim
        .entry("default-runtime")
        .or_insert_with(|| Value::String("runc".into()));
    // Likewise the runtimes: without the key a reload keeps ds01 and nvidia.
    interim
        .entry("runtimes")
        .or_insert_with(|| Value::Object(Map::new()));
    Some(interim)
}

/// The running dockerd that reads this daemon.json, by the `pidfile` it
/// names (Docker's default `/var/run/docker.pid`): `Some(pid)` only when
/// that process is a live dockerd.
pub fn running_dockerd(cfg: &Map<String, Value>) -> Option<i32> {
    let pidfile = cfg
        .get("pidfile")
        .and_then(Value::as_str)
        .unwrap_or("/var/run/docker.pid");
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dockerd").then_some(pid)
}

/// Containers Docker keeps under `data_root`, with their runtime and
/// whether they run, from Docker's own records (works with dockerd down).
pub fn containers(data_root: &Path) -> Vec<(String, String, String, bool)> {
    let Ok(dir) = std::fs::read_dir(data_root.join("containers")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let read = |f: &str| {
            std::fs::read(e.path().join(f))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        };
        let (Some(host), Some(cfg)) = (read("hostconfig.json"), read("config.v2.json")) else {
            continue;
        };
        let runtime = host["Runtime"].as_str().unwrap_or("runc").to_string();
        let name = cfg["Name"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let running = cfg["State"]["Running"].as_bool().unwrap_or(false);
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            name,
            runtime,
            running,
        ));
    }
    out.sort();
    out
}

/// Where this daemon.json says Docker keeps its data.
pub fn data_root(paths: &Paths) -> PathBuf {
    read_optional(&paths.daemon_json)
        .ok()
        .flatten()
        .and_then(|t| parse(&paths.daemon_json, &t).ok())
        .and_then(|c| {
            c.get("data-root")
                .and_then(Value::as_str)
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/docker"))
}

/// [`unregister`] for a running dockerd: when the restored file would not
/// reset the default runtime on a reload, an interim file naming `runc` is
/// written and `reload` called first, then the final file. `reload` gets
/// the config in effect and returns what it did, if anything.
pub fn unregister_live(
    paths: &Paths,
    reload: impl Fn(&Map<String, Value>) -> Option<Result<String, String>>,
) -> Result<Outcome, DockerConfigError> {
    let path = &paths.daemon_json;
    let text = read_optional(path)?;
    let current = match &text {
        Some(t) => parse(path, t)?,
        None => return unregister(paths),
    };
    if current.get("default-runtime").and_then(Value::as_str) != Some(RUNTIME_NAME) {
        let out = unregister(paths)?;
        return with_reload(out, reload(&current));
    }
    let reg: Registration = read_optional(&paths.state)?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let restored = merge_unregister(
        current.clone(),
        reg.previous_default.as_deref(),
        reg.previous_nvidia.as_ref(),
    );
    let mut did = None;
    if let Some(interim) = interim_for_reload(&restored)
        && running_dockerd(&current).is_some()
    {
        write(path, &render(&interim))?;
        did = reload(&interim);
    }
    let out = unregister_from(paths, text)?;
    let after = read_optional(path)?
        .and_then(|t| parse(path, &t).ok())
        .unwrap_or_default();
    let did = did.or_else(|| reload(&after));
    with_reload(out, did)
}

/// The outcome with what the reload did; a reload that failed is an error
/// (the file is restored, but the running dockerd still points at ds01).
fn with_reload(
    out: Outcome,
    did: Option<Result<String, String>>,
) -> Result<Outcome, DockerConfigError> {
    match (out, did) {
        (_, Some(Err(e))) => Err(DockerConfigError::Reload(e)),
        (Outcome::Changed(m), Some(Ok(d))) => Ok(Outcome::Changed(
            m.replace(&format!("; {RESTART_HINT}"), "")
                .replace(RESTART_HINT, "")
                + &format!("; {d}"),
        )),
        (o, _) => Ok(o),
    }
}

fn remove_quietly(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct T {
        _dir: tempfile::TempDir,
        paths: Paths,
        runtime: PathBuf,
    }

    fn setup(daemon_json: Option<&str>) -> T {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            daemon_json: dir.path().join("docker/daemon.json"),
            state: dir.path().join("lib/registration.json"),
        };
        if let Some(text) = daemon_json {
            std::fs::create_dir_all(paths.daemon_json.parent().unwrap()).unwrap();
            std::fs::write(&paths.daemon_json, text).unwrap();
        }
        // Any executable stands in for the runtime binary.
        let runtime = PathBuf::from("/bin/sh");
        T {
            _dir: dir,
            paths,
            runtime,
        }
    }

    fn current(t: &T) -> Value {
        serde_json::from_slice(&std::fs::read(&t.paths.daemon_json).unwrap()).unwrap()
    }

    #[test]
    fn nvidia_s_runtime_comes_back_under_its_name() {
        let original = "{\"runtimes\": {\"nvidia\": {\"path\": \"/usr/bin/nvidia-container-runtime\"}}, \"debug\": true}";
        let t = setup(Some(original));
        let out = register(&t.paths, &t.runtime).unwrap();
        assert!(
            out.message()
                .contains("NVIDIA's runtime at \"/usr/bin/nvidia-container-runtime\""),
            "{}",
            out.message()
        );
        // Something else changed since: no byte-for-byte backup, the entry still comes back.
        let mut v = current(&t);
        v["debug"] = json!(false);
        std::fs::write(&t.paths.daemon_json, v.to_string()).unwrap();
        unregister(&t.paths).unwrap();
        assert_eq!(
            current(&t),
            json!({"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}, "debug": false})
        );
    }

    #[test]
    fn a_live_unregister_resets_the_default_before_dropping_the_key() {
        let t = setup(Some("{\"debug\": true}"));
        register(&t.paths, &t.runtime).unwrap();
        // Make this test process stand in as the running dockerd? It is not
        // named dockerd, so no interim: the reload is still asked for.
        let seen = std::cell::RefCell::new(Vec::new());
        let out = unregister_live(&t.paths, |cfg| {
            seen.borrow_mut().push(Value::Object(cfg.clone()));
            Some(Ok("dockerd reloaded".into()))
        })
        .unwrap();
        assert!(
            out.message().ends_with("; dockerd reloaded"),
            "{}",
            out.message()
        );
        assert_eq!(seen.borrow().as_slice(), [json!({"debug": true})]);
        let interim = interim_for_reload(
            &serde_json::from_str::<Map<String, Value>>("{\"debug\": true}").unwrap(),
        );
        let interim = interim.unwrap();
        assert_eq!(interim["default-runtime"], "runc");
        assert_eq!(
            interim["runtimes"],
            json!({}),
            "so the reload drops ds01 and nvidia"
        );
        let mut named = Map::new();
        named.insert("default-runtime".into(), json!("nvidia"));
        named.insert("runtimes".into(), json!({"nvidia": {"path": "/x"}}));
        assert!(interim_for_reload(&named).is_none());
        // A reload that did not take is an error: the removal must stop.
        register(&t.paths, &t.runtime).unwrap();
        let e = unregister_live(&t.paths, |_| Some(Err("still ds01".into()))).unwrap_err();
        assert_eq!(e.to_string(), "still ds01");
    }

    #[test]
    fn missing_file_is_created_and_removed_again() {
        let t = setup(None);
        let out = register(&t.paths, &t.runtime).unwrap();
        assert!(matches!(out, Outcome::Changed(_)));
        assert!(
            out.message().contains("restart Docker"),
            "{}",
            out.message()
        );
        assert_eq!(
            current(&t),
            json!({"runtimes": {"ds01": {"path": "/bin/sh"}, "nvidia": {"path": "/bin/sh"}}, "default-runtime": "ds01"})
        );
        unregister(&t.paths).unwrap();
        assert!(!t.paths.daemon_json.exists());
    }

    #[test]
    fn empty_file_counts_as_empty_object() {
        let t = setup(Some("\n"));
        register(&t.paths, &t.runtime).unwrap();
        assert_eq!(current(&t)["default-runtime"], "ds01");
        unregister(&t.paths).unwrap();
        assert_eq!(std::fs::read_to_string(&t.paths.daemon_json).unwrap(), "\n");
    }

    #[test]
    fn other_keys_and_runtimes_are_kept_and_the_original_comes_back_byte_for_byte() {
        let original = "{\n    \"log-level\": \"warn\",\n    \"runtimes\": {\"nvidia\": {\"path\": \"nvidia-container-runtime\", \"runtimeArgs\": []}},\n    \"data-root\": \"/srv/docker\"\n}\n";
        let t = setup(Some(original));
        register(&t.paths, &t.runtime).unwrap();
        let v = current(&t);
        assert_eq!(v["log-level"], "warn");
        assert_eq!(v["data-root"], "/srv/docker");
        // `--runtime=nvidia` must not go around ds01: the name is ds01's now.
        assert_eq!(v["runtimes"]["nvidia"]["path"], "/bin/sh");
        assert_eq!(v["runtimes"]["ds01"]["path"], "/bin/sh");
        assert_eq!(v["default-runtime"], "ds01");
        // Key order is kept: the admin's file still reads as theirs.
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["log-level", "runtimes", "data-root", "default-runtime"]
        );
        assert_eq!(std::fs::read_to_string(t.paths.backup()).unwrap(), original);
        unregister(&t.paths).unwrap();
        assert_eq!(
            std::fs::read_to_string(&t.paths.daemon_json).unwrap(),
            original
        );
        assert!(!t.paths.backup().exists());
    }

    #[test]
    fn a_symlinked_daemon_json_stays_a_symlink() {
        let t = setup(None);
        let real = t.paths.daemon_json.with_file_name("managed.json");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "{\"debug\": true}\n").unwrap();
        std::os::unix::fs::symlink(&real, &t.paths.daemon_json).unwrap();
        register(&t.paths, &t.runtime).unwrap();
        assert!(
            std::fs::symlink_metadata(&t.paths.daemon_json)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(current(&t)["default-runtime"], "ds01");
        unregister(&t.paths).unwrap();
        assert_eq!(
            std::fs::read_to_string(&real).unwrap(),
            "{\"debug\": true}\n"
        );
        assert!(
            std::fs::symlink_metadata(&t.paths.daemon_json)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn registering_twice_changes_nothing() {
        let t = setup(Some("{\"debug\": true}"));
        register(&t.paths, &t.runtime).unwrap();
        let first = std::fs::read(&t.paths.daemon_json).unwrap();
        let out = register(&t.paths, &t.runtime).unwrap();
        assert!(matches!(out, Outcome::Unchanged(_)), "{out:?}");
        assert_eq!(std::fs::read(&t.paths.daemon_json).unwrap(), first);
        unregister(&t.paths).unwrap();
        assert_eq!(current(&t), json!({"debug": true}));
    }

    #[test]
    fn a_foreign_default_runtime_is_restored() {
        let t = setup(Some(
            r#"{"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}}"#,
        ));
        let out = register(&t.paths, &t.runtime).unwrap();
        assert!(
            out.message().contains("the default was \"nvidia\""),
            "{}",
            out.message()
        );
        assert_eq!(current(&t)["default-runtime"], "ds01");
        // A later re-registration keeps the memory of "nvidia".
        register(&t.paths, Path::new("/bin/bash")).unwrap();
        let out = unregister(&t.paths).unwrap();
        assert!(
            out.message().contains("\"nvidia\" again"),
            "{}",
            out.message()
        );
        assert_eq!(
            current(&t),
            json!({"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}})
        );
    }

    #[test]
    fn invalid_json_is_refused_and_left_alone() {
        let bad = "{\"debug\": true,,}";
        let t = setup(Some(bad));
        let e = register(&t.paths, &t.runtime).unwrap_err().to_string();
        assert!(
            e.contains("daemon.json")
                && e.contains("invalid JSON")
                && e.contains("nothing was changed"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&t.paths.daemon_json).unwrap(), bad);
        assert!(unregister(&t.paths).is_err());
        let t = setup(Some("[1]"));
        assert!(
            register(&t.paths, &t.runtime)
                .unwrap_err()
                .to_string()
                .contains("not a JSON object")
        );
        let t = setup(Some(r#"{"runtimes": "runc"}"#));
        assert!(
            register(&t.paths, &t.runtime)
                .unwrap_err()
                .to_string()
                .contains("\"runtimes\" is not an object")
        );
    }

    #[test]
    fn unwritable_location_is_an_error_naming_it() {
        let t = setup(None);
        // A regular file where the directory should be: even root cannot write there.
        std::fs::create_dir_all(t.paths.daemon_json.parent().unwrap().parent().unwrap()).unwrap();
        std::fs::write(t.paths.daemon_json.parent().unwrap(), "not a dir").unwrap();
        let e = register(&t.paths, &t.runtime).unwrap_err().to_string();
        assert!(e.contains("daemon.json"), "{e}");
    }

    #[test]
    fn a_missing_runtime_binary_is_never_registered() {
        let t = setup(Some("{}"));
        let e = register(&t.paths, Path::new("/nonexistent/ds01-runtime"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing to point Docker at it"), "{e}");
        assert_eq!(std::fs::read_to_string(&t.paths.daemon_json).unwrap(), "{}");
    }

    #[test]
    fn unregistering_when_not_registered_changes_nothing() {
        let t = setup(Some("{\"debug\": true}"));
        assert!(matches!(
            unregister(&t.paths).unwrap(),
            Outcome::Unchanged(_)
        ));
        assert_eq!(
            std::fs::read_to_string(&t.paths.daemon_json).unwrap(),
            "{\"debug\": true}"
        );
        let t = setup(None);
        assert!(matches!(
            unregister(&t.paths).unwrap(),
            Outcome::Unchanged(_)
        ));
    }
}
