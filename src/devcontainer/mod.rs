//! Dev Containers on this server: writing a `devcontainer.json` fit for it
//! (`devcontainer init`), checking and repairing one (`devcontainer check
//! [--fix]`), and the image catalog both rely on.

pub mod catalog;
pub mod check;
pub mod compose;
pub mod doc;
pub mod fix;
pub mod template;
pub mod write;

use std::path::{Path, PathBuf};

/// Where a project keeps its devcontainer.json, in the order VS Code looks.
pub const LOCATIONS: [&str; 2] = [".devcontainer/devcontainer.json", ".devcontainer.json"];

/// The file for PATH: a file as given, or the first of [`LOCATIONS`] in a directory.
pub fn locate(path: &Path) -> Result<PathBuf, String> {
    locate_all(path).map(|mut all| all.remove(0))
}

/// Every config for PATH, as VS Code finds them: a file as given; in a
/// directory, [`LOCATIONS`] and `.devcontainer/<name>/devcontainer.json`.
/// What is not a readable file or directory gets its own message.
pub fn locate_all(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!("{path:?} is a symbolic link loop"));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{path:?} does not exist"));
        }
        Err(e) => return Err(format!("{path:?}: {e}")),
    };
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !meta.is_dir() {
        return Err(format!(
            "{path:?} is neither a file nor a directory (a FIFO or a device?)"
        ));
    }
    if let Err(e) = std::fs::read_dir(path) {
        return Err(format!("cannot read the directory {path:?}: {e}"));
    }
    let mut found: Vec<PathBuf> = LOCATIONS
        .iter()
        .map(|l| path.join(l))
        .filter(|p| p.is_file())
        .collect();
    if let Ok(dirs) = std::fs::read_dir(path.join(".devcontainer")) {
        let mut subs: Vec<PathBuf> = dirs
            .flatten()
            .map(|e| e.path().join("devcontainer.json"))
            .filter(|p| p.is_file())
            .collect();
        subs.sort();
        found.extend(subs);
    }
    if found.is_empty() {
        return Err(format!(
            "no .devcontainer/devcontainer.json or .devcontainer.json in {path:?}; create one with: devcontainer init"
        ));
    }
    Ok(found)
}
