//! Property tests, run with the normal test command for a bounded number of
//! cases: the readers never panic on any input, and the spec patch's
//! invariant holds on every generated spec: afterwards the spec opens
//! exactly the allocated NVIDIA nodes, and patching again changes nothing.

mod common;

use std::ffi::OsString;
use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

use ds01_core::access::{self, NvidiaDevices};
use ds01_core::inventory::{Inventory, sim};
use ds01_core::oci::ReadError;
use ds01_core::spec::{self, Allocation, Hook};

fn inventory() -> Inventory {
    let p = common::sim_inventory();
    sim::parse(&p, &std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const MAJORS: [i64; 8] = [195, 226, 511, 236, 1, 10, 240, -1];
const MINORS: [i64; 12] = [0, 1, 2, 3, 128, 129, 130, 201, 202, 254, 255, -1];

fn num(xs: &'static [i64]) -> impl Strategy<Value = Option<i64>> {
    prop_oneof![Just(None), proptest::sample::select(xs).prop_map(Some)]
}

fn device() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(
            &[
                "/dev/nvidia0",
                "/dev/x",
                "/dev/dri/card1",
                "/dev/nvidia-caps/nvidia-cap201",
                "/dev/fuse",
            ][..],
        ),
        proptest::sample::select(&["c", "u", "b"][..]),
        proptest::sample::select(&MAJORS[..7]),
        proptest::sample::select(&MINORS[..11]),
    )
        .prop_map(|(p, t, ma, mi)| json!({"path": p, "type": t, "major": ma, "minor": mi}))
}

fn rule() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        proptest::sample::select(&["a", "c", "b", "u", ""][..]),
        num(&MAJORS),
        num(&MINORS),
        proptest::sample::select(&["rwm", "m", "r", "w", ""][..]),
    )
        .prop_map(|(allow, t, ma, mi, acc)| {
            let mut r = json!({"allow": allow, "access": acc});
            if !t.is_empty() {
                r["type"] = json!(t);
            }
            if let Some(m) = ma {
                r["major"] = json!(m);
            }
            if let Some(m) = mi {
                r["minor"] = json!(m);
            }
            r
        })
}

fn env() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        proptest::sample::select(
            &[
                "PATH=/bin",
                "NVIDIA_VISIBLE_DEVICES=all",
                "NVIDIA_VISIBLE_DEVICES=none",
                "NVIDIA_VISIBLE_DEVICES=0,1",
                "NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices",
                "DS01_GPU_PROFILE=1g.10gb",
                "DS01_GPU_PROFILE=full",
            ][..],
        )
        .prop_map(String::from),
        0..4,
    )
}

fn spec_strategy() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(device(), 0..6),
        proptest::collection::vec(rule(), 0..6),
        env(),
        any::<bool>(),
    )
        .prop_map(|(devs, rules, env, ann)| {
            let mut s = json!({
                "ociVersion": "1.0.2",
                "process": {"env": env},
                "linux": {"devices": devs, "resources": {"devices": rules}},
            });
            if ann {
                s["annotations"] =
                    json!({"nvidia.cdi.k8s.io/x": "nvidia.com/gpu=all", "keep": "1"});
            }
            s
        })
}

