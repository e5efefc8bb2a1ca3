//! Writing a `devcontainer.json` (`devcontainer init`, `check --fix`,
//! `project init`): whole or not at all, the earlier file kept beside it.

use std::path::{Path, PathBuf};

use ds01_core::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create {path:?}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot keep a backup at {path:?}: {source}")]
    Backup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path:?}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes the file (temp file and rename), keeping any earlier one as
/// `<file>.bak`, whose path is returned. A symlink stays one: the file it
/// points to is written, with its mode kept.
pub fn write_file(file: &Path, text: &str) -> Result<Option<PathBuf>, WriteError> {
    use std::os::unix::fs::PermissionsExt;
    let resolved;
    let file = if file.is_symlink() {
        resolved = std::fs::canonicalize(file).map_err(|source| WriteError::File {
            path: file.to_path_buf(),
            source,
        })?;
        resolved.as_path()
    } else {
        file
    };
    let mode = std::fs::metadata(file).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| WriteError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut backup = None;
    if file.exists() {
        let b = backup_path(file);
        std::fs::copy(file, &b).map_err(|source| WriteError::Backup {
            path: b.clone(),
            source,
        })?;
        backup = Some(b);
    }
    fsutil::write_atomic(file, text.as_bytes(), mode).map_err(|source| WriteError::File {
        path: file.to_path_buf(),
        source,
    })?;
    Ok(backup)
}

pub fn backup_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    file.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_keeps_the_earlier_file_as_bak() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".devcontainer/devcontainer.json");
        assert_eq!(write_file(&f, "one").unwrap(), None);
        let bak = write_file(&f, "two").unwrap().unwrap();
        assert_eq!(bak, dir.path().join(".devcontainer/devcontainer.json.bak"));
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "two");
        assert_eq!(std::fs::read_to_string(&bak).unwrap(), "one");
    }

    #[test]
    fn a_symlinked_file_is_written_through_the_link_keeping_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("shared.json");
        std::fs::write(&real, "one").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("devcontainer.json");
        std::os::unix::fs::symlink("shared.json", &link).unwrap();
        write_file(&link, "two").unwrap();
        assert!(link.is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "two");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn an_unwritable_place_is_named() {
        let err = write_file(Path::new("/proc/ds01-no/devcontainer.json"), "x").unwrap_err();
        assert!(err.to_string().contains("\"/proc/ds01-no\""), "{err}");
    }
}
