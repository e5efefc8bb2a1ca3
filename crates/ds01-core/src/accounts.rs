//! A root-owned snapshot of the users and their groups, for the static
//! runtime: a GPU create looks its owner up here in microseconds, where
//! asking `ds01-accounts` (NSS, in a process of its own) costs a
//! millisecond or more.
//!
//! The CLI writes it (`ds01 gpus refresh`, and every reaper pass). It is
//! trusted only while `/etc/passwd`, `/etc/group` and `/etc/nsswitch.conf`
//! are the files it was taken from; a user it does not hold (LDAP and SSSD
//! users are seldom enumerated) is asked of NSS as before. A change made in
//! a directory service alone reaches it at the next pass, within a minute.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::fsutil;
use crate::policy::Groups;

/// The snapshot's file, in the state directory: lines of tab-separated
/// fields, as `/etc/group` is, read in a few microseconds (`taken`, one
/// `stamp` a watched file, one `user` a user: name, uid, home, groups).
pub const FILE: &str = "accounts.tsv";
/// The files whose change makes a snapshot stale.
pub const WATCHED: [&str; 3] = ["/etc/passwd", "/etc/group", "/etc/nsswitch.conf"];
/// More users than this are not written down: such a host asks NSS.
const MAX_USERS: usize = 50_000;
/// How long a snapshot is trusted at most: a change made in a directory
/// service alone touches no watched file, and the reaper's timer writes a
/// new one each minute.
pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Which version of a file a snapshot was taken from (all zero: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Stamp {
    fn of(path: &Path) -> Stamp {
        match std::fs::metadata(path) {
            Ok(m) => Stamp {
                dev: m.dev(),
                ino: m.ino(),
                size: m.size(),
                mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            },
            Err(_) => Stamp {
                dev: 0,
                ino: 0,
                size: 0,
                mtime_ns: 0,
                ctime_ns: 0,
            },
        }
    }
}

/// One user as NSS gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// When it was taken, in seconds since the epoch.
    pub taken: u64,
    /// The watched files, in the order of the list they were taken by.
    pub stamps: Vec<Stamp>,
    pub users: Vec<User>,
}

impl Snapshot {
    /// Takes one: the watched files' stamps first, so that a change while
    /// the users are read makes it stale at once.
    pub fn take(
        watched: &[&Path],
        users: impl IntoIterator<Item = (String, u32, PathBuf)>,
        groups: &dyn Groups,
    ) -> Snapshot {
        let taken = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let stamps = watched.iter().map(|p| Stamp::of(p)).collect();
        let users = users
            .into_iter()
            .take(MAX_USERS)
            .map(|(name, uid, home)| User {
                groups: groups.groups_of(&name),
                name,
                uid,
                home,
            })
            .collect();
        Snapshot {
            taken,
            stamps,
            users,
        }
    }

    /// Writes it into the state directory, readable by all (as `id` is).
    /// A user whose name, home or groups hold a tab, a newline or a comma
    /// is left out: the runtime then asks NSS for them.
    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        use std::fmt::Write;
        fsutil::ensure_dir(state_dir)?;
        let mut text = format!("taken\t{}\n", self.taken);
        for s in &self.stamps {
            let _ = writeln!(
                text,
                "stamp\t{}\t{}\t{}\t{}\t{}",
                s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns
            );
        }
        let plain = |s: &str| !s.contains(['\t', '\n', ',']);
        for u in &self.users {
            let home = u.home.to_string_lossy();
            if !plain(&u.name) || !plain(&home) || !u.groups.iter().all(|g| plain(g)) {
                continue;
            }
            let _ = writeln!(
                text,
                "user\t{}\t{}\t{home}\t{}",
                u.name,
                u.uid,
                u.groups.join(",")
            );
        }
        fsutil::write_atomic(&state_dir.join(FILE), text.as_bytes(), 0o644)
    }

    /// The saved snapshot, if root wrote it into a directory only root
    /// writes, within [`MAX_AGE`], and the watched files are the ones it
    /// was taken from. Its users are read when asked: a host may have
    /// thousands, and a create asks for one.
    pub fn load(state_dir: &Path, watched: &[&Path]) -> Option<Saved> {
        fsutil::check_dir(state_dir).ok()?;
        let bytes = fsutil::read_trusted(&state_dir.join(FILE)).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (taken, stamps) = header(&text)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let fresh = taken <= now + 60 && now.saturating_sub(taken) <= MAX_AGE.as_secs();
        let current: Vec<Stamp> = watched.iter().map(|p| Stamp::of(p)).collect();
        (fresh && stamps == current).then_some(Saved { text })
    }
}

