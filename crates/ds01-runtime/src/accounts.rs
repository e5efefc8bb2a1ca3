//! User and group look-ups for the static runtime. A static binary cannot
//! load NSS modules (LDAP, SSSD: what university servers use), so it asks
//! the dynamically linked `ds01` beside it (`ds01 accounts ...`), once per
//! question per process, and only for GPU containers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ds01_core::identity::Accounts;
use ds01_core::policy::Groups;

pub struct HelperAccounts {
    cli: PathBuf,
    cache: RefCell<HashMap<Vec<String>, Vec<String>>>,
}

impl HelperAccounts {
    pub fn beside(exe: &std::path::Path) -> HelperAccounts {
        HelperAccounts {
            cli: exe.with_file_name("ds01"),
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// The lines `ds01 accounts ARGS` prints; none when it fails.
    fn ask(&self, args: &[&str]) -> Vec<String> {
        let key: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if let Some(hit) = self.cache.borrow().get(&key) {
            return hit.clone();
        }
        let lines: Vec<String> = Command::new(&self.cli)
            .arg("accounts")
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
            .unwrap_or_default();
        self.cache.borrow_mut().insert(key, lines.clone());
        lines
    }
}

impl Groups for HelperAccounts {
    fn groups_of(&self, user: &str) -> Vec<String> {
        self.ask(&["groups", user])
    }
}

impl Accounts for HelperAccounts {
    fn user_name(&self, uid: u32) -> Option<String> {
        self.ask(&["name", &uid.to_string()]).into_iter().next()
    }
}
