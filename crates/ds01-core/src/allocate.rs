//! Choosing free devices for a request, within the owner's limits. Pure:
//! the caller holds the ledger lock.
//!
//! Placement is deterministic: the smallest fitting MIG slice, packed onto
//! GPUs that already have slices in use (then by GPU index and instance id),
//! so that whole GPUs stay free for those allowed them; full GPUs go by index.

use std::collections::HashSet;

use crate::inventory::{Inventory, Unit, UnitKind};
use crate::policy::Effective;
use crate::record::{Record, Records};
use crate::request::{Profile, Request};
use crate::text::{describe, gpueq_text, short};

/// Why a request cannot be served; the text is what the user reads.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct Refusal(pub String);

const HINT: &str = "try later or see 'container ls --all'";
const EPSILON: f64 = 1e-9;

/// What one owner holds now. Containers of unknown owners count together.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage<'r> {
    pub records: Vec<&'r Record>,
    pub devices: usize,
    pub gpueq: f64,
}

pub fn usage<'r>(held: &'r Records, user: Option<&str>) -> Usage<'r> {
    let records: Vec<&Record> = held
        .records
        .iter()
        .filter(|r| r.user.as_deref() == user)
        .collect();
    Usage {
        devices: records.iter().map(|r| r.devices.len()).sum(),
        gpueq: records.iter().map(|r| r.gpueq).sum(),
        records,
    }
}

