//! Dev Containers on this server: writing a `devcontainer.json` fit for it
//! (`devcontainer init`), checking and repairing one (`devcontainer check
//! [--fix]`), and the image catalog both rely on.

pub mod catalog;
pub mod check;
pub mod doc;
pub mod fix;
pub mod template;
pub mod write;

use std::path::{Path, PathBuf};

/// Where a project keeps its devcontainer.json, in the order VS Code looks.
pub const LOCATIONS: [&str; 2] = [".devcontainer/devcontainer.json", ".devcontainer.json"];

/// The file for PATH: a file as given, or the first of [`LOCATIONS`] in a directory.
pub fn locate(path: &Path) -> Result<PathBuf, String> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(format!("{path:?} does not exist"));
    }
    LOCATIONS
        .iter()
        .map(|l| path.join(l))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no .devcontainer/devcontainer.json or .devcontainer.json in {path:?}; create one with: devcontainer init"
            )
        })
}
