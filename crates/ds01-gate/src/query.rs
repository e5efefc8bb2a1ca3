//! Query strings, read as Go's `url.ParseQuery` reads them (`%` escapes and
//! `+` decoded; a `;` or a bad escape fails), and the queries the gate judges:
//! builds, pulls, tags and commits.

use serde_json::Value;

use super::body::refusal;
use super::{Caller, Denial, USER_LABEL, strict};

/// The query's pairs, decoded; an unreadable one is refused.
pub fn parse(q: Option<&str>) -> Result<Vec<(String, String)>, Denial> {
    let mut out = Vec::new();
    for kv in q.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        if kv.contains(';') {
            return Err(refusal(
                "parse",
                "a query with ';' is read differently by Docker's Go",
            ));
        }
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, Denial> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| refusal("parse", "a query has a bad %-escape"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| refusal("parse", "a query is not UTF-8"))
}

pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

pub fn join(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The one value of `key`: Go reads the first of several, so more than one
/// is refused rather than guessed at.
pub fn one<'a>(pairs: &'a [(String, String)], key: &str) -> Result<Option<&'a str>, Denial> {
    let mut it = pairs.iter().filter(|(k, _)| k == key);
    let first = it.next().map(|(_, v)| v.as_str());
    if it.next().is_some() {
        return Err(refusal("parse", format!("the query gives {key} twice")));
    }
    Ok(first)
}

/// Every key must be in `known`, as Docker spells it.
fn known_keys(pairs: &[(String, String)], known: &[&str], what: &str) -> Result<(), Denial> {
    for (k, _) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(refusal(
                "unknown-field",
                format!("{what}: the parameter {k:?} is not one the gate knows, so it is refused"),
            ));
        }
    }
    Ok(())
}

const BUILD_KEYS: &[&str] = &[
    "t",
    "q",
    "nocache",
    "pull",
    "rm",
    "forcerm",
    "dockerfile",
    "buildargs",
    "labels",
    "memory",
    "memswap",
    "cpushares",
    "cpusetcpus",
    "cpusetmems",
    "cpuperiod",
    "cpuquota",
    "shmsize",
    "cachefrom",
    "networkmode",
    "platform",
    "target",
    "extrahosts",
    "squash",
    "ulimits",
    "isolation",
    "version",
    "cgroupparent",
    "session",
    "buildid",
    "remote",
    "outputs",
];

/// A classic build, for a non-admin: its step containers get the same
/// fences as a create, and what it makes carries the caller's name. The
/// steps run under `parent`, the caller's cgroup parent, which names them
/// as the caller's to ds01-runtime whatever labels the image holds. The
/// new query, and the tags it writes (each must not be another's).
pub fn judge_build(
    pairs: &[(String, String)],
    caller: &Caller,
    parent: &str,
) -> Result<(String, Vec<String>), Denial> {
    known_keys(pairs, BUILD_KEYS, "the build")?;
    let is = |k: &str, allowed: &[&str]| -> Result<(), Denial> {
        match one(pairs, k)? {
            Some(v) if !v.is_empty() && !allowed.contains(&v) => Err(refusal(
                "build",
                format!(
                    "a build's {k}={v} is not allowed here (allowed: {})",
                    allowed.join(", ")
                ),
            )),
            _ => Ok(()),
        }
    };
    is("networkmode", &["default", "bridge", "none"])?;
    // BuildKit's session runs beside the gate's judgement; the classic
    // builder's steps are containers like any other.
    is("version", &["1"])?;
    is("cgroupparent", &[])?;
    is("isolation", &["default"])?;
    is("remote", &[])?;
    is("outputs", &[])?;
    if let Some(u) = one(pairs, "ulimits")?.filter(|u| !u.is_empty()) {
        let v = strict::parse(u.as_bytes()).map_err(|e| refusal("parse", e))?;
        super::body::judge_ulimits(&v)?;
    }
    let mut labels = match one(pairs, "labels")? {
        Some(l) if !l.is_empty() => strict::parse(l.as_bytes()).map_err(|e| refusal("parse", e))?,
        _ => Value::Object(Default::default()),
    };
    let Some(obj) = labels.as_object_mut() else {
        return Err(refusal("parse", "a build's labels are not an object"));
    };
    obj.insert(USER_LABEL.into(), Value::String(caller.name.clone()));
    let mut out: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "labels" && k != "cgroupparent")
        .cloned()
        .collect();
    out.push(("labels".into(), labels.to_string()));
    out.push(("cgroupparent".into(), parent.to_string()));
    let tags = pairs
        .iter()
        .filter(|(k, v)| k == "t" && !v.is_empty())
        .map(|(_, v)| v.clone())
        .collect();
    Ok((join(&out), tags))
}

/// `repo` and `tag` as one name (`repo:tag`, `latest` when none).
pub fn image_name(repo: &str, tag: &str) -> Result<String, Denial> {
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let tagged = last.contains(':') || repo.contains('@');
    if !tag.is_empty() && tagged {
        return Err(refusal(
            "parse",
            format!("{repo:?} is tagged already and the tag {tag:?} is given too"),
        ));
    }
    Ok(if tag.is_empty() {
        if tagged {
            repo.to_string()
        } else {
            format!("{repo}:latest")
        }
    } else {
        format!("{repo}:{tag}")
    })
}

/// `POST /images/create`: a pull of `fromImage`, never an import.
pub fn judge_pull(pairs: &[(String, String)]) -> Result<String, Denial> {
    known_keys(
        pairs,
        &[
            "fromImage",
            "fromSrc",
            "repo",
            "tag",
            "message",
            "changes",
            "platform",
        ],
        "the pull",
    )?;
    if one(pairs, "fromSrc")?.is_some() {
        return Err(refusal(
            "image-import",
            "docker import writes any image under any name; ask an admin, or push to a registry and pull",
        ));
    }
    let Some(image) = one(pairs, "fromImage")?.filter(|s| !s.is_empty()) else {
        return Err(refusal("parse", "the pull names no image"));
    };
    image_name(image, one(pairs, "tag")?.unwrap_or(""))
}

