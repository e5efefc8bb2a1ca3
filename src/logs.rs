//! `ds01 logs`: what ds01 wrote about one user's containers, from the
//! audit log (allocations, refusals with their reasons, releases, reclaims,
//! warnings) and the runtime log, merged by time. Other users' entries are
//! left out: both logs are world-readable, but this view shows only yours.

use std::collections::HashSet;

use serde::Serialize;

use ds01_core::audit::Event;

/// One line of `ds01 logs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub time: String,
    /// `audit` or `runtime`.
    pub source: &'static str,
    /// The audit event (`allocate`, `refuse`, ...) or the log level.
    pub kind: String,
    pub container_id: String,
    pub message: String,
}

/// Whose entries to show.
pub struct Filter<'a> {
    /// Only this user's containers; `None` (an admin asking for all): everyone's.
    pub user: Option<&'a str>,
    /// Only these containers (full ids); `None`: all of the user's.
    pub containers: Option<&'a HashSet<String>>,
}

/// The containers an audit log shows as `user`'s.
pub fn containers_of(events: &[Event], user: &str) -> HashSet<String> {
    events
        .iter()
        .filter(|e| e.user.as_deref() == Some(user))
        .map(|e| e.container_id.clone())
        .collect()
}

/// The entries the filter lets through, oldest first. `runtime_log` is
/// the runtime log's text; its lines count for a container they name.
pub fn entries(events: &[Event], runtime_log: &str, f: &Filter) -> Vec<Entry> {
    let mine = f.user.map(|u| containers_of(events, u));
    let wanted = |id: &str| {
        mine.as_ref().is_none_or(|m| m.contains(id)) && f.containers.is_none_or(|c| c.contains(id))
    };
    let mut out: Vec<Entry> = events
        .iter()
        .filter(|e| f.user.is_none_or(|u| e.user.as_deref() == Some(u)))
        .filter(|e| wanted(&e.container_id))
        .map(|e| Entry {
            time: e.time.clone(),
            source: "audit",
            kind: e.event.as_str().to_string(),
            container_id: e.container_id.clone(),
            message: audit_message(e),
        })
        .collect();
    for line in runtime_log.lines() {
        let Some((time, level, msg)) = split_log_line(line) else {
            continue;
        };
        let Some(id) = named_container(msg) else {
            continue;
        };
        if wanted(id) {
            out.push(Entry {
                time: time.to_string(),
                source: "runtime",
                kind: level.to_string(),
                container_id: id.to_string(),
                message: msg.to_string(),
            });
        }
    }
    // Stable: at one second, the audit event comes before the log lines.
    out.sort_by(|a, b| a.time.cmp(&b.time));
    out
}

fn audit_message(e: &Event) -> String {
    let devices = if e.devices.is_empty() {
        String::new()
    } else {
        format!(" {}", e.devices.join(","))
    };
    match &e.reason {
        Some(r) => format!("{}{devices}: {r}", e.event.as_str()),
        None => format!("{}{devices}", e.event.as_str()),
    }
}

/// `TIME LEVEL [pid] message`, as the runtime writes its log.
fn split_log_line(line: &str) -> Option<(&str, &str, &str)> {
    let (time, rest) = line.split_once(' ')?;
    let (level, rest) = rest.split_once(' ')?;
    let msg = rest.split_once("] ").map_or(rest, |(_, m)| m);
    Some((time, level, msg))
}

/// The container id a log line names: the first 64-hex word after
/// "container " (how the runtime names containers in its log).
fn named_container(msg: &str) -> Option<&str> {
    msg.match_indices("container ").find_map(|(i, _)| {
        let word = msg[i + 10..]
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_')
            .next()?;
        (!word.is_empty()).then_some(word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaa000000000000000000000000000000000000000000000000000000000001";
    const B: &str = "bbbb000000000000000000000000000000000000000000000000000000000002";

    fn events() -> Vec<Event> {
        let line = |t: &str, ev: &str, user: &str, id: &str, reason: Option<&str>| {
            serde_json::from_value::<Event>(serde_json::json!({
                "time": t, "event": ev, "user": user, "identity_source": "docker-label",
                "container_id": id, "devices": [], "gpueq": 0.0, "reason": reason,
            }))
            .unwrap()
        };
        vec![
            line(
                "2026-11-29T10:00:00Z",
                "refuse",
                "alice",
                A,
                Some("no MIG slice free (7 of 7 in use)"),
            ),
            line("2026-11-29T10:00:01Z", "allocate", "bob", B, None),
        ]
    }

    const LOG: &str = "2026-11-29T10:00:00Z info [12] refused container aaaa000000000000000000000000000000000000000000000000000000000001: no MIG slice free\n\
2026-11-29T10:00:02Z info [13] container bbbb000000000000000000000000000000000000000000000000000000000002 waits (number 1 in the GPU queue)\n\
2026-11-29T10:00:03Z warn [14] something without a container\n";

    #[test]
    fn a_user_sees_their_refusal_with_its_reason_and_nothing_of_others() {
        let e = entries(
            &events(),
            LOG,
            &Filter {
                user: Some("alice"),
                containers: None,
            },
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!((e[0].source, e[0].kind.as_str()), ("audit", "refuse"));
        assert!(e[0].message.contains("no MIG slice free (7 of 7 in use)"));
        assert_eq!((e[1].source, e[1].container_id.as_str()), ("runtime", A));
        assert!(e.iter().all(|x| x.container_id != B));
        // An admin sees everyone's, merged by time.
        let all = entries(
            &events(),
            LOG,
            &Filter {
                user: None,
                containers: None,
            },
        );
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].container_id, B);
        // One container only.
        let only: HashSet<String> = [B.to_string()].into();
        let e = entries(
            &events(),
            LOG,
            &Filter {
                user: Some("bob"),
                containers: Some(&only),
            },
        );
        assert_eq!(e.len(), 2);
        let e = entries(
            &events(),
            LOG,
            &Filter {
                user: Some("alice"),
                containers: Some(&only),
            },
        );
        assert!(e.is_empty(), "bob's container is not alice's to read");
    }
}
