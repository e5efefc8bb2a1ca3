//! The Docker port: what ds01's commands ask of Docker, as a trait, so
//! that the views, the reaper and `container deploy` are tested without a
//! daemon. The adapter over the Engine API is the bin's (`Engine`).

use std::collections::HashMap;
use std::time::Duration;

/// What Docker's list call says about one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DockerContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    /// `running`, `exited`, `created`, `paused`, ...
    pub state: String,
    /// Docker's own words: `Up 5 minutes`, `Exited (0) 2 hours ago`.
    pub status: String,
    pub labels: HashMap<String, String>,
    /// (source, destination) of each mount.
    pub mounts: Vec<(String, String)>,
}

/// Docker, as far as ds01's commands need it. The bin's `Engine` speaks
/// to the daemon; tests give a fake.
pub trait DockerApi {
    /// Every container, running or not: one list call.
    fn containers(&self) -> Result<Vec<DockerContainer>, String>;
    /// A normal `docker stop` (SIGTERM, then SIGKILL after its grace time).
    fn stop(&self, id: &str) -> Result<(), String>;
    /// Builds `context` (a tar of the project) into `tag`, handing each
    /// line of the build's output to `progress`.
    /// (A port that only lists and stops, a test's, builds nothing.)
    fn build(
        &self,
        _context: Vec<u8>,
        _dockerfile: &str,
        _tag: &str,
        _progress: &mut dyn FnMut(&str),
    ) -> Result<(), String> {
        Err("this Docker port builds no images".into())
    }
    /// Creates the container and starts it, allowing `timeout` (a GPU
    /// create may wait in the queue). One that will not start is removed,
    /// so its name is free again. Returns its id, or Docker's error.
    fn create_and_start(&self, _c: &Create, _timeout: Duration) -> Result<String, String> {
        Err("this Docker port creates no containers".into())
    }
}

/// A container to create, in Docker's terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Create {
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub working_dir: String,
    /// `SOURCE:DEST` binds.
    pub binds: Vec<String>,
    pub shm_size: i64,
    /// (host port, container port), TCP.
    pub ports: Vec<(String, String)>,
}
