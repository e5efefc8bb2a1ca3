//! `ds01-accounts`: the system's user database (NSS: files, LDAP, SSSD) for
//! the static `ds01-runtime`, which cannot load NSS modules itself. Built
//! dynamically linked, and small, so one question costs about one exec.
//!
//!     ds01-accounts groups USER   the groups USER is in, one per line
//!     ds01-accounts user UID      the user's name, then its groups
//!     ds01-accounts home USER     the user's home directory
//!
//! Exit 0 with the answer, 1 for a uid with no user, 2 for bad usage.

use ds01_core::identity::{Accounts, SystemAccounts};
use ds01_core::policy::Groups;

const USAGE: &str =
    "usage: ds01-accounts groups USER | ds01-accounts user UID | ds01-accounts home USER";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let code = match args.as_slice() {
        ["groups", user] => {
            print_lines(SystemAccounts.groups_of(user));
            0
        }
        ["home", user] => match SystemAccounts.home_of(user) {
            Some(h) => {
                print_lines([h.to_string_lossy().into_owned()]);
                0
            }
            None => 1,
        },
        ["user", uid] => match uid.parse::<u32>() {
            Ok(uid) => match SystemAccounts.user_name(uid) {
                Some(name) => {
                    let groups = SystemAccounts.groups_of(&name);
                    print_lines(std::iter::once(name).chain(groups));
                    0
                }
                None => 1,
            },
            Err(_) => {
                eprintln!("ds01-accounts: uid {uid:?} is not a number; {USAGE}");
                2
            }
        },
        _ => {
            eprintln!("ds01-accounts: {USAGE}");
            2
        }
    };
    std::process::exit(code);
}

fn print_lines(lines: impl IntoIterator<Item = String>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
}
