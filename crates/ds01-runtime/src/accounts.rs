//! User and group look-ups for the static runtime. A static binary cannot
//! load NSS modules (LDAP, SSSD: what university servers use), so it asks
//! the small, dynamically linked `ds01-accounts` beside it, once per
//! question per process, and only for GPU containers. A user found by uid
//! comes with its groups: one question answers both.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ds01_core::identity::Accounts;
use ds01_core::policy::Groups;

pub struct HelperAccounts {
    helper: PathBuf,
    /// Groups by user name, as answered.
    groups: RefCell<HashMap<String, Vec<String>>>,
}

impl HelperAccounts {
    pub fn beside(exe: &std::path::Path) -> HelperAccounts {
        HelperAccounts {
            helper: exe.with_file_name("ds01-accounts"),
            groups: RefCell::new(HashMap::new()),
        }
    }

    /// The lines `ds01-accounts ARGS` prints; none when it fails.
    fn ask(&self, args: &[&str]) -> Vec<String> {
        Command::new(&self.helper)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Groups for HelperAccounts {
    fn groups_of(&self, user: &str) -> Vec<String> {
        if let Some(hit) = self.groups.borrow().get(user) {
            return hit.clone();
        }
        let groups = self.ask(&["groups", user]);
        self.groups
            .borrow_mut()
            .insert(user.to_string(), groups.clone());
        groups
    }
}

impl Accounts for HelperAccounts {
    fn home_of(&self, user: &str) -> Option<PathBuf> {
        self.ask(&["home", user])
            .into_iter()
            .next()
            .map(PathBuf::from)
    }

    fn user_name(&self, uid: u32) -> Option<String> {
        let mut lines = self.ask(&["user", &uid.to_string()]).into_iter();
        let name = lines.next()?;
        self.groups
            .borrow_mut()
            .insert(name.clone(), lines.collect());
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// One test at a time: a script being written while another test forks
    /// could not be run (ETXTBSY).
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// A stand-in helper beside a would-be runtime that logs each question.
    fn helper(dir: &std::path::Path, answer: &str) -> HelperAccounts {
        let script = dir.join("ds01-accounts");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\nprintf '{answer}'\n",
                dir.join("asked").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        HelperAccounts::beside(&dir.join("ds01-runtime"))
    }

    fn asked(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("asked"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn an_owner_by_uid_and_its_groups_cost_one_question() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let a = helper(dir.path(), "alice\\nstudents\\ngpu-heavy\\n");
        assert_eq!(a.user_name(1000).as_deref(), Some("alice"));
        assert_eq!(a.groups_of("alice"), ["students", "gpu-heavy"]);
        assert_eq!(a.groups_of("alice"), ["students", "gpu-heavy"]);
        assert_eq!(asked(dir.path()), ["user 1000"]);
        // Another user's groups are a question of their own, asked once.
        a.groups_of("bob");
        a.groups_of("bob");
        assert_eq!(asked(dir.path()), ["user 1000", "groups bob"]);
    }

    #[test]
    fn a_missing_or_silent_helper_answers_nothing() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let a = HelperAccounts::beside(&dir.path().join("ds01-runtime"));
        assert_eq!(a.user_name(1000), None);
        assert!(a.groups_of("alice").is_empty());
        let silent = helper(dir.path(), "");
        assert_eq!(silent.user_name(4_000_000), None);
    }
}
