//! The Docker Engine API over its socket (`DOCKER_HOST` honoured), with
//! bollard: one list call for every view.

use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use ds01::docker::{Create, DockerApi, DockerContainer};
use futures_util::StreamExt;

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
    fn build(
        &self,
        context: Vec<u8>,
        dockerfile: &str,
        tag: &str,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), String> {
        let options = BuildImageOptions {
            dockerfile: dockerfile.to_string(),
            t: Some(tag.to_string()),
            rm: true,
            ..Default::default()
        };
        with_docker_for(Duration::from_secs(3600), |docker| async move {
            let mut stream =
                docker.build_image(options, None, Some(bollard::body_full(context.into())));
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| format!("the build failed: {e}"))?;
                if let Some(s) = info.stream {
                    progress(&s);
                }
                if let Some(e) = info.error_detail {
                    return Err(format!(
                        "the build failed: {}",
                        e.message.unwrap_or_default()
                    ));
                }
            }
            Ok(())
        })
    }

    fn create_and_start(&self, c: &Create, timeout: Duration) -> Result<String, String> {
        let port_map: std::collections::HashMap<String, Option<Vec<PortBinding>>> = c
            .ports
            .iter()
            .map(|(host, inner)| {
                (
                    format!("{inner}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: None,
                        host_port: Some(host.clone()),
                    }]),
                )
            })
            .collect();
        let body = ContainerCreateBody {
            image: Some(c.image.clone()),
            cmd: Some(c.cmd.clone()),
            env: Some(c.env.clone()),
            labels: Some(c.labels.clone()),
            working_dir: Some(c.working_dir.clone()),
            exposed_ports: (!port_map.is_empty()).then(|| port_map.keys().cloned().collect()),
            host_config: Some(HostConfig {
                binds: Some(c.binds.clone()),
                shm_size: Some(c.shm_size),
                port_bindings: (!port_map.is_empty()).then_some(port_map),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = c.name.clone();
        with_docker_for(timeout, |docker| async move {
            let created = docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(name),
                        ..Default::default()
                    }),
                    body,
                )
                .await
                .map_err(|e| e.to_string())?;
            if let Err(e) = docker.start_container(&created.id, None).await {
                // A refused start leaves a created container: take it away,
                // so the same name works next time.
                let _ = docker
                    .remove_container(
                        &created.id,
                        Some(RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        }),
                    )
                    .await;
                return Err(e.to_string());
            }
            Ok(created.id)
        })
    }

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
