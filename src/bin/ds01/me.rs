//! The user running this command, as the server knows them.

use std::ffi::CStr;
use std::path::PathBuf;

pub struct Me {
    pub name: String,
    /// The home directory from the user database (not $HOME, which a
    /// remote session may have set to something else).
    pub home: PathBuf,
}

pub fn me() -> anyhow::Result<Me> {
    // SAFETY: getpwuid returns static storage or null; copied at once.
    unsafe {
        let uid = libc::getuid();
        let pw = libc::getpwuid(uid);
        if pw.is_null() {
            anyhow::bail!("uid {uid} has no entry in the user database");
        }
        Ok(Me {
            name: CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned(),
            home: PathBuf::from(CStr::from_ptr((*pw).pw_dir).to_string_lossy().into_owned()),
        })
    }
}
