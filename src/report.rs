//! `ds01 report`: GPU-equivalent-hours per user or group over a window,
//! from the audit log: held, held idle, containers run, refusals and time
//! waited in the queue.
//!
//! An allocation runs from its `allocate` to the `release` (or `reclaim`,
//! where the release was never written) of the same container holding the
//! same devices; one with neither counts up to now. Idle spells are the
//! reaper's `idle` events, and those going on now (its tracks).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use ds01_core::audit::{Event, EventKind};
use serde::Serialize;

/// The time a report covers, `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub from: SystemTime,
    pub to: SystemTime,
}

impl Window {
    /// The `days` before `now`.
    pub fn since(now: SystemTime, span: Duration) -> Window {
        Window {
            from: now.checked_sub(span).unwrap_or(SystemTime::UNIX_EPOCH),
            to: now,
        }
    }

    /// A calendar month in UTC, `2026-11`.
    pub fn month(text: &str) -> Result<Window, String> {
        let bad = || format!("--month {text:?}: write a month such as 2026-11");
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()))
        {
            return Err(bad());
        }
        let (y, m): (i64, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(1..=12).contains(&m) || !(1970..=9999).contains(&y) || text.len() != 7 {
            return Err(bad());
        }
        let start = |y: i64, m: u32| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(days_from_civil(y, m) as u64 * 86_400)
        };
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        Ok(Window {
            from: start(y, m),
            to: start(ny, nm),
        })
    }

    /// Hours of `[start, end)` inside the window.
    fn hours(&self, start: SystemTime, end: SystemTime) -> f64 {
        let s = start.max(self.from);
        let e = end.min(self.to);
        e.duration_since(s)
            .map_or(0.0, |d| d.as_secs_f64() / 3600.0)
    }

    fn holds(&self, t: SystemTime) -> bool {
        t >= self.from && t < self.to
    }
}

/// Days from 1970-01-01 to the first of month `m` of year `y` (Howard
/// Hinnant's civil-from-days, inverted).
fn days_from_civil(y: i64, m: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One line of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Line {
    /// The user or group.
    pub name: String,
    pub gpu_hours: f64,
    /// Of those, held idle.
    pub idle_hours: f64,
    /// Allocations that began in the window.
    pub containers: u64,
    pub refusals: u64,
    pub queue_wait_hours: f64,
}

/// An idle spell going on now: its owner, its GPU-equivalents, its start.
pub struct IdleNow {
    pub user: Option<String>,
    pub gpueq: f64,
    pub since: SystemTime,
}

/// The report's lines, most GPU-hours first. `key` names the line an
/// event's user counts on (the user, or their group); `held` are the
/// containers the ledger holds devices for now.
pub fn report(
    events: &[Event],
    window: Window,
    now: SystemTime,
    idle_now: &[IdleNow],
    held: &HashSet<String>,
    key: &dyn Fn(Option<&str>) -> String,
) -> Vec<Line> {
    let mut lines: HashMap<String, Line> = HashMap::new();
    fn line_of<'l>(
        lines: &'l mut HashMap<String, Line>,
        key: &dyn Fn(Option<&str>) -> String,
        user: Option<&str>,
    ) -> &'l mut Line {
        let k = key(user);
        lines.entry(k.clone()).or_insert_with(|| Line {
            name: k,
            ..Line::default()
        })
    }
    // Allocations open now, by container (a container holds one at a time).
    struct Open<'a> {
        start: SystemTime,
        gpueq: f64,
        user: Option<&'a str>,
        devices: &'a [String],
        alloc_id: Option<&'a str>,
    }
    let mut open: HashMap<&str, Vec<Open>> = HashMap::new();
    let mut last_seen: HashMap<&str, SystemTime> = HashMap::new();
    let close = |lines: &mut HashMap<String, Line>, o: Open, end: SystemTime| {
        line_of(lines, key, o.user).gpu_hours += o.gpueq * window.hours(o.start, end);
    };
    for e in events {
        let Some(t) = e.time() else { continue };
        let seen = last_seen.entry(e.container_id.as_str()).or_insert(t);
        *seen = (*seen).max(t);
        match e.event {
            EventKind::Allocate => {
                if window.holds(t) {
                    line_of(&mut lines, key, e.user.as_deref()).containers += 1;
                }
                let runs = open.entry(&e.container_id).or_default();
                // A run of it still open lost its release: it had ended
                // by the time the container was allocated again.
                for o in runs.drain(..) {
                    close(&mut lines, o, t);
                }
                runs.push(Open {
                    start: t,
                    gpueq: e.gpueq,
                    user: e.user.as_deref(),
                    devices: &e.devices,
                    alloc_id: e.alloc_id.as_deref(),
                });
            }
            EventKind::Release | EventKind::Reclaim => {
                let Some(runs) = open.get_mut(e.container_id.as_str()) else {
                    continue;
                };
                let at = match e.alloc_id.as_deref() {
                    Some(a) if runs.iter().any(|o| o.alloc_id == Some(a)) => {
                        runs.iter().position(|o| o.alloc_id == Some(a))
                    }
                    _ => runs.iter().rposition(|o| {
                        e.devices.is_empty() || o.devices.iter().any(|d| e.devices.contains(d))
                    }),
                };
                if let Some(i) = at {
                    let o = runs.remove(i);
                    close(&mut lines, o, t);
                }
            }
            EventKind::Refuse if window.holds(t) => {
                line_of(&mut lines, key, e.user.as_deref()).refusals += 1
            }
            EventKind::Queue => {
                let secs = e.seconds.or_else(|| waited_secs(e.reason.as_deref()));
                let start = t
                    .checked_sub(Duration::from_secs(secs.unwrap_or(0)))
                    .unwrap_or(t);
                let h = window.hours(start, t);
                if h > 0.0 {
                    line_of(&mut lines, key, e.user.as_deref()).queue_wait_hours += h;
                }
            }
            EventKind::Idle => {
                let secs = e.seconds.unwrap_or(0);
                let start = t.checked_sub(Duration::from_secs(secs)).unwrap_or(t);
                let h = window.hours(start, t);
                if h > 0.0 {
                    line_of(&mut lines, key, e.user.as_deref()).idle_hours += e.gpueq * h;
                }
            }
            _ => {}
        }
    }
    // Still open: up to now where the ledger still holds it; else its
    // release was never written, and it counts up to when it was last seen.
    for (container, runs) in open {
        let end = if held.contains(container) {
            now
        } else {
            last_seen.get(container).copied().unwrap_or(now)
        };
        for o in runs {
            close(&mut lines, o, end);
        }
    }
    for i in idle_now {
        let h = window.hours(i.since, now);
        if h > 0.0 {
            line_of(&mut lines, key, i.user.as_deref()).idle_hours += i.gpueq * h;
        }
    }
    let mut out: Vec<Line> = lines
        .into_values()
        .filter(|l| {
            l.gpu_hours > 0.0
                || l.containers > 0
                || l.refusals > 0
                || l.queue_wait_hours > 0.0
                || l.idle_hours > 0.0
        })
        .collect();
    out.sort_by(|a, b| {
        b.gpu_hours
            .total_cmp(&a.gpu_hours)
            .then(a.name.cmp(&b.name))
    });
    out
}

