//! ds01: fair, leak-free sharing of a host's NVIDIA GPUs and MIG slices
//! among Docker containers.
//!
//! The core has no command line in it: the `ds01-runtime` shim and the
//! `ds01` CLI are thin binaries over these modules. Side effects sit behind
//! [`host::Host`] (clock, processes, runc state) and
//! [`inventory::GpuSource`] (NVML or a simulated file).

pub mod access;
pub mod allocate;
pub mod audit;
pub mod cdi;
pub mod config;
pub mod devcontainer;
pub mod docker_config;
pub mod doctor;
pub mod driver;
pub mod fsutil;
pub mod host;
pub mod identity;
pub mod inventory;
pub mod ledger;
pub mod log;
pub mod oci;
pub mod policy;
pub mod recover;
pub mod request;
pub mod shim;
pub mod spec;
#[cfg(test)]
pub mod testing;
pub mod text;
pub mod views;
