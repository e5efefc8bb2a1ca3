//! Which of Docker's endpoints a request is for, read as dockerd's router
//! reads it, and the allowlist of those a non-admin may reach. What is not
//! listed (plugins, swarm, BuildKit's session, endpoints a later Docker
//! adds) is refused by name.

use super::Denial;
use super::body::refusal;

/// What a request is about, after its version prefix.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// Allowed as it is: pings, reads of shared objects, pushes.
    Plain,
    /// `POST /containers/create`.
    Create,
    /// `GET /containers/json`.
    List,
    /// `GET /events`: a non-admin's are filtered to their own.
    Events,
    /// `POST /containers|volumes|networks/prune`: kept to the caller's own.
    Prune,
    /// An operation on one container: its id or name, and the operation.
    Container(String, Op),
    /// `/exec/{id}/...`: an exec instance, judged by its container.
    Exec(String),
    /// `POST /build`.
    Build,
    /// `POST /images/create`: a pull (an import, `fromSrc`, is refused).
    Pull,
    /// `POST /images/{name}/tag`.
    Tag,
    /// `DELETE /images/{name}`.
    ImageRemove(String),
    /// `POST /commit`.
    Commit,
    VolumeCreate,
    VolumeRemove(String),
    NetworkCreate,
    /// `POST /networks/{id}/connect|disconnect`.
    NetworkConnect(String),
    NetworkRemove(String),
}

/// The operations on a container that carry a body the gate must judge.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `start`: an old API's HostConfig body is refused.
    Start,
    Update,
    Exec,
    /// Everything else on the allowlist: no body that matters.
    Other(String),
}

/// The path without its `/vX.Y` prefix.
pub fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(i) = rest.find('/')
        && rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.')
        && !rest[..i].is_empty()
    {
        return &rest[i..];
    }
    path
}

fn endpoint(why: String) -> Denial {
    refusal("endpoint", why)
}

/// Where a request goes, or why a non-admin may not send it. The path is
/// the raw one from the request line: dockerd decodes `%` escapes before it
/// routes, so a path with any is refused rather than judged in one form and
/// run in another; so are empty, `.` and `..` segments.
pub fn route(method: &str, raw_path: &str) -> Result<Route, Denial> {
    if raw_path.contains('%') {
        return Err(endpoint(format!(
            "the path {raw_path:?} has %-escapes; send it plain"
        )));
    }
    let p = strip_version(raw_path);
    let parts: Vec<&str> = p.strip_prefix('/').unwrap_or("").split('/').collect();
    if parts
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Err(endpoint(format!(
            "the path {raw_path:?} is not one Docker routes"
        )));
    }
    let get = matches!(method, "GET" | "HEAD");
    let post = method == "POST";
    let del = method == "DELETE";
    let r = match parts.as_slice() {
        ["_ping"] if get => Route::Plain,
        ["version" | "info"] | ["system", "df"] if get => Route::Plain,
        ["auth"] if post => Route::Plain,
        ["events"] if get => Route::Events,
        ["containers", "json"] if get => Route::List,
        ["containers", "create"] if post => Route::Create,
        ["containers" | "volumes" | "networks", "prune"] if post => Route::Prune,
        ["containers", id] if del => Route::Container(id.to_string(), Op::Other("remove".into())),
        ["containers", id, "attach", "ws"] if get => {
            Route::Container(id.to_string(), Op::Other("attach".into()))
        }
        ["containers", id, op] => {
            let op = *op;
            let ok = match method {
                "GET" => matches!(
                    op,
                    "json" | "top" | "logs" | "changes" | "export" | "stats" | "archive"
                ),
                "HEAD" => op == "archive",
                "PUT" => op == "archive",
                "POST" => matches!(
                    op,
                    "resize"
                        | "start"
                        | "stop"
                        | "restart"
                        | "kill"
                        | "update"
                        | "rename"
                        | "pause"
                        | "unpause"
                        | "attach"
                        | "wait"
                        | "exec"
                ),
                _ => false,
            };
            if !ok {
                return Err(endpoint(format!(
                    "{method} /containers/{{id}}/{op} is an admin's"
                )));
            }
            let op = match op {
                "start" => Op::Start,
                "update" => Op::Update,
                "exec" => Op::Exec,
                other => Op::Other(other.into()),
            };
            Route::Container(id.to_string(), op)
        }
        ["exec", id, "json"] if get => Route::Exec(id.to_string()),
        ["exec", id, "start" | "resize"] if post => Route::Exec(id.to_string()),
        ["images", "json" | "search" | "get"] if get => Route::Plain,
        ["images", "create"] if post => Route::Pull,
        ["build"] if post => Route::Build,
        ["commit"] if post => Route::Commit,
        ["distribution", .., "json"] if get && parts.len() > 2 => Route::Plain,
        ["images", name @ .., last] if !name.is_empty() => match (method, *last) {
            ("GET", "json" | "history" | "get") => Route::Plain,
            ("POST", "push") => Route::Plain,
            ("POST", "tag") => Route::Tag,
            ("DELETE", _) => Route::ImageRemove(parts[1..].join("/")),
            _ => return Err(endpoint(format!("{method} {p} is an admin's"))),
        },
        ["images", name] if del => Route::ImageRemove(name.to_string()),
        ["volumes"] if get => Route::Plain,
        ["volumes", "create"] if post => Route::VolumeCreate,
        ["volumes", _] if get => Route::Plain,
        ["volumes", name] if del => Route::VolumeRemove(name.to_string()),
        ["networks"] if get => Route::Plain,
        ["networks", "create"] if post => Route::NetworkCreate,
        ["networks", _] if get => Route::Plain,
        ["networks", id] if del => Route::NetworkRemove(id.to_string()),
        ["networks", id, "connect" | "disconnect"] if post => Route::NetworkConnect(id.to_string()),
        _ => {
            return Err(endpoint(format!(
                "{method} {p} is not an endpoint the gate lets users reach (plugins, swarm, BuildKit's session, prunes of shared things and the like are an admin's)"
            )));
        }
    };
    Ok(r)
}

