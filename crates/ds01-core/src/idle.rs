//! Idle and over-time GPU containers: what `ds01 reap` decides, with no
//! side effects. A container is idle while no compute process runs on its
//! devices (and a full GPU shows no utilisation) and its cgroup uses less
//! CPU than the threshold; it is warned ahead of its deadline and stopped
//! at it, unless it became active again meanwhile.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What one pass saw of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: SystemTime,
    /// A compute process on one of its devices, or utilisation of its GPU.
    pub gpu_busy: bool,
    /// Its cgroup's CPU time so far, in microseconds, where readable.
    pub cpu_usec: Option<u64>,
}

/// Why a container is warned or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    IdleTimeout,
    MaxRuntime,
}

/// What reap remembers of one container between passes. Times are
/// milliseconds since the epoch: CPU rates need more than seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// The allocation (one run of the container) this track is of: a
    /// container started again under the same id is a new run, with a
    /// new warning and its full time.
    #[serde(default)]
    pub alloc_id: Option<String>,
    /// Since when it has been idle; `None` while it is active.
    pub idle_since_ms: Option<u64>,
    pub cpu_usec: Option<u64>,
    pub sampled_at_ms: Option<u64>,
    /// The warning given, and when it may be stopped.
    pub warned: Option<Warning>,
    /// What the allocation holds, so that an idle spell can be written
    /// down after the container has gone.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub gpueq: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub reason: Reason,
    pub at_ms: u64,
    pub stop_at_ms: u64,
}

/// Every container's track, by container id (`<state_dir>/reap.json`).
pub type Tracks = BTreeMap<String, Track>;

/// The limits that apply to one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub idle_timeout: Option<Duration>,
    pub max_runtime: Option<Duration>,
    /// How long ahead of a stop the owner is warned.
    pub warning: Duration,
    /// CPU use, in percent of one core, under which it counts as idle.
    pub cpu_percent: f64,
    /// A keep-alive label its owner may use: no idle timeout.
    pub keep_alive: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Fine,
    /// Warn now; stop at `stop_at` unless it becomes active.
    Warn {
        reason: Reason,
        why: String,
        stop_at: SystemTime,
    },
    Stop {
        reason: Reason,
        why: String,
    },
}

pub fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The track after this pass's sample. A first sample has no CPU rate
/// yet: it counts as idle from now if the GPU is idle. Activity ends an
/// idle warning (a max-runtime warning stands).
pub fn observe(prev: Option<&Track>, s: &Sample, cpu_percent: f64) -> Track {
    let now = ms(s.at);
    let cpu_busy = match (
        prev.and_then(|p| p.cpu_usec),
        prev.and_then(|p| p.sampled_at_ms),
        s.cpu_usec,
    ) {
        (Some(before), Some(then), Some(after)) if now > then => {
            let used_us = after.saturating_sub(before) as f64;
            let wall_us = (now - then) as f64 * 1000.0;
            used_us * 100.0 / wall_us >= cpu_percent
        }
        _ => false,
    };
    let idle = !s.gpu_busy && !cpu_busy;
    let mut warned = prev.and_then(|p| p.warned.clone());
    if !idle
        && warned
            .as_ref()
            .is_some_and(|w| w.reason == Reason::IdleTimeout)
    {
        warned = None;
    }
    Track {
        alloc_id: prev.and_then(|p| p.alloc_id.clone()),
        idle_since_ms: if idle {
            Some(prev.and_then(|p| p.idle_since_ms).unwrap_or(now))
        } else {
            None
        },
        cpu_usec: s.cpu_usec,
        sampled_at_ms: Some(now),
        warned,
        user: prev.and_then(|p| p.user.clone()),
        devices: prev.map(|p| p.devices.clone()).unwrap_or_default(),
        gpueq: prev.map_or(0.0, |p| p.gpueq),
    }
}

/// When and why the container must stop: its idle deadline and its
/// runtime deadline, where it has them.
pub fn deadlines(
    track: &Track,
    started: SystemTime,
    rules: &Rules,
) -> Vec<(SystemTime, Reason, String)> {
    let idle = match (rules.keep_alive, rules.idle_timeout, track.idle_since_ms) {
        (false, Some(t), Some(since)) => Some((
            from_ms(since) + t,
            Reason::IdleTimeout,
            format!(
                "idle (no GPU process, CPU under {}% of a core) for its idle_timeout of {}",
                rules.cpu_percent,
                text(t)
            ),
        )),
        _ => None,
    };
    let runtime = rules.max_runtime.map(|t| {
        (
            started + t,
            Reason::MaxRuntime,
            format!("running for its max_runtime of {}", text(t)),
        )
    });
    [idle, runtime].into_iter().flatten().collect()
}

/// The earliest deadline, for `container ls`.
pub fn deadline(track: &Track, started: SystemTime, rules: &Rules) -> Option<SystemTime> {
    deadlines(track, started, rules)
        .into_iter()
        .map(|d| d.0)
        .min()
}

/// This pass's verdict. A container is stopped only after a warning at
/// least `rules.warning` ahead, so a missed pass never stops one unwarned.
pub fn judge(track: &Track, started: SystemTime, now: SystemTime, rules: &Rules) -> Verdict {
    let all = deadlines(track, started, rules);
    if let Some(w) = &track.warned {
        if ms(now) >= w.stop_at_ms
            && let Some((_, reason, why)) = all.into_iter().find(|d| d.1 == w.reason && d.0 <= now)
        {
            return Verdict::Stop { reason, why };
        }
        return Verdict::Fine;
    }
    match all.into_iter().min_by_key(|d| d.0) {
        Some((at, reason, why)) if now + rules.warning >= at => Verdict::Warn {
            reason,
            why,
            stop_at: at.max(now + rules.warning),
        },
        _ => Verdict::Fine,
    }
}