/// Whether the cgroup rules, read in order (the last match wins) and the
/// nodes (runc allows each), let the container open char device `ma:mi`.
fn opens(spec: &Value, ma: i64, mi: i64) -> bool {
    let nodes = spec["linux"]["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if nodes.iter().any(|d| {
        matches!(d["type"].as_str(), Some("c" | "u") | None)
            && d["major"].as_i64() == Some(ma)
            && d["minor"].as_i64() == Some(mi)
    }) {
        return true;
    }
    let mut open = false;
    for r in spec["linux"]["resources"]["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let r = access::Rule::read(&r);
        // runc makes any type-a rule allow-all or deny-all, whatever its access.
        if r.kind == 'a' {
            open = r.allow;
            continue;
        }
        let numbers = r.major.is_none_or(|m| m == ma) && r.minor.is_none_or(|m| m == mi);
        if r.kind == 'c' && numbers && r.opens {
            open = r.allow;
        }
    }
    open
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_patch_opens_exactly_the_allocation_and_is_idempotent(
        s in spec_strategy(),
        unit_index in 0usize..8,
    ) {
        let inv = inventory();
        let dev = NvidiaDevices::of(&inv);
        let judged = access::judge(&s, &dev);
        // Specs with a wide or stray rule are refused (or an admin's, untouched).
        prop_assume!(judged.bypass().is_none());
        let unit = &inv.units()[unit_index];
        let mut nodes = inv.common_nodes.clone();
        nodes.extend(unit.nodes());
        let alloc = Allocation {
            uuids: vec![unit.uuid.to_string()],
            nodes: nodes.clone(),
            hook: Hook { path: "/usr/bin/ds01-runtime".into(), args: vec!["x".into()], env: vec![] },
            annotation: "{}".into(),
        };
        let patch = |mut v: Value| {
            spec::strip_gpu_routes(&mut v, &dev);
            spec::inject(&mut v, &alloc);
            v
        };
        let after = patch(s.clone());
        let mut universe: Vec<(i64, i64)> = Vec::new();
        for ma in [195i64, 511, 236] {
            for mi in MINORS.iter().copied().filter(|m| *m >= 0) {
                universe.push((ma, mi));
            }
        }
        for (_, mi) in &dev.drm {
            universe.push((226, i64::from(*mi)));
        }
        for (ma, mi) in universe {
            let allocated = nodes.iter().any(|n| i64::from(n.major) == ma && i64::from(n.minor) == mi);
            prop_assert_eq!(opens(&after, ma, mi), allocated, "{}:{} in {}", ma, mi, after);
        }
        prop_assert_eq!(patch(after.clone()), after);
    }

    #[test]
    fn reading_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = ds01_core::oci::read(&bytes);
        let _ = serde_json::from_slice::<ds01_core::ledger::Records>(&bytes);
        let _ = ds01_core::shim::hook_state(&bytes);
    }

    #[test]
    fn hook_state_names_the_container_it_was_given(id in "[a-z0-9]{1,64}", bundle in "/[a-z/]{0,40}") {
        let state = json!({"ociVersion": "1.0.2", "id": id, "status": "stopped", "bundle": bundle});
        let (got_id, got_bundle) = ds01_core::shim::hook_state(state.to_string().as_bytes());
        prop_assert_eq!(got_id, id);
        prop_assert_eq!(got_bundle, Some(std::path::PathBuf::from(bundle)));
    }

    #[test]
    fn reading_mutated_specs_never_panics_and_judging_read_specs_neither(
        s in spec_strategy(),
        cut in 0usize..400,
        flip in any::<u8>(),
    ) {
        let mut bytes = serde_json::to_vec(&s).unwrap();
        if !bytes.is_empty() {
            let at = cut % bytes.len();
            bytes[at] ^= flip;
        }
        if let Ok(read) = ds01_core::oci::read(&bytes) {
            let dev = NvidiaDevices::of(&inventory());
            let a = access::judge(&read.value, &dev);
            let _ = ds01_core::request::from_spec(&read.value, &a);
            let _ = access::might_touch_nvidia(&read.value);
            let _ = ds01_core::ledger::note_of(&read.value);
        }
    }

    #[test]
    fn every_request_asks_for_at_least_one_device(s in spec_strategy()) {
        let dev = NvidiaDevices::of(&inventory());
        let a = access::judge(&s, &dev);
        if let Ok(Some(req)) = ds01_core::request::from_spec(&s, &a) {
            prop_assert!(req.count >= 1);
        }
        // What the first look clears, the full judgement finds no request in.
        if !access::might_touch_nvidia(&s) {
            prop_assert_eq!(ds01_core::request::from_spec(&s, &a), Ok(None));
            prop_assert!(a.bypass().is_none() && a.nodes.is_empty());
        }
    }

    #[test]
    fn argv_scanning_never_panics_and_finds_docker_s_id(
        noise in proptest::collection::vec(".{0,12}", 0..8),
        id in "[a-f0-9]{12}",
    ) {
        let args: Vec<OsString> = noise.iter().map(OsString::from).collect();
        let _ = ds01_core::shim::argv::scan(&args);
        let docker: Vec<OsString> = [
            "--root", "/run/x", "--log", "/b/log.json", "--log-format", "json",
            "create", "--bundle", "/b", "--pid-file", "/b/init.pid", &id,
        ].iter().map(OsString::from).collect();
        let a = ds01_core::shim::argv::scan(&docker);
        prop_assert_eq!(a.id.as_deref(), Some(id.as_str()));
        prop_assert_eq!(a.command.as_deref(), Some("create"));
    }

    #[test]
    fn any_config_text_parses_or_names_the_file(text in "[a-z_=\\[\\]\"0-9 .\n/-]{0,120}") {
        if let Err(e) = ds01_core::config::Config::parse(Path::new("/etc/ds01/config.toml"), &text) {
            let msg = e.to_string();
            prop_assert!(msg.contains("/etc/ds01/config.toml"), "{}", msg);
            prop_assert!(!msg.contains('\n'), "one line: {}", msg);
        }
    }

    #[test]
    fn the_gate_s_request_parser_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        path in ".{0,60}",
        method in "(GET|POST|DELETE|HEAD|PUT)",
        query in ".{0,40}",
    ) {
        let caller = ds01_gate::Caller {
            uid: 1000,
            name: "alice".into(),
            home: "/home/alice".into(),
            admin: false,
        };
        let rules = ds01_gate::Rules::default();
        let _ = ds01_gate::create(&bytes, &caller, &rules, None);
        let _ = ds01_gate::volume_create(&bytes, &caller);
        let _ = ds01_gate::network_create(&bytes, &caller);
        let _ = ds01_gate::commit_config(&bytes, &caller);
        let _ = ds01_gate::route(&method, &path);
        let _ = ds01_gate::own_filter(Some(&query), &caller);
        let _ = ds01_gate::route::strip_version(&path);
        if let Ok(pairs) = ds01_gate::query::parse(Some(&query)) {
            let _ = ds01_gate::query::judge_build(&pairs, &caller, "/ds01-build-alice.slice");
            let _ = ds01_gate::query::judge_commit(&pairs);
        }
    }

    #[test]
    fn whatever_a_create_holds_the_gate_stamps_the_caller_or_refuses(
        s in spec_strategy(),
        label in ".{0,20}",
        privileged in any::<bool>(),
    ) {
        let caller = ds01_gate::Caller {
            uid: 1000,
            name: "alice".into(),
            home: "/home/alice".into(),
            admin: false,
        };
        let body = json!({"Image": "x", "Labels": {"ds01.user": label}, "Env": s["process"]["env"],
                          "HostConfig": {"Privileged": privileged}});
        match ds01_gate::create(body.to_string().as_bytes(), &caller, &ds01_gate::Rules::default(), None) {
            Ok((out, _)) => {
                prop_assert!(!privileged);
                let v: Value = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(&v["Labels"]["ds01.user"], "alice");
            }
            Err(r) => prop_assert_eq!(r.rule, "privileged"),
        }
    }
}