/// Go's `r.Form` reads a body of these types ahead of the query, so a
/// judged query parameter (`filters`, `repo`, `networkmode`) could be said
/// again in the body. Docker's API sends neither; a non-admin's request
/// with one, in any of its Content-Type headers (Go reads the first;
/// bollard sends a build's twice), is refused.
pub fn judge_content_types<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<(), Denial> {
    for v in values {
        // Go lowers a media type by Unicode's rules (`İ` is `i` to it):
        // a type in anything but ASCII is not read here as Go reads it.
        if !v.is_ascii() {
            return Err(refusal("parse", "a Content-Type that is not ASCII"));
        }
        let t = String::from_utf8_lossy(v).to_ascii_lowercase();
        let t = t.split(';').next().unwrap_or("").trim().to_string();
        if t == "application/x-www-form-urlencoded" || t.starts_with("multipart/") {
            return Err(refusal(
                "parse",
                format!("a {t} body would say the query again to Docker; the API takes none"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_with_or_without_a_version() {
        let r = |m, p| route(m, p).unwrap();
        assert_eq!(r("POST", "/v1.41/containers/create"), Route::Create);
        assert_eq!(r("POST", "/containers/create"), Route::Create);
        assert_eq!(r("GET", "/v1.43/containers/json"), Route::List);
        assert_eq!(
            r("POST", "/v1.41/containers/abc/stop"),
            Route::Container("abc".into(), Op::Other("stop".into()))
        );
        assert_eq!(
            r("DELETE", "/v1.41/containers/abc"),
            Route::Container("abc".into(), Op::Other("remove".into()))
        );
        assert_eq!(
            r("POST", "/v1.23/containers/abc/start"),
            Route::Container("abc".into(), Op::Start)
        );
        assert_eq!(r("POST", "/v1.41/exec/e1/start"), Route::Exec("e1".into()));
        assert_eq!(r("DELETE", "/volumes/v1"), Route::VolumeRemove("v1".into()));
        assert_eq!(r("GET", "/_ping"), Route::Plain);
        assert_eq!(r("POST", "/v1.41/build"), Route::Build);
        assert_eq!(r("GET", "/images/bob/app:latest/json"), Route::Plain);
        assert_eq!(
            r("DELETE", "/images/bob/app:latest"),
            Route::ImageRemove("bob/app:latest".into())
        );
        assert_eq!(r("POST", "/images/bob/app/tag"), Route::Tag);
    }

    #[test]
    fn form_bodies_that_would_restate_the_query_are_refused() {
        let j = |v: &[&str]| judge_content_types(v.iter().map(|s| s.as_bytes()));
        assert!(j(&[]).is_ok() && j(&["application/json"]).is_ok());
        assert!(j(&["application/x-tar"]).is_ok());
        assert!(j(&["application/x-tar", "application/x-tar"]).is_ok());
        for bad in [
            &["application/x-www-form-urlencoded"][..],
            &["Application/X-WWW-Form-URLencoded; charset=utf-8"],
            &["multipart/form-data; boundary=x"],
            &["application/json", "application/x-www-form-urlencoded"],
            &["appl\u{130}cation/x-www-form-urlencoded"],
        ] {
            assert!(j(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escapes_odd_segments_and_unlisted_endpoints_are_refused() {
        for (m, p) in [
            ("POST", "/v1.41/%63ontainers/create"),
            ("POST", "/v1.41/containers%2Fcreate"),
            ("POST", "/%63ontainers/abc/stop"),
            ("POST", "/v1.41//containers/create"),
            ("POST", "/v1.41/./containers/create"),
            ("POST", "/v1.41/containers/x/../create"),
            ("POST", "/containers/create/"),
            ("POST", "/Containers/create"),
            ("POST", "/plugins/create"),
            ("POST", "/plugins/x/enable"),
            ("POST", "/swarm/init"),
            ("POST", "/services/create"),
            ("POST", "/session"),
            ("POST", "/grpc"),
            ("POST", "/build/prune"),
            ("POST", "/images/prune"),
            ("POST", "/images/load"),
            ("POST", "/containers/x/checkpoints"),
            ("GET", "/secrets"),
            ("POST", "/containers/x/copy"),
        ] {
            let e = route(m, p).unwrap_err();
            assert_eq!(e.rule, "endpoint", "{m} {p}");
        }
    }
}
