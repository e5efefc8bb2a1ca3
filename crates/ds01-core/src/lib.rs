//! ds01-core: what the `ds01-runtime` shim and the `ds01` CLI share, with
//! no command line, no async and no Docker client in it.
//!
//! Side effects sit behind [`host::Host`] (clock, processes, runc state),
//! [`identity::Accounts`] and [`inventory::GpuSource`] (NVML, in the CLI, or
//! a simulated file), each with a fake for tests.

pub mod access;
pub mod accounts;
pub mod activity;
pub mod allocate;
pub mod audit;
pub mod cdi;
pub mod config;
pub mod driver;
pub mod find;
pub mod fsutil;
pub mod host;
pub mod identity;
pub mod idle;
pub mod inventory;
pub mod ledger;
pub mod log;
pub mod names;
pub mod oci;
pub mod policy;
pub mod queue;
pub mod record;
pub mod request;
pub mod shape;
pub mod share;
pub mod shim;
pub mod spec;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
pub mod time;
