//! The CLI workflow's containers (`container deploy`, `attach`, `stop`,
//! `start`, `retire`): their names, what they are started with, and whose
//! they are. Docker itself is the bin's; this is the part with rules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::docker::{Create, DockerApi, DockerContainer};

/// The label holding the name the user chose (Docker's name carries the
/// user too, so two users may both deploy `thesis`).
pub use ds01_core::names::{NAME_LABEL, USER_LABEL};

/// Docker's name for `user`'s container `name`.
pub fn docker_name(user: &str, name: &str) -> String {
    format!("{user}-{name}")
}

/// A name a user may choose: what Docker allows, without the owner part.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a container name; use letters, digits, '_', '.' and '-', starting with a letter or digit"
        ))
    }
}

/// Which GPU a deployed container asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuChoice {
    Slice,
    Full,
    None,
}

/// Everything `container deploy` starts a container with.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub user: String,
    pub name: String,
    pub image: String,
    pub project: PathBuf,
    pub home: PathBuf,
    pub gpu: GpuChoice,
    pub wait: Option<String>,
    pub shm_size: Option<String>,
    pub env: Vec<String>,
    pub ports: Vec<String>,
    pub cmd: Vec<String>,
}

/// What keeps a container alive for attaching, and stops at once on
/// `docker stop` (a plain `sleep` as PID 1 ignores SIGTERM).
pub fn keep_alive() -> Vec<String> {
    [
        "sh",
        "-c",
        "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
    ]
    .map(String::from)
    .to_vec()
}

impl Spec {
    /// The environment: the GPU request (the runtime's words), the wait,
    /// then the user's own `--env`.
    pub fn env(&self) -> Vec<String> {
        let mut env = Vec::new();
        match self.gpu {
            GpuChoice::Slice => env.push("NVIDIA_VISIBLE_DEVICES=all".to_string()),
            GpuChoice::Full => env.extend([
                "NVIDIA_VISIBLE_DEVICES=all".to_string(),
                "DS01_GPU_PROFILE=full".to_string(),
            ]),
            // CUDA images ask in their own ENV; none says no.
            GpuChoice::None => env.push("NVIDIA_VISIBLE_DEVICES=none".to_string()),
        }
        if let Some(w) = &self.wait {
            env.push(format!("DS01_GPU_WAIT={w}"));
        }
        env.extend(self.env.iter().cloned());
        env
    }

    /// The project and the home, at their server paths.
    pub fn binds(&self) -> Vec<String> {
        let mut binds = vec![format!("{0}:{0}", self.home.display())];
        if !self.project.starts_with(&self.home) {
            binds.push(format!("{0}:{0}", self.project.display()));
        }
        binds
    }

    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (USER_LABEL.to_string(), self.user.clone()),
            (NAME_LABEL.to_string(), self.name.clone()),
        ])
    }

    pub fn command(&self) -> Vec<String> {
        if self.cmd.is_empty() {
            keep_alive()
        } else {
            self.cmd.clone()
        }
    }
}

impl Spec {
    /// The container to create for this spec, under Docker's `name`.
    pub fn create(&self, name: &str, shm_size: i64, ports: &[(String, String)]) -> Create {
        Create {
            name: name.to_string(),
            image: self.image.clone(),
            cmd: self.command(),
            env: self.env(),
            labels: self.labels(),
            working_dir: self.project.display().to_string(),
            binds: self.binds(),
            shm_size,
            ports: ports.to_vec(),
        }
    }
}

/// How `container deploy` ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Deployed {
    /// Running, with this id.
    Started(String),
    /// ds01 refused it (no GPU free, a limit): its own words.
    Refused(String),
}

/// Creates and starts the container, unless the user already has one of
/// that name. Docker's errors that carry ds01's words are a refusal, told
/// as ds01 said it; any other is an error.
pub fn start(docker: &dyn DockerApi, c: &Create, timeout: Duration) -> Result<Deployed, String> {
    let existing = docker.containers()?;
    if let Some(have) = existing.iter().find(|x| x.name == c.name) {
        let name = c.labels.get(NAME_LABEL).unwrap_or(&c.name);
        return Err(format!(
            "you already have a container {name:?} ({}); attach with: container attach {name}, \
             or retire it first: container retire {name}",
            have.state
        ));
    }
    match docker.create_and_start(c, timeout) {
        Ok(id) => Ok(Deployed::Started(id)),
        Err(e) => match ds01_reason(&e) {
            Some(reason) => Ok(Deployed::Refused(reason)),
            None => Err(format!("cannot start {:?}: {e}", c.name)),
        },
    }
}

/// `--port 8888` or `--port 8080:80`: (host port, container port).
pub fn parse_port(p: &str) -> Result<(String, String), String> {
    let (host, inner) = p.split_once(':').unwrap_or((p, p));
    let num = |s: &str| s.parse::<u16>().ok().filter(|n| *n > 0);
    match (num(host), num(inner)) {
        (Some(h), Some(c)) => Ok((h.to_string(), c.to_string())),
        _ => Err(format!(
            "--port {p:?}: write PORT or HOST:CONTAINER, such as 8888 or 8080:80"
        )),
    }
}