/// Docker's specs, as a real Docker wrote them.
fn fixtures() -> Vec<Vec<u8>> {
    ["plain", "gpu", "privileged", "nvidia-device"]
        .iter()
        .map(|f| {
            std::fs::read(common::repo().join(format!("tests/fixtures/docker/{f}.json"))).unwrap()
        })
        .collect()
}

/// What the runtime's cheap look decides on a value: whether it may touch
/// an NVIDIA device, and what it asks beyond Docker's defaults.
fn cheap_look(v: &Value) -> (bool, Vec<ds01_core::shape::Ask>) {
    let host = ds01_core::shape::Host {
        docker_root: Path::new("/var/lib/docker"),
        cap_add: &[],
        host_namespaces: &[],
        nvidia_major: &|m| m == 195,
    };
    (
        access::might_touch_nvidia(v),
        ds01_core::shape::asks(v, &host),
    )
}

#[test]
fn the_first_look_judges_docker_s_specs_as_the_whole_read() {
    for bytes in fixtures() {
        let look = ds01_core::oci::first_look(&bytes).unwrap();
        let full = ds01_core::oci::read(&bytes).unwrap();
        assert_eq!(cheap_look(&look), cheap_look(&full.value));
    }
}

/// Keys the first look reads, respelled by [`mutate`].
const KEYS: [&str; 14] = [
    "process",
    "linux",
    "env",
    "capabilities",
    "bounding",
    "devices",
    "major",
    "type",
    "mounts",
    "source",
    "options",
    "cgroupsPath",
    "namespaces",
    "annotations",
];

