//! The `ds01` CLI's library: what needs more than the core (NVML, the Docker
//! client, JSONC, CDI spec parsing), over [`ds01_core`].

pub mod bare_metal;
pub mod cdi_read;
pub mod deploy;
pub mod devcontainer;
pub mod docker;
pub mod docker_config;
pub mod doctor;
pub mod gate_setup;
pub mod host_gpus;
pub mod logs;
pub mod metrics;
pub mod notice;
pub mod nvml;
pub mod reap;
pub mod report;
pub mod scan;
pub mod views;