/// The project's Dockerfile: `Dockerfile`, else `.devcontainer/Dockerfile`.
pub fn dockerfile(project: &Path) -> Option<PathBuf> {
    ["Dockerfile", ".devcontainer/Dockerfile"]
        .iter()
        .map(|f| project.join(f))
        .find(|p| p.is_file())
}

/// The image tag a project's build gets.
pub fn build_tag(user: &str, name: &str) -> String {
    format!("ds01-{user}/{}", name.to_ascii_lowercase())
}

/// The project's framework, by what its requirements name; `pytorch` when
/// nothing says.
pub fn framework_of(project: &Path) -> &'static str {
    let reqs = ["requirements.txt", "pyproject.toml", "environment.yml"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(project.join(f)).ok())
        .collect::<String>()
        .to_ascii_lowercase();
    if reqs.contains("tensorflow") {
        "tensorflow"
    } else if reqs.contains("jax") {
        "jax"
    } else {
        "pytorch"
    }
}

/// ds01's own words in a Docker error: Docker wraps the runtime's message
/// (`... OCI runtime create failed: ds01: no MIG slice free ...: unknown`).
pub fn ds01_reason(docker_error: &str) -> Option<String> {
    let start = docker_error.find("ds01: ")?;
    let rest = &docker_error[start..];
    let rest = rest.strip_suffix(": unknown").unwrap_or(rest);
    Some(rest.trim_end().to_string())
}

/// Finds the container `arg` names for `me`: `NAME` (one of theirs), or
/// `USER/NAME`, which only that user or an admin may name.
pub fn resolve<'a>(
    containers: &'a [DockerContainer],
    me: &str,
    admin: bool,
    arg: &str,
) -> Result<&'a DockerContainer, String> {
    let (owner, name) = arg.split_once('/').unwrap_or((me, arg));
    let of = |user: &str| {
        containers.iter().find(|c| {
            c.labels.get(USER_LABEL).map(String::as_str) == Some(user)
                && (c.labels.get(NAME_LABEL).map(String::as_str) == Some(name)
                    || c.name == docker_name(user, name))
        })
    };
    if owner != me && !admin {
        return Err(format!(
            "{arg:?} is {owner}'s container; you may act only on your own"
        ));
    }
    if let Some(c) = of(owner) {
        return Ok(c);
    }
    // Someone else's, named by Docker's name or id.
    if let Some(c) = containers
        .iter()
        .find(|c| c.name == arg || (arg.len() >= 12 && c.id.starts_with(arg)))
    {
        let theirs = c.labels.get(USER_LABEL).cloned().unwrap_or_default();
        if theirs != me && !admin {
            return Err(format!(
                "{arg:?} is {}'s container; you may act only on your own",
                if theirs.is_empty() {
                    "someone else"
                } else {
                    &theirs
                }
            ));
        }
        return Ok(c);
    }
    Err(format!(
        "you have no container {name:?}; see 'container ls' (deploy one with: container deploy {name})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, name: &str, user: &str, label_name: &str) -> DockerContainer {
        DockerContainer {
            id: id.into(),
            name: name.into(),
            image: "x".into(),
            state: "running".into(),
            status: "Up".into(),
            labels: HashMap::from([
                (USER_LABEL.to_string(), user.to_string()),
                (NAME_LABEL.to_string(), label_name.to_string()),
            ]),
            mounts: vec![],
        }
    }

    #[test]
    fn two_users_may_use_one_name_and_only_their_own() {
        let all = vec![
            c("aaaaaaaaaaaa1", "alice-thesis", "alice", "thesis"),
            c("bbbbbbbbbbbb2", "bob-thesis", "bob", "thesis"),
        ];
        assert_eq!(
            resolve(&all, "alice", false, "thesis").unwrap().id,
            "aaaaaaaaaaaa1"
        );
        assert_eq!(
            resolve(&all, "bob", false, "thesis").unwrap().id,
            "bbbbbbbbbbbb2"
        );
        let e = resolve(&all, "alice", false, "bob/thesis").unwrap_err();
        assert!(e.contains("bob's container"), "{e}");
        let e = resolve(&all, "alice", false, "bob-thesis").unwrap_err();
        assert!(e.contains("bob's container"), "{e}");
        assert_eq!(
            resolve(&all, "root", true, "bob/thesis").unwrap().id,
            "bbbbbbbbbbbb2"
        );
        let e = resolve(&all, "carol", false, "thesis").unwrap_err();
        assert!(e.contains("no container \"thesis\""), "{e}");
    }

    #[test]
    fn the_runtime_s_reason_is_taken_out_of_docker_s_wrapping() {
        let e = "Error response from daemon: failed to create shim task: OCI runtime create failed: ds01: no MIG slice free (7 of 7 in use); try later: unknown";
        assert_eq!(
            ds01_reason(e).unwrap(),
            "ds01: no MIG slice free (7 of 7 in use); try later"
        );
        assert_eq!(ds01_reason("some other error"), None);
    }

    #[test]
    fn names_ports_and_the_gpu_request() {
        assert!(check_name("thesis-2").is_ok());
        assert!(check_name("-x").is_err() && check_name("a/b").is_err() && check_name("").is_err());
        assert_eq!(parse_port("8888").unwrap(), ("8888".into(), "8888".into()));
        assert_eq!(parse_port("8080:80").unwrap(), ("8080".into(), "80".into()));
        assert!(parse_port("http").is_err());
        let s = Spec {
            user: "alice".into(),
            name: "thesis".into(),
            image: "x".into(),
            project: "/home/alice/workspace/thesis".into(),
            home: "/home/alice".into(),
            gpu: GpuChoice::Full,
            wait: Some("30m".into()),
            shm_size: None,
            env: vec!["A=1".into()],
            ports: vec![],
            cmd: vec![],
        };
        assert_eq!(
            s.env(),
            [
                "NVIDIA_VISIBLE_DEVICES=all",
                "DS01_GPU_PROFILE=full",
                "DS01_GPU_WAIT=30m",
                "A=1"
            ]
        );
        assert_eq!(
            s.binds(),
            ["/home/alice:/home/alice"],
            "the project is under the home"
        );
        assert_eq!(s.command(), keep_alive());
        assert_eq!(build_tag("alice", "Thesis"), "ds01-alice/thesis");
    }
}

