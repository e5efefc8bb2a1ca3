//! `ds01 report` over a year of audit log from a busy server: 200,000
//! events (allocations and their releases, refusals, queue waits, idle
//! spells, reaper warnings) from 150 users, generated, written to a file
//! as the runtime writes it, then read and reported as the command does.
//! The target is under one second for the whole.
//!
//!     cargo bench --bench report [-- ROUNDS]     # default 5

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use ds01::report::{self, Window};
use ds01_core::audit::{self, Event, EventKind};
use ds01_core::identity::Source;
use ds01_core::time::timestamp;

const EVENTS: usize = 200_000;
const USERS: usize = 150;

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    let year = Duration::from_secs(365 * 86_400);
    let end = SystemTime::now();
    let start = end - year;
    let step = year / EVENTS as u32;
    let mut f = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
    let mut open: Vec<(String, String, usize)> = Vec::new();
    for i in 0..EVENTS {
        let t = start + step * i as u32;
        let user = format!("user{:03}", (i * 7919) % USERS);
        let (kind, container, seconds) = match i % 10 {
            0..=3 => {
                let c = format!("{i:064x}");
                open.push((c.clone(), user.clone(), i));
                (EventKind::Allocate, c, None)
            }
            4..=6 if !open.is_empty() => {
                let (c, u, _) = open.remove(0);
                let kind = if i % 29 == 0 {
                    EventKind::Reclaim
                } else {
                    EventKind::Release
                };
                let e = event(kind, t, &u, &c, None);
                writeln!(f, "{}", serde_json::to_string(&e).unwrap()).unwrap();
                continue;
            }
            7 => (EventKind::Refuse, format!("{i:064x}"), None),
            8 => (EventKind::Idle, format!("{i:064x}"), Some(1800)),
            _ => (EventKind::Queue, format!("{i:064x}"), Some(120)),
        };
        let e = event(kind, t, &user, &container, seconds);
        writeln!(f, "{}", serde_json::to_string(&e).unwrap()).unwrap();
    }
    drop(f);
    let size = std::fs::metadata(&log).unwrap().len();
    let mut times = Vec::new();
    let mut lines = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let events = audit::read(&log).unwrap();
        assert_eq!(events.len(), EVENTS);
        let window = Window::since(SystemTime::now(), year);
        let held = std::collections::HashSet::new();
        let out = report::report(&events, window, SystemTime::now(), &[], &held, &|u| {
            u.unwrap_or("?").to_string()
        });
        lines = out.len();
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "report: {EVENTS} events ({:.1} MB), {lines} lines: median {:.0} ms, min {:.0} ms, max {:.0} ms over {rounds} rounds (target < 1000 ms)",
        size as f64 / 1e6,
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
    );
}

fn event(kind: EventKind, t: SystemTime, user: &str, c: &str, seconds: Option<u64>) -> Event {
    Event {
        time: timestamp(t),
        event: kind,
        user: Some(user.to_string()),
        identity_source: Source::DockerLabel,
        container_id: c.to_string(),
        devices: vec![format!("MIG-{}", &c[56..])],
        gpueq: 0.14285714285714285,
        reason: match kind {
            EventKind::Refuse => Some("alice already uses 1.0 of 1.0 GPU-equivalents".into()),
            _ => None,
        },
        seconds,
        alloc_id: None,
    }
}
