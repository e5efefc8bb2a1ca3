//! Choosing free devices for a request. Pure: the caller holds the ledger lock.

use crate::inventory::{Inventory, Kind, Unit};
use crate::ledger::Records;
use crate::request::{Profile, Request};

/// Why a request cannot be served; the text is what the user reads.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct Refusal(pub String);

const HINT: &str = "try later or see 'container ls --all'";

/// Picks `req.count` free units, all of one kind, in the inventory's
/// placement order. All or nothing.
pub fn choose<'a>(
    inv: &'a Inventory,
    held: &Records,
    req: &Request,
    allow_full: bool,
) -> Result<Vec<Unit<'a>>, Refusal> {
    let units = inv.units();
    match &req.profile {
        Profile::Full => {
            if !allow_full {
                return Err(Refusal(
                    "full GPUs are not handed out on this server (allow_full_gpu = false); \
                     unset DS01_GPU_PROFILE to get a MIG slice"
                        .into(),
                ));
            }
            pick(&units, held, req.count, "full GPU", |u| {
                u.kind == Kind::Full
            })
        }
        Profile::Mig(name) => {
            if !units
                .iter()
                .any(|u| u.mig.is_some_and(|m| &m.profile == name))
            {
                return Err(Refusal(format!(
                    "no {name} MIG slices on this host; profiles here: {}",
                    profiles(&units)
                )));
            }
            pick(&units, held, req.count, &format!("{name} MIG slice"), |u| {
                u.mig.is_some_and(|m| &m.profile == name)
            })
        }
        Profile::AnyMig => {
            let mig = pick(&units, held, req.count, "MIG slice", |u| {
                u.kind == Kind::Mig
            });
            match mig {
                Err(_) if allow_full => pick(&units, held, req.count, "full GPU", |u| {
                    u.kind == Kind::Full
                })
                .or(mig),
                other => other,
            }
        }
    }
}

fn pick<'a>(
    units: &[Unit<'a>],
    held: &Records,
    count: usize,
    what: &str,
    fits: impl Fn(&Unit) -> bool,
) -> Result<Vec<Unit<'a>>, Refusal> {
    let fitting: Vec<&Unit> = units.iter().filter(|u| fits(u)).collect();
    let free: Vec<Unit> = fitting
        .iter()
        .filter(|u| !held.holds(u.uuid))
        .map(|u| (*u).clone())
        .collect();
    let total = fitting.len();
    let used = total - free.len();
    if total == 0 {
        return Err(Refusal(format!("this host has no {what}")));
    }
    if free.len() >= count {
        return Ok(free.into_iter().take(count).collect());
    }
    Err(Refusal(if count == 1 {
        format!("no {what} free ({used} of {total} in use); {HINT}")
    } else {
        format!(
            "{count} {what}s asked for, {} free ({used} of {total} in use); {HINT}",
            free.len()
        )
    }))
}

fn profiles(units: &[Unit]) -> String {
    let mut names: Vec<&str> = units.iter().map(|u| u.profile()).collect();
    names.sort();
    names.dedup();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::sim;
    use crate::ledger::tests::{FakeHost, record};
    use std::path::Path;

    fn inv() -> Inventory {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sim/inventory.toml");
        sim::parse(&p, &std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    fn req(count: usize, profile: Profile) -> Request {
        Request { count, profile }
    }

    fn uuids(units: &[Unit]) -> Vec<String> {
        units.iter().map(|u| u.uuid.to_string()).collect()
    }

    #[test]
    fn default_request_gets_the_first_free_slice() {
        let inv = inv();
        let got = choose(&inv, &Records::default(), &req(1, Profile::AnyMig), false).unwrap();
        assert_eq!(got[0].kind, Kind::Mig);
        assert_eq!(got[0].mig.unwrap().gpu_instance, 7);
        // The next caller gets the next slice, never the same one.
        let host = FakeHost::default();
        let held = Records {
            records: vec![record("a", &[got[0].uuid], &host)],
        };
        let next = choose(&inv, &held, &req(1, Profile::AnyMig), false).unwrap();
        assert_eq!(next[0].mig.unwrap().gpu_instance, 8);
    }

    #[test]
    fn exhausted_slices_give_the_reason() {
        let inv = inv();
        let host = FakeHost::default();
        let all: Vec<String> = inv
            .units()
            .iter()
            .skip(1)
            .map(|u| u.uuid.to_string())
            .collect();
        let held = Records {
            records: vec![record(
                "a",
                &all.iter().map(String::as_str).collect::<Vec<_>>(),
                &host,
            )],
        };
        let e = choose(&inv, &held, &req(1, Profile::AnyMig), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no MIG slice free (7 of 7 in use); try later or see 'container ls --all'"
        );
        let e = choose(&inv, &held, &req(1, Profile::Mig("1g.10gb".into())), false).unwrap_err();
        assert!(
            e.to_string()
                .contains("no 1g.10gb MIG slice free (7 of 7 in use)"),
            "{e}"
        );
        // Where full GPUs are allowed, the default falls back to one.
        let got = choose(&inv, &held, &req(1, Profile::AnyMig), true).unwrap();
        assert_eq!(got[0].kind, Kind::Full);
    }

    #[test]
    fn full_gpu_only_where_allowed() {
        let inv = inv();
        let e = choose(&inv, &Records::default(), &req(1, Profile::Full), false).unwrap_err();
        assert!(e.to_string().contains("allow_full_gpu = false"), "{e}");
        let got = choose(&inv, &Records::default(), &req(1, Profile::Full), true).unwrap();
        assert_eq!(got[0].gpu.index, 0);
        assert_eq!(got[0].nodes()[0].path, "/dev/nvidia0");
        let e = choose(&inv, &Records::default(), &req(2, Profile::Full), true).unwrap_err();
        assert!(
            e.to_string().contains("2 full GPUs asked for, 1 free"),
            "{e}"
        );
    }

    #[test]
    fn several_devices_are_distinct_and_all_or_nothing() {
        let inv = inv();
        let got = choose(&inv, &Records::default(), &req(3, Profile::AnyMig), false).unwrap();
        let mut u = uuids(&got);
        u.dedup();
        assert_eq!(u.len(), 3);
        assert!(choose(&inv, &Records::default(), &req(8, Profile::AnyMig), false).is_err());
    }

    #[test]
    fn unknown_profile_lists_what_exists() {
        let e = choose(
            &inv(),
            &Records::default(),
            &req(1, Profile::Mig("3g.40gb".into())),
            false,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("no 3g.40gb MIG slices on this host; profiles here: 1g.10gb, full"),
            "{e}"
        );
    }
}
