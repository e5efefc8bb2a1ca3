//! The Docker Engine API over its socket (`DOCKER_HOST` honoured), with
//! bollard: one list call for every view.

use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use ds01::views::{DockerApi, DockerContainer};

pub struct Engine;

/// Runs `f` on a client for `DOCKER_HOST` (or the default socket) that
/// speaks the daemon's API version, on a single-threaded runtime.
pub fn with_docker<T, F>(f: impl FnOnce(Docker) -> F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    with_docker_for(Duration::from_secs(10), f)
}

/// As [`with_docker`], with requests allowed `timeout`.
pub fn with_docker_for<T, F>(timeout: Duration, f: impl FnOnce(Docker) -> F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let docker = Docker::connect_with_defaults()
            .map_err(|e| e.to_string())?
            .with_timeout(timeout);
        // Speak the daemon's API version, old or new.
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| e.to_string())?;
        f(docker).await
    })
}

impl DockerApi for Engine {
    fn stop(&self, id: &str) -> Result<(), String> {
        let id = id.to_string();
        // Docker's own grace time (10 s unless the container sets one) and
        // then some: the stop call returns when the container has exited.
        with_docker_for(Duration::from_secs(70), |docker| async move {
            docker
                .stop_container(&id, None::<bollard::query_parameters::StopContainerOptions>)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn containers(&self) -> Result<Vec<DockerContainer>, String> {
        with_docker(|docker| async move {
            let list = docker
                .list_containers(Some(ListContainersOptions {
                    all: true,
                    ..Default::default()
                }))
                .await
                .map_err(|e| e.to_string())?;
            Ok(list
                .into_iter()
                .map(|c| DockerContainer {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    status: c.status.unwrap_or_default(),
                    labels: c.labels.unwrap_or_default(),
                    mounts: c
                        .mounts
                        .unwrap_or_default()
                        .into_iter()
                        .map(|m| {
                            (
                                m.source.or(m.name).unwrap_or_default(),
                                m.destination.unwrap_or_default(),
                            )
                        })
                        .collect(),
                })
                .collect())
        })
    }
}

/// The runtimes `docker info` lists, by name.
pub fn runtime_names() -> Result<Vec<String>, String> {
    let info = with_docker(|docker| async move { docker.info().await.map_err(|e| e.to_string()) })?;
    Ok(info.runtimes.unwrap_or_default().into_keys().collect())
}