/// `POST /images/{name}/tag`: the name it writes.
pub fn judge_tag(pairs: &[(String, String)]) -> Result<String, Denial> {
    known_keys(pairs, &["repo", "tag"], "the tag")?;
    let repo = one(pairs, "repo")?.unwrap_or("");
    if repo.is_empty() {
        return Err(refusal("parse", "the tag names no repository"));
    }
    image_name(repo, one(pairs, "tag")?.unwrap_or(""))
}

/// `POST /commit`: the container, and the name it writes if any. Changes
/// may not set labels (an image's labels reach every container made from
/// it, build steps included).
pub fn judge_commit(pairs: &[(String, String)]) -> Result<(String, Option<String>), Denial> {
    known_keys(
        pairs,
        &[
            "container",
            "repo",
            "tag",
            "comment",
            "author",
            "pause",
            "changes",
        ],
        "the commit",
    )?;
    for (_, c) in pairs.iter().filter(|(k, _)| k == "changes") {
        for line in c.lines() {
            let word = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let ok = [
                "",
                "CMD",
                "ENTRYPOINT",
                "ENV",
                "EXPOSE",
                "WORKDIR",
                "USER",
                "VOLUME",
                "STOPSIGNAL",
            ]
            .contains(&word.as_str());
            if !ok {
                return Err(refusal(
                    "commit",
                    format!(
                        "commit --change {word} is not allowed here (CMD, ENTRYPOINT, ENV, EXPOSE, WORKDIR, USER, VOLUME, STOPSIGNAL)"
                    ),
                ));
            }
        }
    }
    let Some(c) = one(pairs, "container")?.filter(|s| !s.is_empty()) else {
        return Err(refusal("parse", "the commit names no container"));
    };
    let repo = one(pairs, "repo")?.unwrap_or("");
    let tag = one(pairs, "tag")?.unwrap_or("");
    let name = if repo.is_empty() {
        None
    } else {
        Some(image_name(repo, tag)?)
    };
    Ok((c.to_string(), name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::alice;

    #[test]
    fn queries_decode_as_go_does() {
        let p = parse(Some("networkmode=%68ost&t=a+b&x")).unwrap();
        assert_eq!(p[0], ("networkmode".into(), "host".into()));
        assert_eq!(p[1], ("t".into(), "a b".into()));
        assert_eq!(p[2], ("x".into(), "".into()));
        assert!(parse(Some("a=%zz")).is_err());
        assert!(parse(Some("a=1;b=2")).is_err());
    }

    #[test]
    fn builds_keep_to_the_fences_and_carry_the_callers_name() {
        let b = |q: &str| {
            judge_build(
                &parse(Some(q)).unwrap(),
                &alice(),
                "/ds01-build-alice.slice",
            )
        };
        for q in [
            "networkmode=host",
            "networkmode=%68ost",
            "networkmode=default&networkmode=host",
            "version=2",
            "cgroupparent=/",
            "remote=https://example.com/x.git",
            "newfield=1",
            "ulimits=%5B%7B%22Name%22%3A%22rtprio%22%2C%22Hard%22%3A99%2C%22Soft%22%3A99%7D%5D",
        ] {
            assert!(b(q).is_err(), "{q}");
        }
        let (q, tags) =
            b("t=a%3A1&t=b&networkmode=default&labels=%7B%22ds01.user%22%3A%22bob%22%7D").unwrap();
        assert_eq!(tags, ["a:1", "b"]);
        let p = parse(Some(&q)).unwrap();
        let labels: Value = serde_json::from_str(one(&p, "labels").unwrap().unwrap()).unwrap();
        assert_eq!(labels["ds01.user"], "alice");
        assert_eq!(
            one(&p, "cgroupparent").unwrap(),
            Some("/ds01-build-alice.slice")
        );
    }

    #[test]
    fn pulls_tags_and_commits_name_what_they_write() {
        let p = |q: &str| parse(Some(q)).unwrap();
        assert_eq!(
            judge_pull(&p("fromImage=busybox&tag=1")).unwrap(),
            "busybox:1"
        );
        assert_eq!(
            judge_pull(&p("fromImage=bob/app")).unwrap(),
            "bob/app:latest"
        );
        assert_eq!(
            judge_pull(&p("fromSrc=-&repo=bob/app")).unwrap_err().rule,
            "image-import"
        );
        assert_eq!(
            judge_tag(&p("repo=bob/app&tag=latest")).unwrap(),
            "bob/app:latest"
        );
        assert_eq!(
            judge_commit(&p("container=c1&repo=bob/app")).unwrap(),
            ("c1".into(), Some("bob/app:latest".into()))
        );
        assert_eq!(
            judge_commit(&p("container=c1&changes=LABEL+ds01.user%3Dbob"))
                .unwrap_err()
                .rule,
            "commit"
        );
        assert_eq!(
            image_name("localhost:5000/app", "").unwrap(),
            "localhost:5000/app:latest"
        );
        assert!(image_name("bob/app:latest", "v2").is_err());
        // Lower-case keys Go would read as Name are not a way around.
        assert!(
            judge_build(
                &p("ulimits=%5B%7B%22name%22%3A%22rtprio%22%2C%22Hard%22%3A99%7D%5D"),
                &alice(),
                "/ds01-build-alice.slice"
            )
            .is_err()
        );
    }
}