#[cfg(test)]
mod start_tests {
    use super::*;
    use std::cell::RefCell;

    /// Docker as `container deploy` meets it: a list, and a create that
    /// answers with `outcome`.
    struct FakeDocker {
        list: Vec<DockerContainer>,
        outcome: Result<String, String>,
        created: RefCell<Vec<Create>>,
    }

    impl DockerApi for FakeDocker {
        fn containers(&self) -> Result<Vec<DockerContainer>, String> {
            Ok(self.list.clone())
        }
        fn stop(&self, _: &str) -> Result<(), String> {
            Err("not asked".into())
        }
        fn create_and_start(&self, c: &Create, _: Duration) -> Result<String, String> {
            self.created.borrow_mut().push(c.clone());
            self.outcome.clone()
        }
    }

    fn spec() -> Spec {
        Spec {
            user: "alice".into(),
            name: "thesis".into(),
            image: "pytorch".into(),
            project: "/home/alice/thesis".into(),
            home: "/home/alice".into(),
            gpu: GpuChoice::Slice,
            wait: Some("30m".into()),
            shm_size: None,
            env: vec!["A=1".into()],
            ports: vec![],
            cmd: vec![],
        }
    }

    fn docker(list: Vec<DockerContainer>, outcome: Result<String, String>) -> FakeDocker {
        FakeDocker {
            list,
            outcome,
            created: RefCell::new(Vec::new()),
        }
    }

    #[test]
    fn a_deploy_creates_what_the_spec_says_and_tells_ds01_s_refusal_plainly() {
        let c = spec().create("alice-thesis", 8 << 30, &[("8888".into(), "8888".into())]);
        let d = docker(vec![], Ok("abc".into()));
        assert_eq!(
            start(&d, &c, Duration::from_secs(60)),
            Ok(Deployed::Started("abc".into()))
        );
        let sent = d.created.borrow()[0].clone();
        assert_eq!(sent.name, "alice-thesis");
        assert_eq!(sent.labels[USER_LABEL], "alice");
        assert_eq!(sent.labels[NAME_LABEL], "thesis");
        assert_eq!(sent.binds, ["/home/alice:/home/alice"]);
        assert!(sent.env.contains(&"NVIDIA_VISIBLE_DEVICES=all".to_string()));
        assert!(sent.env.contains(&"DS01_GPU_WAIT=30m".to_string()));
        assert_eq!(sent.cmd, keep_alive());
        // A refusal from the runtime, wrapped by Docker: ds01's words alone.
        let d = docker(
            vec![],
            Err("failed to create task: OCI runtime create failed: ds01: no MIG slice free (7 of 7 in use): unknown".into()),
        );
        assert_eq!(
            start(&d, &c, Duration::from_secs(60)),
            Ok(Deployed::Refused(
                "ds01: no MIG slice free (7 of 7 in use)".into()
            ))
        );
        // Any other failure is an error naming the container.
        let d = docker(vec![], Err("no such image: pytorch".into()));
        assert!(
            start(&d, &c, Duration::from_secs(60))
                .unwrap_err()
                .contains("no such image")
        );
    }

    #[test]
    fn a_deploy_onto_a_name_the_user_has_creates_nothing() {
        let mine = DockerContainer {
            id: "old".into(),
            name: "alice-thesis".into(),
            state: "exited".into(),
            ..DockerContainer::default()
        };
        let c = spec().create("alice-thesis", 1, &[]);
        let d = docker(vec![mine], Ok("new".into()));
        let e = start(&d, &c, Duration::from_secs(1)).unwrap_err();
        assert!(
            e.contains("already have a container \"thesis\" (exited)"),
            "{e}"
        );
        assert!(d.created.borrow().is_empty());
    }
}