/// A snapshot as [`Snapshot::save`] wrote it, trusted: its `user` lines
/// are read one at a time, when asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    text: String,
}

impl Saved {
    pub fn user(&self, name: &str) -> Option<User> {
        // No name the snapshot holds has these (see `save`).
        if name.contains(['\t', '\n', ',']) {
            return None;
        }
        let needle = format!("\nuser\t{name}\t");
        let at = crate::find::find(self.text.as_bytes(), needle.as_bytes())?;
        user_line(self.text[at + 1..].lines().next()?)
    }

    pub fn by_uid(&self, uid: u32) -> Option<User> {
        let uid = uid.to_string();
        self.text
            .lines()
            .filter(|l| l.starts_with("user\t"))
            .find(|l| l.split('\t').nth(2) == Some(uid.as_str()))
            .and_then(user_line)
    }
}

/// The `taken` and `stamp` lines that open a saved snapshot; `None` where
/// it is not the format.
fn header(text: &str) -> Option<(u64, Vec<Stamp>)> {
    let mut lines = text.lines();
    let taken = lines.next()?.strip_prefix("taken\t")?.parse().ok()?;
    let mut stamps = Vec::new();
    for line in lines {
        let Some(rest) = line.strip_prefix("stamp\t") else {
            break;
        };
        let mut f = rest.split('\t');
        let mut u = || f.next()?.parse::<u64>().ok();
        let (dev, ino, size) = (u()?, u()?, u()?);
        let mut i = || f.next()?.parse::<i64>().ok();
        let (mtime_ns, ctime_ns) = (i()?, i()?);
        stamps.push(Stamp {
            dev,
            ino,
            size,
            mtime_ns,
            ctime_ns,
        });
    }
    Some((taken, stamps))
}

/// One `user` line: name, uid, home, groups (comma-separated).
fn user_line(line: &str) -> Option<User> {
    let mut f = line.strip_prefix("user\t")?.split('\t');
    let name = f.next()?.to_string();
    let uid = f.next()?.parse().ok()?;
    let home = PathBuf::from(f.next()?);
    let groups = f
        .next()?
        .split(',')
        .filter(|g| !g.is_empty())
        .map(String::from)
        .collect();
    f.next().is_none().then_some(User {
        name,
        uid,
        home,
        groups,
    })
}

/// The watched files as paths.
pub fn watched() -> [&'static Path; 3] {
    WATCHED.map(Path::new)
}