fn held_by(inv: &Inventory, records: &[&Record]) -> String {
    records
        .iter()
        .map(|r| format!("{}: {}", short(&r.container_id), describe(inv, r)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Picks `req.count` free units of one kind for `who`, within `limits`.
/// All or nothing.
pub fn choose<'a>(
    inv: &'a Inventory,
    held: &Records,
    req: &Request,
    who: &str,
    limits: &Effective,
    used: &Usage,
) -> Result<Vec<Unit<'a>>, Refusal> {
    if let Some(max) = limits.max_devices_per_container.value
        && req.count > max as usize
    {
        return Err(Refusal(format!(
            "{who} may use at most {max} device(s) per container ({}), and this one asks for {}; ask for fewer",
            limits.max_devices_per_container.from, req.count
        )));
    }
    if let Some(max) = limits.max_gpu_containers.value
        && used.records.len() >= max as usize
    {
        return Err(Refusal(format!(
            "{who} already runs {} of {max} GPU containers ({}); stop one or ask an admin",
            used.records.len(),
            held_by(inv, &used.records)
        )));
    }
    let allow_full = limits.allow_full_gpu.value;
    let units = inv.units();
    let full = |u: &Unit| u.kind == UnitKind::Full;
    let chosen = match &req.profile {
        Profile::Full => {
            if !allow_full {
                return Err(Refusal(format!(
                    "{who} may not use a full GPU (allow_full_gpu = false, {}); \
                     unset DS01_GPU_PROFILE to get a MIG slice",
                    limits.allow_full_gpu.from
                )));
            }
            pick(&units, held, req.count, "full GPU", full).map_err(|s| refusal(&[s]))
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
            .map_err(|s| refusal(&[s]))
        }
        // A slice, or where the owner may have one, a full GPU: a refusal
        // says both were tried.
        Profile::AnyMig => match pick(&units, held, req.count, "MIG slice", |u| {
            u.kind == UnitKind::Mig
        }) {
            Ok(units) => Ok(units),
            Err(mig) if allow_full => pick(&units, held, req.count, "full GPU", full)
                .map_err(|whole| refusal(&[mig, whole])),
            Err(mig) => Err(refusal(&[mig])),
        },
    }?;
    if let Some(max) = limits.max_gpu_equivalents.value {
        let asked: f64 = chosen.iter().map(Unit::gpueq).sum();
        if used.gpueq + asked > max + EPSILON {
            return Err(Refusal(if used.records.is_empty() {
                format!(
                    "{who} may use at most {} GPU-equivalents ({}), and this request counts {}; ask an admin",
                    gpueq_text(max),
                    limits.max_gpu_equivalents.from,
                    gpueq_text(asked)
                )
            } else {
                let n = used.records.len();
                format!(
                    "{who} already uses {} of {} GPU-equivalents (container{} {}); stop a container or ask an admin",
                    gpueq_text(used.gpueq),
                    gpueq_text(max),
                    if n == 1 { "" } else { "s" },
                    held_by(inv, &used.records)
                )
            }));
        }
    }
    Ok(chosen)
}

/// Why [`pick`] found too few: the text, and whether devices of that kind
/// exist here (and may come free).
struct Short {
    text: String,
    busy: bool,
}

/// One refusal for every kind tried, with the hint to wait where one of
/// them may come free.
fn refusal(tried: &[Short]) -> Refusal {
    let text = tried
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(", and ");
    if tried.iter().any(|s| s.busy) {
        Refusal(format!("{text}; {HINT}"))
    } else {
        Refusal(text)
    }
}

fn pick<'a>(
    units: &[Unit<'a>],
    held: &Records,
    count: usize,
    what: &str,
    fits: impl Fn(&Unit) -> bool,
) -> Result<Vec<Unit<'a>>, Short> {
    let fitting: Vec<&Unit> = units.iter().filter(|u| fits(u)).collect();
    let mut free: Vec<Unit> = fitting
        .iter()
        .filter(|u| !held.holds(u.uuid))
        .map(|u| (*u).clone())
        .collect();
    // Smallest slice first (never a bigger share than needed), then pack:
    // GPUs that already have a slice in use come first. The sort is stable,
    // so the inventory's order decides the rest.
    let busy: HashSet<u32> = units
        .iter()
        .filter(|u| u.kind == UnitKind::Mig && held.holds(u.uuid))
        .map(|u| u.gpu.index)
        .collect();
    free.sort_by_key(|u| {
        (
            u.mig.map_or(0, |m| m.slices),
            u.kind == UnitKind::Mig && !busy.contains(&u.gpu.index),
        )
    });
    let total = fitting.len();
    let used = total - free.len();
    if total == 0 {
        return Err(Short {
            text: format!("this host has no {what}"),
            busy: false,
        });
    }
    if free.len() >= count {
        return Ok(free.into_iter().take(count).collect());
    }
    Err(Short {
        text: if count == 1 {
            format!("no {what} free ({used} of {total} in use)")
        } else {
            format!(
                "{count} {what}s asked for, {} free ({used} of {total} in use)",
                free.len()
            )
        },
        busy: true,
    })
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
    use crate::policy::{Limits, Policy};
    use crate::testing::{FakeHost, record};
    use std::path::Path;

    fn inv_from(text: &str) -> Inventory {
        sim::parse(Path::new("/t/inv.toml"), text).unwrap()
    }

    fn inv() -> Inventory {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/sim/inventory.toml");
        inv_from(&std::fs::read_to_string(&p).unwrap())
    }

    fn req(count: usize, profile: Profile) -> Request {
        Request { count, profile }
    }

    struct NoGroups;
    impl crate::policy::Groups for NoGroups {
        fn groups_of(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
    }

    fn limits(l: Limits) -> Effective {
        Policy {
            defaults: l,
            ..Policy::default()
        }
        .effective(Some("alice"), &NoGroups)
    }

    fn open() -> Effective {
        limits(Limits::default())
    }

    fn full_ok() -> Effective {
        limits(Limits {
            allow_full_gpu: Some(true),
            ..Limits::default()
        })
    }

    /// Records for `held` devices, owned by `user`, with their gpueq.
    fn held(inv: &Inventory, user: &str, uuids: &[&str]) -> Records {
        let host = FakeHost::default();
        Records {
            records: uuids
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    let mut r = record(&format!("c{i}{user}"), &[u], &host);
                    r.user = Some(user.into());
                    r.gpueq = inv.unit(u).unwrap().gpueq();
                    r
                })
                .collect(),
        }
    }

    fn choose_for(
        inv: &Inventory,
        rs: &Records,
        r: &Request,
        l: &Effective,
    ) -> Result<Vec<String>, Refusal> {
        let used = usage(rs, Some("alice"));
        choose(inv, rs, r, "alice", l, &used)
            .map(|us| us.iter().map(|u| u.uuid.to_string()).collect())
    }

    #[test]
    fn default_request_gets_the_first_free_slice() {
        let inv = inv();
        let got = choose_for(&inv, &Records::default(), &req(1, Profile::AnyMig), &open()).unwrap();
        assert_eq!(inv.unit(&got[0]).unwrap().mig.unwrap().gpu_instance, 7);
        let rs = held(&inv, "bob", &[&got[0]]);
        let next = choose_for(&inv, &rs, &req(1, Profile::AnyMig), &open()).unwrap();
        assert_eq!(
            inv.unit(&next[0]).unwrap().mig.unwrap().gpu_instance,
            8,
            "never the same slice"
        );
    }

    #[test]
    fn exhausted_slices_give_the_reason() {
        let inv = inv();
        let all: Vec<String> = inv
            .units()
            .iter()
            .skip(1)
            .map(|u| u.uuid.to_string())
            .collect();
        let rs = held(
            &inv,
            "bob",
            &all.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let e = choose_for(&inv, &rs, &req(1, Profile::AnyMig), &open()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no MIG slice free (7 of 7 in use); try later or see 'container ls --all'"
        );
        let e =
            choose_for(&inv, &rs, &req(1, Profile::Mig("1g.10gb".into())), &open()).unwrap_err();
        assert!(
            e.to_string()
                .contains("no 1g.10gb MIG slice free (7 of 7 in use)"),
            "{e}"
        );
        // Where full GPUs are allowed, the default falls back to one.
        let got = choose_for(&inv, &rs, &req(1, Profile::AnyMig), &full_ok()).unwrap();
        assert_eq!(inv.unit(&got[0]).unwrap().kind, UnitKind::Full);
        // With that one held too, the refusal names both that were tried.
        let every: Vec<&str> = inv.units().iter().map(|u| u.uuid).collect();
        let rs = held(&inv, "bob", &every);
        let e = choose_for(&inv, &rs, &req(1, Profile::AnyMig), &full_ok()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no MIG slice free (7 of 7 in use), and no full GPU free (1 of 1 in use); \
             try later or see 'container ls --all'"
        );
        // Without it allowed, a full GPU was not tried and is not named.
        let e = choose_for(&inv, &rs, &req(1, Profile::AnyMig), &open()).unwrap_err();
        assert!(!e.to_string().contains("full GPU"), "{e}");
    }

    #[test]
    fn full_gpu_only_where_allowed() {
        let inv = inv();
        let e = choose_for(&inv, &Records::default(), &req(1, Profile::Full), &open()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "alice may not use a full GPU (allow_full_gpu = false, built-in); unset DS01_GPU_PROFILE to get a MIG slice"
        );
        let got = choose_for(
            &inv,
            &Records::default(),
            &req(1, Profile::Full),
            &full_ok(),
        )
        .unwrap();
        assert_eq!(inv.unit(&got[0]).unwrap().gpu.index, 0);
        let e = choose_for(
            &inv,
            &Records::default(),
            &req(2, Profile::Full),
            &full_ok(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("2 full GPUs asked for, 1 free"),
            "{e}"
        );
    }

    #[test]
    fn several_devices_are_distinct_and_all_or_nothing() {
        let inv = inv();
        let mut got =
            choose_for(&inv, &Records::default(), &req(3, Profile::AnyMig), &open()).unwrap();
        got.dedup();
        assert_eq!(got.len(), 3);
        assert!(choose_for(&inv, &Records::default(), &req(8, Profile::AnyMig), &open()).is_err());
    }

    #[test]
    fn unknown_profile_lists_what_exists() {
        let e = choose_for(
            &inv(),
            &Records::default(),
            &req(1, Profile::Mig("3g.40gb".into())),
            &open(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("no 3g.40gb MIG slices on this host; profiles here: 1g.10gb, full"),
            "{e}"
        );
    }

    /// Two MIG GPUs (indices 1 and 2) and a full one (0).
    fn two_mig_gpus() -> Inventory {
        let mut text = String::from("[majors]\nuvm = 511\ncaps = 236\n");
        text.push_str(
            "[[gpu]]\nindex = 0\nuuid = \"GPU-0\"\nname = \"A\"\nmemory_mib = 1\nminor = 0\n",
        );
        for g in 1..=2 {
            text.push_str(&format!(
                "[[gpu]]\nindex = {g}\nuuid = \"GPU-{g}\"\nname = \"A\"\nmemory_mib = 1\nminor = {g}\nmig = true\nslices = 7\n"
            ));
            for i in 0..3 {
                text.push_str(&format!(
                    "[[gpu.instances]]\nuuid = \"MIG-{g}{i}\"\nprofile = \"1g.10gb\"\nslices = 1\nmemory_mib = 1\ngpu_instance = {}\ncompute_instance = 0\n",
                    7 + i
                ));
            }
        }
        inv_from(&text)
    }

    #[test]
    fn placement_packs_slices_onto_gpus_in_mig_use() {
        let inv = two_mig_gpus();
        // (held before, what the next request gets)
        let table: &[(&[&str], &str)] = &[
            (&[], "MIG-10"),
            (&["MIG-10"], "MIG-11"),
            // GPU 2 has a slice in use and GPU 1 none: pack onto GPU 2.
            (&["MIG-20"], "MIG-21"),
            (&["MIG-10", "MIG-11", "MIG-12"], "MIG-20"),
            (&["MIG-21", "MIG-10"], "MIG-11"),
        ];
        for (before, want) in table {
            let rs = held(&inv, "bob", before);
            let got = choose_for(&inv, &rs, &req(1, Profile::AnyMig), &open()).unwrap();
            assert_eq!(got, [*want], "held {before:?}");
        }
    }

    #[test]
    fn the_smallest_slice_wins_over_packing() {
        // GPU 1: a 3g slice free next to a used 1g one; GPU 2: a 1g slice free.
        let mut text = String::from("[majors]\nuvm = 511\ncaps = 236\n");
        for g in 1..=2 {
            text.push_str(&format!(
                "[[gpu]]\nindex = {g}\nuuid = \"GPU-{g}\"\nname = \"A\"\nmemory_mib = 1\nminor = {g}\nmig = true\nslices = 7\n"
            ));
        }
        let slice = |g: u32, name: &str, profile: &str, slices: u32, gi: u32| {
            format!(
                "[[gpu.instances]]\nuuid = \"MIG-{name}\"\nprofile = \"{profile}\"\nslices = {slices}\nmemory_mib = 1\ngpu_instance = {gi}\ncompute_instance = 0\n"
            )
            .replace("[[gpu.instances]]", &format!("[[gpu.instances]] # gpu {g}"))
        };
        let gpu2 = text.rfind("[[gpu]]").unwrap();
        let (first, second) = text.split_at(gpu2);
        let text = format!(
            "{first}{}{}{second}{}",
            slice(1, "used", "1g.10gb", 1, 7),
            slice(1, "big", "3g.40gb", 3, 1),
            slice(2, "small", "1g.10gb", 1, 7)
        );
        let inv = inv_from(&text);
        let rs = held(&inv, "bob", &["MIG-used"]);
        let got = choose_for(&inv, &rs, &req(1, Profile::AnyMig), &open()).unwrap();
        assert_eq!(got, ["MIG-small"]);
    }

    #[test]
    fn limits_are_enforced_with_usage_in_the_message() {
        let inv = inv();
        let slice = inv.units()[1].uuid.to_string();
        let full = inv.units()[0].uuid.to_string();
        let l = limits(Limits {
            max_gpu_equivalents: Some(1.0),
            allow_full_gpu: Some(true),
            max_gpu_containers: Some(3),
            max_devices_per_container: Some(2),
            ..Limits::default()
        });
        let rs = held(&inv, "alice", &[&full]);
        let e = choose_for(&inv, &rs, &req(1, Profile::AnyMig), &l).unwrap_err();
        assert_eq!(
            e.to_string(),
            "alice already uses 1.0 of 1.0 GPU-equivalents (container c0alice: full GPU 0); stop a container or ask an admin"
        );
        // Another user's holdings do not count against alice.
        let rs = held(&inv, "bob", &[&full]);
        assert!(choose_for(&inv, &rs, &req(1, Profile::AnyMig), &l).is_ok());
        let e = choose_for(&inv, &Records::default(), &req(3, Profile::AnyMig), &l).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("alice may use at most 2 device(s) per container (defaults)"),
            "{e}"
        );
        let rs = held(
            &inv,
            "alice",
            &[&slice, inv.units()[2].uuid, inv.units()[3].uuid],
        );
        let e = choose_for(&inv, &rs, &req(1, Profile::AnyMig), &l).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "alice already runs 3 of 3 GPU containers (c0alice: MIG 1g.10gb on GPU 1;"
            ),
            "{e}"
        );
        let small = limits(Limits {
            max_gpu_equivalents: Some(0.1),
            ..Limits::default()
        });
        let e =
            choose_for(&inv, &Records::default(), &req(1, Profile::AnyMig), &small).unwrap_err();
        assert_eq!(
            e.to_string(),
            "alice may use at most 0.1 GPU-equivalents (defaults), and this request counts 0.143; ask an admin"
        );
    }

    #[test]
    fn gpueq_reads_well() {
        assert_eq!(gpueq_text(1.0), "1.0");
        assert_eq!(gpueq_text(1.0 / 7.0), "0.143");
        assert_eq!(gpueq_text(0.5), "0.5");
        assert_eq!(gpueq_text([].iter().sum::<f64>()), "0.0");
        assert_eq!(gpueq_text(2.0 / 7.0 * 7.0), "2.0");
    }
}
