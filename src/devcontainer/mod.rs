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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_config_gets_its_own_message() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::os::unix::fs::symlink("b", p.join("a")).unwrap();
        std::os::unix::fs::symlink("a", p.join("b")).unwrap();
        assert!(
            locate_all(&p.join("a"))
                .unwrap_err()
                .contains("symbolic link loop")
        );
        let fifo = std::ffi::CString::new(p.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid C string and mode.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(
            locate_all(&p.join("fifo"))
                .unwrap_err()
                .contains("neither a file nor a directory")
        );
        assert!(
            locate_all(&p.join("nope"))
                .unwrap_err()
                .contains("does not exist")
        );
        let empty = p.join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(
            locate_all(&empty)
                .unwrap_err()
                .contains("devcontainer init")
        );
        // Several configs: all of them, the usual places first.
        for f in [
            ".devcontainer/devcontainer.json",
            ".devcontainer/b/devcontainer.json",
            ".devcontainer/a/devcontainer.json",
        ] {
            std::fs::create_dir_all(empty.join(f).parent().unwrap()).unwrap();
            std::fs::write(empty.join(f), "{}").unwrap();
        }
        let found: Vec<String> = locate_all(&empty)
            .unwrap()
            .iter()
            .map(|f| f.strip_prefix(&empty).unwrap().display().to_string())
            .collect();
        assert_eq!(
            found,
            [
                ".devcontainer/devcontainer.json",
                ".devcontainer/a/devcontainer.json",
                ".devcontainer/b/devcontainer.json"
            ]
        );
    }
}