/// Every user NSS enumerates (`getpwent`): the local ones, and those of a
/// directory service only where it enumerates.
pub fn enumerate() -> Vec<(String, u32, PathBuf)> {
    use std::ffi::CStr;
    let mut out = Vec::new();
    // SAFETY: getpwent's results are copied before the next call; this
    // runs in the single-threaded CLI, which makes no other passwd call
    // meanwhile.
    unsafe {
        libc::setpwent();
        loop {
            let pw = libc::getpwent();
            if pw.is_null() || out.len() >= MAX_USERS {
                break;
            }
            out.push((
                CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned(),
                (*pw).pw_uid,
                PathBuf::from(CStr::from_ptr((*pw).pw_dir).to_string_lossy().into_owned()),
            ));
        }
        libc::endpwent();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Students;
    impl Groups for Students {
        fn groups_of(&self, user: &str) -> Vec<String> {
            vec![user.to_string(), "students".into()]
        }
    }

    #[test]
    fn a_snapshot_holds_while_the_watched_files_are_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let passwd = d.path().join("passwd");
        let group = d.path().join("group");
        std::fs::write(&passwd, "alice:x:1000:1000::/home/alice:/bin/sh\n").unwrap();
        std::fs::write(&group, "students:x:2000:alice\n").unwrap();
        let absent = d.path().join("nsswitch.conf");
        let watched = [passwd.as_path(), group.as_path(), absent.as_path()];
        let state = d.path().join("state");
        let snap = Snapshot::take(
            &watched,
            [("alice".to_string(), 1000, PathBuf::from("/home/alice"))],
            &Students,
        );
        snap.save(&state).unwrap();
        let got = Snapshot::load(&state, &watched).unwrap();
        assert_eq!(got.user("alice").as_ref(), snap.users.first());
        assert_eq!(got.user("alice").unwrap().groups, ["alice", "students"]);
        assert_eq!(got.by_uid(1000).unwrap().name, "alice");
        assert!(got.user("bob").is_none());
        // A user added (useradd replaces the file): stale.
        let new = d.path().join("passwd.new");
        std::fs::write(
            &new,
            "alice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::rename(&new, &passwd).unwrap();
        assert!(Snapshot::load(&state, &watched).is_none());
        // Taken again, it holds; a group file edited in place makes it stale.
        Snapshot::take(&watched, [], &Students)
            .save(&state)
            .unwrap();
        assert!(Snapshot::load(&state, &watched).is_some());
        std::fs::write(&group, "students:x:2000:alice,bob\n").unwrap();
        assert!(Snapshot::load(&state, &watched).is_none());
        // An nsswitch.conf appearing: stale too.
        Snapshot::take(&watched, [], &Students)
            .save(&state)
            .unwrap();
        std::fs::write(&absent, "passwd: files ldap\n").unwrap();
        assert!(Snapshot::load(&state, &watched).is_none());
    }

    #[test]
    fn a_user_the_format_cannot_hold_is_left_to_nss() {
        let d = tempfile::tempdir().unwrap();
        let watched: [&Path; 0] = [];
        let state = d.path().join("state");
        let users = [
            ("alice".to_string(), 1000, PathBuf::from("/home/alice")),
            ("tab".to_string(), 1001, PathBuf::from("/home/a\tb")),
        ];
        Snapshot::take(&watched, users, &Students)
            .save(&state)
            .unwrap();
        let got = Snapshot::load(&state, &watched).unwrap();
        assert!(got.user("alice").is_some());
        assert!(got.user("tab").is_none() && got.by_uid(1001).is_none());
        // Not the format: not trusted.
        std::fs::write(state.join(FILE), "taken\tsoon\n").unwrap();
        assert!(Snapshot::load(&state, &watched).is_none());
    }

    #[test]
    fn a_user_is_found_by_the_whole_name_or_uid() {
        let d = tempfile::tempdir().unwrap();
        let watched: [&Path; 0] = [];
        let state = d.path().join("state");
        let users =
            (0..2000).map(|i| (format!("u{i}"), 1000 + i, PathBuf::from(format!("/h/{i}"))));
        Snapshot::take(&watched, users, &Students)
            .save(&state)
            .unwrap();
        let got = Snapshot::load(&state, &watched).unwrap();
        // `u1` is a prefix of `u10`..`u1999`: only its own line answers.
        let u1 = got.user("u1").unwrap();
        assert_eq!((u1.uid, u1.home.as_path()), (1001, Path::new("/h/1")));
        assert_eq!(got.user("u1999").unwrap().groups, ["u1999", "students"]);
        assert_eq!(got.by_uid(2999).unwrap().name, "u1999");
        assert!(got.user("u2000").is_none() && got.by_uid(3000).is_none());
        // A name that would read across fields finds nothing.
        assert!(got.user("u1\t1001").is_none());
        assert!(got.user("").is_none());
    }

    #[test]
    fn an_old_snapshot_is_not_trusted() {
        let d = tempfile::tempdir().unwrap();
        let watched: [&Path; 0] = [];
        let state = d.path().join("state");
        let mut snap = Snapshot::take(&watched, [("a".into(), 1, "/h".into())], &Students);
        snap.save(&state).unwrap();
        assert!(Snapshot::load(&state, &watched).is_some());
        snap.taken -= MAX_AGE.as_secs() + 1;
        snap.save(&state).unwrap();
        assert!(Snapshot::load(&state, &watched).is_none());
        snap.taken += 2 * MAX_AGE.as_secs();
        snap.save(&state).unwrap();
        assert!(
            Snapshot::load(&state, &watched).is_none(),
            "from the future"
        );
    }

    #[test]
    fn a_snapshot_others_could_write_is_not_read() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let watched: [&Path; 0] = [];
        let state = d.path().join("state");
        Snapshot::take(&watched, [("a".into(), 1, "/h".into())], &Students)
            .save(&state)
            .unwrap();
        assert!(Snapshot::load(&state, &watched).is_some());
        let file = state.join(FILE);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(Snapshot::load(&state, &watched).is_none());
    }

    #[test]
    fn this_host_s_users_are_enumerated() {
        assert!(
            enumerate()
                .iter()
                .any(|(name, uid, _)| name == "root" && *uid == 0)
        );
    }
}