/// `bytes` changed in one of the ways a spec could try to read one way to
/// ds01 and another to runc, staying JSON where it can.
fn mutate(bytes: &mut Vec<u8>, how: u8, at: usize, pick: usize) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let find_all =
        |needle: &str| -> Vec<usize> { text.match_indices(needle).map(|(i, _)| i).collect() };
    match how {
        // A byte flipped anywhere.
        0 => {
            let i = at % bytes.len();
            bytes[i] ^= (pick as u8) | 1;
        }
        // A key read in another spelling: Go's case folding, an escape,
        // the long s or the Kelvin sign, a key given twice.
        1 => {
            let key = KEYS[pick % KEYS.len()];
            let quoted = format!("\"{key}\":");
            let Some(&i) = find_all(&quoted).get(at % 4).or(find_all(&quoted).first()) else {
                return;
            };
            let respelled = match (pick / KEYS.len()) % 6 {
                0 => key.to_uppercase(),
                1 => format!("\\u{:04x}{}", key.as_bytes()[0], &key[1..]),
                2 => key.replacen('s', "\u{17f}", 1),
                3 => key.replacen('k', "\u{212a}", 1),
                4 => format!("{key}\":null,\"{key}"),
                _ => format!("{key}\":[],\"{}", key.to_uppercase()),
            };
            let mut out = text[..i + 1].to_string();
            out.push_str(&respelled);
            out.push_str(&text[i + 1 + key.len()..]);
            *bytes = out.into_bytes();
        }
        // A number written otherwise: negative, a fraction, an exponent,
        // a leading zero, too large.
        2 => {
            let numbers: Vec<usize> = find_all("\":")
                .into_iter()
                .map(|i| i + 2)
                .filter(|&i| bytes.get(i).is_some_and(u8::is_ascii_digit))
                .collect();
            let Some(&i) = numbers.get(at % numbers.len().max(1)) else {
                return;
            };
            let end = i + bytes[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            let n = &text[i..end];
            let new = match pick % 6 {
                0 => format!("-{n}"),
                1 => format!("{n}.0"),
                2 => format!("{n}e0"),
                3 => format!("0{n}"),
                4 => "18446744073709551616".to_string(),
                _ => format!("\"{n}\""),
            };
            bytes.splice(i..end, new.into_bytes());
        }
        // Around the spec: a byte-order mark, another value after it,
        // invalid UTF-8 after it; in it: a string of brackets and escaped
        // quotes where ds01 does not look, nesting past serde's limit.
        4 => match pick % 5 {
            0 => drop(bytes.splice(0..0, [0xef, 0xbb, 0xbf])),
            1 => {
                bytes.extend_from_slice(br#" {"process": {"env": ["NVIDIA_VISIBLE_DEVICES=all"]}}"#)
            }
            2 => bytes.extend_from_slice(b"\xff\xfe"),
            3 => {
                if let Some(i) = text.find("\"hostname\":\"") {
                    let at = i + "\"hostname\":\"".len();
                    bytes.splice(at..at, br#"a\"}]{[\\"#.iter().copied());
                }
            }
            _ => {
                let n = 90 + at % 60;
                let deep = format!("\"x\":{}{},", "[".repeat(n), "]".repeat(n));
                bytes.splice(1..1, deep.into_bytes());
            }
        },
        // Whitespace JSON allows, and a form feed, which it does not.
        _ => {
            let commas = find_all(",");
            let Some(&i) = commas.get(at % commas.len().max(1)) else {
                return;
            };
            let ws: &[u8] = [&b" \t\n\r"[..], b"\x0c", b"\n\n"][pick % 3];
            bytes.splice(i + 1..i + 1, ws.iter().copied());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_first_look_judges_any_spec_as_the_whole_read(
        which in 0usize..4,
        how in 0u8..6,
        at in 0usize..100_000,
        pick in 0usize..1_000,
    ) {
        let mut bytes = fixtures().swap_remove(which);
        mutate(&mut bytes, how, at, pick);
        // Against serde's reading: the whole read is by hand too.
        match (ds01_core::oci::first_look(&bytes), ds01_core::oci::read_by_serde(&bytes)) {
            (Some(look), Ok(full)) => prop_assert_eq!(cheap_look(&look), cheap_look(&full.value)),
            // What the whole read refuses, the first look may pass only
            // where it steps over the spec: runc refuses JSON that is not,
            // and merges a key twice that ds01 does not judge.
            (Some(_), Err(e)) => prop_assert!(
                matches!(e, ReadError::Syntax(_) | ReadError::Duplicate { .. }),
                "the first look took what the whole read refuses: {e}"
            ),
            // The first look leaves what it cannot vouch for to the whole read.
            (None, _) => {}
        }
    }

    #[test]
    fn the_spec_read_by_hand_is_the_spec_serde_reads(
        which in 0usize..4,
        how in 0u8..6,
        at in 0usize..100_000,
        pick in 0usize..1_000,
    ) {
        let mut bytes = fixtures().swap_remove(which);
        mutate(&mut bytes, how, at, pick);
        prop_assert_eq!(ds01_core::oci::read(&bytes), ds01_core::oci::read_by_serde(&bytes));
    }
}
