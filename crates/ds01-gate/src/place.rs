//! Where a non-admin's container is made and how big: in its owner's
//! cgroup parent (whatever they asked; their own `--cgroup-parent` is
//! refused in [`crate::body`]), within the per-container limits, which
//! fill in what the request leaves out.

use ds01_core::policy::Effective;
use ds01_core::share::{self, Sizing};
use serde_json::{Map, Value, json};

use super::Denial;

/// The caller's parent and limits.
#[derive(Debug, Clone)]
pub struct Place {
    pub parent: String,
    pub limits: Effective,
}

fn denial(reason: String) -> Denial {
    Denial {
        rule: "container-limit",
        reason,
    }
}

fn positive(o: &Map<String, Value>, k: &str) -> Option<i64> {
    o.get(k).and_then(Value::as_i64).filter(|n| *n > 0)
}

/// What a HostConfig (or an update) asks; `cpu_quota`: the CPUs asked as
/// a CFS quota rather than `NanoCpus` (Docker refuses both at once).
fn asked(o: &Map<String, Value>) -> (Sizing, bool) {
    let quota = positive(o, "CpuQuota");
    let period = positive(o, "CpuPeriod").unwrap_or(100_000);
    let cpus = quota
        .map(|q| q as f64 / period as f64)
        .or_else(|| positive(o, "NanoCpus").map(|n| n as f64 / 1e9));
    let sizing = Sizing {
        memory: positive(o, "Memory").map(|n| n as u64),
        cpus,
        pids: positive(o, "PidsLimit").map(|n| n as u64),
        shm: positive(o, "ShmSize").map(|n| n as u64),
    };
    (sizing, quota.is_some())
}

/// Places and sizes a create's HostConfig (made if absent).
pub fn create(v: &mut Value, user: &str, place: &Place) -> Result<(), Denial> {
    let obj = v.as_object_mut().expect("read checks");
    let hc = obj
        .entry("HostConfig")
        .or_insert_with(|| Value::Object(Map::new()));
    if hc.is_null() {
        *hc = Value::Object(Map::new());
    }
    let Some(hc) = hc.as_object_mut() else {
        return Err(denial("HostConfig is not an object".into()));
    };
    let (want, by_quota) = asked(hc);
    let given = share::fit(user, &place.limits, want, true).map_err(denial)?;
    hc.insert("CgroupParent".into(), json!(place.parent));
    if let Some(n) = given.memory {
        hc.insert("Memory".into(), json!(n));
    }
    if let Some(c) = given.cpus.filter(|_| !by_quota) {
        hc.insert("NanoCpus".into(), json!((c * 1e9).round() as i64));
    }
    if let Some(n) = given.pids {
        hc.insert("PidsLimit".into(), json!(n));
    }
    if let Some(n) = given.shm {
        hc.insert("ShmSize".into(), json!(n));
    }
    Ok(())
}