/// A queue event written before events carried seconds: "waited 1m30s ...".
fn waited_secs(reason: Option<&str>) -> Option<u64> {
    let rest = reason?.strip_prefix("waited ")?;
    let text = rest.split_whitespace().next()?;
    ds01_core::idle::parse(text)
        .ok()
        .flatten()
        .map(|d| d.as_secs())
}

/// CSV of the lines: a header, then one row each.
pub fn csv(by: &str, lines: &[Line]) -> String {
    let mut out = format!("{by},gpu_hours,idle_hours,containers,refusals,queue_wait_hours\n");
    for l in lines {
        let name = if l.name.contains([',', '"', '\n']) {
            format!("\"{}\"", l.name.replace('"', "\"\""))
        } else {
            l.name.clone()
        };
        out.push_str(&format!(
            "{name},{:.3},{:.3},{},{},{:.3}\n",
            l.gpu_hours, l.idle_hours, l.containers, l.refusals, l.queue_wait_hours
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ds01_core::identity::Source;
    use ds01_core::time::timestamp;

    const T0: u64 = 1_764_547_200; // 2025-12-01T00:00:00Z

    fn at(h: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(T0 as f64 + h * 3600.0)
    }

    fn ev(kind: EventKind, h: f64, user: &str, c: &str, gpueq: f64) -> Event {
        Event {
            time: timestamp(at(h)),
            event: kind,
            user: Some(user.into()),
            identity_source: Source::DockerLabel,
            container_id: c.into(),
            devices: vec![format!("MIG-{c}")],
            gpueq,
            reason: None,
            seconds: None,
            alloc_id: None,
        }
    }

    #[test]
    fn hours_held_idle_waited_and_refused_with_known_answers() {
        use EventKind::*;
        let mut waited = ev(Queue, 1.0, "bob", "b1", 0.5);
        waited.seconds = Some(1800);
        let mut old_wait = ev(Queue, 1.5, "bob", "b3", 0.5);
        old_wait.reason = Some("waited 15m in the GPU queue (number 1)".into());
        let mut idle = ev(Idle, 3.0, "alice", "a1", 1.0);
        idle.seconds = Some(3600);
        let events = vec![
            // alice: a full GPU from 0h to 4h, released.
            ev(Allocate, 0.0, "alice", "a1", 1.0),
            idle,
            ev(Release, 4.0, "alice", "a1", 1.0),
            // bob: half a GPU from 1h, no release written, reclaimed at 3h.
            ev(Allocate, 1.0, "bob", "b1", 0.5),
            waited,
            ev(Reclaim, 3.0, "bob", "b1", 0.5),
            // bob: another from 5h, still running at 10h.
            ev(Allocate, 5.0, "bob", "b2", 0.5),
            old_wait,
            ev(Refuse, 6.0, "bob", "b4", 0.0),
        ];
        let window = Window {
            from: at(0.0),
            to: at(24.0),
        };
        let idle_now = [IdleNow {
            user: Some("bob".into()),
            gpueq: 0.5,
            since: at(8.0),
        }];
        let held: HashSet<String> = ["b2".to_string()].into();
        let lines = report(&events, window, at(10.0), &idle_now, &held, &|u| {
            u.unwrap_or("?").to_string()
        });
        let by = |n: &str| lines.iter().find(|l| l.name == n).unwrap().clone();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        let alice = by("alice");
        assert!(close(alice.gpu_hours, 4.0), "{alice:?}");
        assert!(close(alice.idle_hours, 1.0), "{alice:?}");
        assert_eq!((alice.containers, alice.refusals), (1, 0));
        let bob = by("bob");
        // 0.5 x 2 h (to the reclaim) + 0.5 x 5 h (running, to now).
        assert!(close(bob.gpu_hours, 3.5), "{bob:?}");
        assert!(close(bob.idle_hours, 1.0), "still idle: 0.5 x 2 h; {bob:?}");
        assert!(close(bob.queue_wait_hours, 0.75), "{bob:?}");
        assert_eq!((bob.containers, bob.refusals), (2, 1));
        assert_eq!(lines[0].name, "alice", "most GPU-hours first");

        // A window cuts allocations at its edges.
        let part = Window {
            from: at(2.0),
            to: at(3.0),
        };
        let lines = report(&events, part, at(10.0), &[], &held, &|u| {
            u.unwrap().to_string()
        });
        let alice = lines.iter().find(|l| l.name == "alice").unwrap();
        assert!(
            close(alice.gpu_hours, 1.0) && close(alice.idle_hours, 1.0),
            "{alice:?}"
        );
        assert_eq!(alice.containers, 0, "it began before the window");

        // By group: both in one.
        let lines = report(&events, window, at(10.0), &[], &held, &|_| {
            "students".into()
        });
        assert_eq!(lines.len(), 1);
        assert!(close(lines[0].gpu_hours, 7.5));
        let text = csv("group", &lines);
        assert!(text.starts_with("group,gpu_hours,"), "{text}");
        assert!(text.contains("\nstudents,7.500,"), "{text}");
    }

    #[test]
    fn a_release_never_written_ends_a_run_at_the_next_allocation_or_when_last_seen() {
        use EventKind::*;
        let mut warn = ev(Warn, 3.0, "carol", "c1", 1.0);
        warn.reason = Some("idle_timeout: idle 2h".into());
        let mut first = ev(Allocate, 0.0, "dave", "d1", 1.0);
        first.alloc_id = Some("d1-1".into());
        let mut second = ev(Allocate, 5.0, "dave", "d1", 1.0);
        second.alloc_id = Some("d1-2".into());
        let mut release = ev(Release, 6.0, "dave", "d1", 1.0);
        release.alloc_id = Some("d1-2".into());
        let events = vec![
            // carol's run: no release, not held now: up to its last event.
            ev(Allocate, 1.0, "carol", "c1", 1.0),
            warn,
            // dave's first run lost its release: it ends when the
            // container is allocated again; the second is paired by id.
            first,
            second,
            release,
        ];
        let window = Window {
            from: at(0.0),
            to: at(24.0),
        };
        let lines = report(&events, window, at(10.0), &[], &HashSet::new(), &|u| {
            u.unwrap().to_string()
        });
        let by = |n: &str| lines.iter().find(|l| l.name == n).unwrap().gpu_hours;
        assert!((by("carol") - 2.0).abs() < 1e-9, "{lines:?}");
        assert!((by("dave") - 6.0).abs() < 1e-9, "5 h then 1 h: {lines:?}");
    }

    #[test]
    fn a_month_is_its_calendar_month_in_utc() {
        let w = Window::month("2026-11").unwrap();
        assert_eq!(timestamp(w.from), "2026-11-01T00:00:00Z");
        assert_eq!(timestamp(w.to), "2026-12-01T00:00:00Z");
        let w = Window::month("2024-12").unwrap();
        assert_eq!(timestamp(w.to), "2025-01-01T00:00:00Z");
        assert_eq!(
            timestamp(Window::month("2024-03").unwrap().from),
            "2024-03-01T00:00:00Z"
        );
        for bad in [
            "2026-13", "2026-1", "26-11", "2026/11", "x", "2026-+1", "+026-11",
        ] {
            assert!(Window::month(bad).is_err(), "{bad}");
        }
    }
}
