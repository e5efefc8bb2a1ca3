//! `ds01 accounts groups USER` / `ds01 accounts name UID`: the system's
//! user database (NSS: files, LDAP, SSSD) for the static runtime, which
//! cannot load NSS modules itself. One answer per line.

use std::process::ExitCode;

use ds01_core::identity::{Accounts, SystemAccounts};
use ds01_core::policy::Groups;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    query: Query,
}

#[derive(clap::Subcommand)]
enum Query {
    /// The groups USER belongs to
    Groups { user: String },
    /// The name of the user with this uid
    Name { uid: u32 },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.query {
        Query::Groups { user } => {
            for g in SystemAccounts.groups_of(&user) {
                println!("{g}");
            }
        }
        Query::Name { uid } => match SystemAccounts.user_name(uid) {
            Some(n) => println!("{n}"),
            None => return Ok(ExitCode::from(1)),
        },
    }
    Ok(ExitCode::SUCCESS)
}