/// A duration as people write it in config.toml (`2h`, `30m`, `45s`).
pub fn text(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Reads a duration as config.toml and labels write it; `never` is `None`.
pub fn parse(s: &str) -> Result<Option<Duration>, String> {
    if s == "never" {
        return Ok(None);
    }
    humantime::parse_duration(s).map(Some).map_err(|_| {
        format!("{s:?} is not a duration; write it like \"2h\", \"30m\" or \"45s\", or \"never\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn at(secs: u64) -> SystemTime {
        from_ms(T0 + secs * 1000)
    }

    fn sample(secs: u64, gpu_busy: bool, cpu_usec: u64) -> Sample {
        Sample {
            at: at(secs),
            gpu_busy,
            cpu_usec: Some(cpu_usec),
        }
    }

    fn rules() -> Rules {
        Rules {
            idle_timeout: Some(Duration::from_secs(3600)),
            max_runtime: None,
            warning: Duration::from_secs(600),
            cpu_percent: 5.0,
            keep_alive: false,
        }
    }

    /// Runs passes at the given seconds, returning each verdict; the
    /// warning is noted as reap notes it.
    fn passes(plan: &[(u64, bool, u64)], rules: &Rules) -> Vec<Verdict> {
        let mut track: Option<Track> = None;
        let mut out = Vec::new();
        for &(secs, busy, cpu) in plan {
            let mut t = observe(track.as_ref(), &sample(secs, busy, cpu), rules.cpu_percent);
            let v = judge(&t, at(0), at(secs), rules);
            if let Verdict::Warn {
                reason, stop_at, ..
            } = &v
            {
                t.warned = Some(Warning {
                    reason: *reason,
                    at_ms: ms(at(secs)),
                    stop_at_ms: ms(*stop_at),
                });
            }
            out.push(v);
            track = Some(t);
        }
        out
    }

    fn kinds(v: &[Verdict]) -> Vec<&'static str> {
        v.iter()
            .map(|v| match v {
                Verdict::Fine => "fine",
                Verdict::Warn { .. } => "warn",
                Verdict::Stop { .. } => "stop",
            })
            .collect()
    }

    #[test]
    fn an_idle_container_is_warned_ahead_then_stopped_at_its_timeout() {
        // Idle from the first pass (t=0): warned at 50 min, stopped at 60.
        let v = passes(
            &[
                (0, false, 0),
                (2999, false, 10),
                (3000, false, 10),
                (3600, false, 20),
            ],
            &rules(),
        );
        assert_eq!(kinds(&v), ["fine", "fine", "warn", "stop"]);
        match &v[2] {
            Verdict::Warn { stop_at, why, .. } => {
                assert_eq!(*stop_at, at(3600));
                assert!(why.contains("idle_timeout of 1h"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gpu_work_or_cpu_over_the_threshold_keeps_it_active_and_ends_a_warning() {
        // A compute process on its slice: never idle.
        let v = passes(&[(0, true, 0), (3600, true, 0), (7200, true, 0)], &rules());
        assert_eq!(kinds(&v), ["fine", "fine", "fine"]);
        // Warned, then 10% of a core for a minute: active, not stopped.
        let v = passes(
            &[
                (0, false, 0),
                (3000, false, 0),
                (3060, false, 6_000_000),
                (3600, false, 6_000_000),
                (3660, false, 6_000_000),
            ],
            &rules(),
        );
        assert_eq!(kinds(&v), ["fine", "warn", "fine", "fine", "fine"]);
        // Under the threshold (1% of a core) is still idle.
        let v = passes(
            &[
                (0, false, 0),
                (3000, false, 30_000_000),
                (3600, false, 36_000_000),
            ],
            &rules(),
        );
        assert_eq!(kinds(&v), ["fine", "warn", "stop"]);
    }

    #[test]
    fn a_missed_pass_never_stops_a_container_unwarned() {
        // First seen idle long after its deadline (reap was not running):
        // warned now, stopped a full warning later.
        let mut r = rules();
        r.max_runtime = Some(Duration::from_secs(100));
        let v = passes(&[(5000, false, 0), (5100, false, 0), (5600, false, 0)], &r);
        assert_eq!(kinds(&v), ["warn", "fine", "stop"]);
        match &v[2] {
            Verdict::Stop { reason, why } => {
                assert_eq!(*reason, Reason::MaxRuntime);
                assert!(why.contains("max_runtime of 1m 40s"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keep_alive_lifts_the_idle_timeout_but_not_max_runtime() {
        let mut r = rules();
        r.keep_alive = true;
        let v = passes(&[(0, false, 0), (3600, false, 0), (90000, false, 0)], &r);
        assert_eq!(kinds(&v), ["fine", "fine", "fine"]);
        r.max_runtime = Some(Duration::from_secs(7200));
        let v = passes(&[(0, true, 0), (6600, true, 0), (7200, true, 0)], &r);
        assert_eq!(kinds(&v), ["fine", "warn", "stop"]);
        // Activity does not lift a max_runtime warning.
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse("2h"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(parse("30m"), Ok(Some(Duration::from_secs(1800))));
        assert_eq!(parse("never"), Ok(None));
        let e = parse("soon").unwrap_err();
        assert!(e.contains("\"2h\""), "{e}");
        assert_eq!(text(Duration::from_secs(5400)), "1h 30m");
    }
}
