//! End to end through a private dockerd whose default runtime is
//! ds01-runtime, over the simulated inventory, as root.
//!
//! Skipped (with a note) without root, dockerd or runc, unless
//! `DS01_E2E=1`, which the test command sets: then their absence fails.
//! `DS01_RUNTIME_BIN` and `DS01_CLI_BIN` point the suite at installed
//! binaries (CI runs it against the .deb's).

#[path = "../common/mod.rs"]
mod common;

mod allocation;
mod gate;
mod harness;
mod monitoring;
mod share;
mod workflow;
