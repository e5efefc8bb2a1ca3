//! User and group look-ups for the static runtime. First in the snapshot
//! the CLI keeps ([`ds01_core::accounts`]), while the files it was taken
//! from are unchanged. Otherwise: a static binary cannot load NSS modules
//! (LDAP, SSSD: what university servers use), so it asks the small,
//! dynamically linked `ds01-accounts` beside it, once per question per
//! process, and only where a container is judged. A user found by uid
//! comes with its groups: one question answers both.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ds01_core::accounts::{self, Saved, Snapshot};
use ds01_core::identity::Accounts;
use ds01_core::policy::Groups;

pub struct HelperAccounts {
    helper: PathBuf,
    /// Groups by user name, as answered.
    groups: RefCell<HashMap<String, Vec<String>>>,
    /// Where the snapshot is; none: only the helper is asked.
    state_dir: Option<PathBuf>,
    /// The admin group: a snapshot that makes someone an admin is asked
    /// again of NSS (admins are few, and a demotion must hold at once).
    admin_group: String,
    /// The snapshot, read at the first question.
    snapshot: OnceCell<Option<Saved>>,
}

impl HelperAccounts {
    pub fn beside(exe: &Path) -> HelperAccounts {
        HelperAccounts {
            helper: exe.with_file_name("ds01-accounts"),
            groups: RefCell::new(HashMap::new()),
            state_dir: None,
            admin_group: String::new(),
            snapshot: OnceCell::new(),
        }
    }

    /// Looks in the state directory's snapshot first, except for members
    /// of `admin_group`.
    pub fn with_snapshot(mut self, state_dir: &Path, admin_group: &str) -> HelperAccounts {
        self.state_dir = Some(state_dir.to_path_buf());
        self.admin_group = admin_group.to_string();
        self
    }

    fn snapshot(&self) -> Option<&Saved> {
        self.snapshot
            .get_or_init(|| {
                let dir = self.state_dir.as_deref()?;
                Snapshot::load(dir, &accounts::watched())
            })
            .as_ref()
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
        if let Some(u) = self.snapshot().and_then(|s| s.user(user))
            && !u.groups.contains(&self.admin_group)
        {
            return u.groups;
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
        if let Some(u) = self.snapshot().and_then(|s| s.user(user)) {
            return Some(u.home);
        }
        self.ask(&["home", user])
            .into_iter()
            .next()
            .map(PathBuf::from)
    }

    fn user_name(&self, uid: u32) -> Option<String> {
        if let Some(u) = self.snapshot().and_then(|s| s.by_uid(uid)) {
            return Some(u.name);
        }
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
    fn the_snapshot_answers_first_and_the_helper_what_it_lacks() {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        struct Groups2;
        impl Groups for Groups2 {
            fn groups_of(&self, _: &str) -> Vec<String> {
                vec!["students".into()]
            }
        }
        Snapshot::take(
            &accounts::watched(),
            [("alice".to_string(), 1000, PathBuf::from("/home/alice"))],
            &Groups2,
        )
        .save(&state)
        .unwrap();
        let a = helper(dir.path(), "bob\\nstaff\\n").with_snapshot(&state, "ds01-admin");
        assert_eq!(a.groups_of("alice"), ["students"]);
        assert_eq!(a.user_name(1000).as_deref(), Some("alice"));
        assert_eq!(a.home_of("alice"), Some(PathBuf::from("/home/alice")));
        assert!(asked(dir.path()).is_empty(), "the snapshot answered");
        // Not in it (a directory service's user): NSS is asked.
        assert_eq!(a.user_name(1001).as_deref(), Some("bob"));
        assert_eq!(asked(dir.path()), ["user 1001"]);
        // An admin by the snapshot is asked again: a demotion holds at once.
        let b = helper(dir.path(), "students\\n").with_snapshot(&state, "students");
        assert_eq!(b.groups_of("alice"), ["students"]);
        assert_eq!(asked(dir.path()), ["user 1001", "groups alice"]);
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