/// An update may not raise a container over its limits, nor lift one
/// (a `PidsLimit` of 0 or -1 is none).
pub fn update(v: &Value, user: &str, limits: &Effective) -> Result<(), Denial> {
    let Some(o) = v.as_object() else {
        return Ok(());
    };
    // A quota is read against its period: an update may not change one
    // without the other (the stored one is not the gate's to see), nor
    // give a negative one (no limit).
    if limits.container_cpus.value.is_some() || limits.cpus.value.is_some() {
        let num = |k: &str| o.get(k).and_then(Value::as_i64).unwrap_or(0);
        let (quota, period) = (num("CpuQuota"), num("CpuPeriod"));
        if quota < 0 || period < 0 || (quota > 0) != (period > 0) {
            return Err(denial(format!(
                "{user}'s containers have a CPU limit: an update gives --cpus, or --cpu-quota \
                 and --cpu-period together, each above 0"
            )));
        }
    }
    let (mut want, _) = asked(o);
    // What the update leaves alone is within its limit already.
    let lifts_pids = o
        .get("PidsLimit")
        .and_then(Value::as_i64)
        .is_some_and(|n| n <= 0);
    want.memory = want.memory.or(Some(0));
    want.cpus = want.cpus.or(Some(0.0));
    want.pids = if lifts_pids {
        None
    } else {
        want.pids.or(Some(0))
    };
    want.shm = Some(0);
    share::fit(user, limits, want, false)
        .map(drop)
        .map_err(denial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ds01_core::policy::{Limits, Policy};

    struct NoGroups;
    impl ds01_core::policy::Groups for NoGroups {
        fn groups_of(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
    }

    fn place() -> Place {
        let policy = Policy {
            defaults: Limits {
                container_memory: Some(Some(1 << 30)),
                container_cpus: Some(Some(2.0)),
                container_pids: Some(Some(256)),
                container_shm: Some(Some(128 << 20)),
                ..Limits::default()
            },
            ..Policy::default()
        };
        Place {
            parent: "/ds01/alice".into(),
            limits: policy.effective(Some("alice"), &NoGroups),
        }
    }

    #[test]
    fn a_container_asking_nothing_gets_the_limits_and_its_owner_s_parent() {
        let mut v = json!({"Image": "x"});
        create(&mut v, "alice", &place()).unwrap();
        assert_eq!(
            v["HostConfig"],
            json!({"CgroupParent": "/ds01/alice", "Memory": 1u64 << 30, "NanoCpus": 2_000_000_000i64,
                   "PidsLimit": 256, "ShmSize": 128u64 << 20})
        );
        let mut v = json!({"HostConfig": {"Memory": 1 << 20, "CpuQuota": 50000, "PidsLimit": -1}});
        create(&mut v, "alice", &place()).unwrap();
        assert_eq!(v["HostConfig"]["Memory"], 1 << 20);
        assert_eq!(v["HostConfig"]["CpuQuota"], 50000);
        assert!(
            v["HostConfig"].get("NanoCpus").is_none(),
            "quota and NanoCpus conflict"
        );
        assert_eq!(v["HostConfig"]["PidsLimit"], 256);
    }

    #[test]
    fn asking_more_is_refused_with_the_limit_and_its_source() {
        for (hc, want) in [
            (
                json!({"Memory": 2i64 << 30}),
                "at most 1G of memory (container_memory, defaults); asked for 2G",
            ),
            (
                json!({"NanoCpus": 4_000_000_000i64}),
                "at most 2 CPUs (container_cpus, defaults); asked for 4 CPUs",
            ),
            (
                json!({"CpuQuota": 300_000, "CpuPeriod": 100_000}),
                "asked for 3 CPUs",
            ),
            (json!({"PidsLimit": 1000}), "at most 256 processes"),
            (json!({"ShmSize": 1i64 << 30}), "at most 128M of /dev/shm"),
        ] {
            let mut v = json!({"HostConfig": hc});
            let e = create(&mut v, "alice", &place()).unwrap_err();
            assert!(e.reason.contains(want), "{e:?}");
            assert!(
                e.reason.starts_with("alice may give a container at most"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn an_update_may_not_raise_or_lift_a_limit() {
        let l = place().limits;
        assert!(update(&json!({"Memory": 1 << 20}), "alice", &l).is_ok());
        assert!(update(&json!({"RestartPolicy": {"Name": "no"}}), "alice", &l).is_ok());
        assert!(update(&json!({"Memory": 4i64 << 30}), "alice", &l).is_err());
        assert!(update(&json!({"NanoCpus": 3_000_000_000i64}), "alice", &l).is_err());
        let e = update(&json!({"PidsLimit": -1}), "alice", &l).unwrap_err();
        assert!(e.reason.ends_with("asked for no limit"), "{e:?}");
        for body in [
            json!({"CpuQuota": -1}),
            json!({"CpuPeriod": 1000}),
            json!({"CpuQuota": 150000}),
        ] {
            let e = update(&body, "alice", &l).unwrap_err();
            assert!(
                e.reason.contains("--cpu-quota and --cpu-period together"),
                "{body}: {e:?}"
            );
        }
        assert!(
            update(
                &json!({"CpuQuota": 150000, "CpuPeriod": 100000}),
                "alice",
                &l
            )
            .is_ok()
        );
        assert!(
            update(
                &json!({"CpuQuota": 300000, "CpuPeriod": 100000}),
                "alice",
                &l
            )
            .is_err()
        );
    }
}
