//! `ds01-gate --listen PATH --docker PATH`: the Docker API gate. It listens
//! where users reach Docker, learns each caller's uid from the kernel
//! (`SO_PEERCRED`), applies this crate's policy (`lib.rs`), and forwards what it
//! allows to the real dockerd socket, streams and hijacked connections
//! included. What it cannot read it refuses.

// A refusal travels as the response that says it, once per request.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use ds01_core::config::Config;
use ds01_core::identity::{self, Accounts, SystemAccounts};
use ds01_core::share;
use ds01_gate::{self as gate, Caller, Denial, Op, Route, Rules};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

type Body = BoxBody<Bytes, hyper::Error>;

#[derive(Parser)]
#[command(
    name = "ds01-gate",
    version,
    about = "The Docker API gate: knows each caller by the kernel's credentials"
)]
struct Cli {
    /// The socket users connect to (default: the config's gate_listen)
    #[arg(long)]
    listen: Option<PathBuf>,
    /// The real dockerd socket (default: the config's gate_docker)
    #[arg(long)]
    docker: Option<PathBuf>,
}

struct Gate {
    docker: PathBuf,
    rules: Rules,
    cfg: Config,
}

/// One client connection's way to dockerd: a kept connection for plain
/// requests (the docker client sends several on one), and the owners of
/// the containers it has asked about, by full id (ids are never reused).
struct Conn {
    caller: Caller,
    upstream: tokio::sync::Mutex<Option<SendRequest<Body>>>,
    owners: std::sync::Mutex<HashMap<String, Known>>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ds01-gate: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listen = cli.listen.unwrap_or_else(|| cfg.gate_listen.clone());
    let docker = cli.docker.unwrap_or_else(|| cfg.gate_docker.clone());
    let rules = Rules {
        cap_add: cfg.gate_cap_add.clone(),
        host_namespaces: cfg.gate_host_namespaces.clone(),
        shared_paths: cfg.gate_shared_paths.clone(),
        list_all: cfg.gate_list_all,
    };
    // Creates of non-admins outside their parent are refused once a share
    // is on; the runtime reads this marker to know without the config.
    if let Err(e) = share::mark(&cfg.state_dir, cfg.policy.shares_host()) {
        eprintln!(
            "ds01-gate: warning: {:?}: {e}",
            share::marker(&cfg.state_dir)
        );
    }
    let gate = Arc::new(Gate { docker, rules, cfg });
    raise_open_files();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ds01-gate: cannot start: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(serve(&listen, gate)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ds01-gate: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn serve(listen: &Path, gate: Arc<Gate>) -> Result<(), String> {
    // A socket left by an earlier run is replaced; anything else is not.
    if let Ok(m) = std::fs::symlink_metadata(listen) {
        use std::os::unix::fs::FileTypeExt;
        if !m.file_type().is_socket() {
            return Err(format!(
                "{listen:?} exists and is not a socket; remove it or listen elsewhere"
            ));
        }
        let _ = std::fs::remove_file(listen);
    }
    let listener =
        UnixListener::bind(listen).map_err(|e| format!("cannot listen on {listen:?}: {e}"))?;
    permit(listen)?;
    eprintln!(
        "ds01-gate: listening on {} for {}",
        listen.display(),
        gate.docker.display()
    );
    let counts: Arc<std::sync::Mutex<HashMap<u32, usize>>> = Arc::default();
    let mut quiet = LogLimit::default();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file handles: wait for some to close rather than
                // spin, and say so once in a while rather than each time.
                quiet.log(&format!("accept: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(cred) = stream.peer_cred() else {
            continue; // no credentials: no service (fail closed)
        };
        let uid = cred.uid();
        let Some(slot) = Slot::take(&counts, uid, gate.cfg.gate_max_connections) else {
            quiet.log(&format!(
                "uid {uid} is at gate_max_connections; a connection refused"
            ));
            tokio::spawn(too_many(stream));
            continue;
        };
        let conn = Arc::new(Conn {
            caller: caller_of(&gate.cfg, uid),
            upstream: tokio::sync::Mutex::new(None),
            owners: std::sync::Mutex::new(HashMap::new()),
        });
        let gate = gate.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req| {
                let (gate, conn) = (gate.clone(), conn.clone());
                async move { Ok::<_, Infallible>(handle(req, &gate, &conn).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// How long a request's header may take to arrive.
const HEADER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// One of a user's open connections, given back when it closes. Root has
/// no cap: the admin's way in stays open.
struct Slot {
    counts: Arc<std::sync::Mutex<HashMap<u32, usize>>>,
    uid: u32,
}

impl Slot {
    fn take(
        counts: &Arc<std::sync::Mutex<HashMap<u32, usize>>>,
        uid: u32,
        cap: usize,
    ) -> Option<Slot> {
        let mut c = counts.lock().expect("not poisoned");
        let n = c.entry(uid).or_default();
        if uid != 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: counts.clone(),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().expect("not poisoned");
        if let Some(n) = c.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.uid);
            }
        }
    }
}

async fn too_many(mut stream: UnixStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"message":"ds01-gate: you have too many connections open to Docker (gate_max_connections); close some (rule connections)"}"#;
    let resp = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(HEADER_DEADLINE, stream.write_all(resp.as_bytes())).await;
}

/// A log line at most every ten seconds, with how many were held back.
#[derive(Default)]
struct LogLimit {
    last: Option<std::time::Instant>,
    held: u64,
}

impl LogLimit {
    fn log(&mut self, line: &str) {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t).as_secs() < 10)
        {
            self.held += 1;
            return;
        }
        if self.held > 0 {
            eprintln!("ds01-gate: {line} ({} more like it not shown)", self.held);
        } else {
            eprintln!("ds01-gate: {line}");
        }
        self.last = Some(now);
        self.held = 0;
    }
}

/// Lifts the open-files limit to its hard limit: each client connection
/// costs two (the client's and dockerd's), and systemd's default soft
/// limit is 1024.
fn raise_open_files() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// The socket is for the `docker-users` group (or root alone, where there
/// is no such group).
fn permit(listen: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match identity::group_id("docker-users") {
        Some(gid) => {
            std::os::unix::fs::chown(listen, None, Some(gid))
                .map_err(|e| format!("cannot hand {listen:?} to docker-users: {e}"))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(listen, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{listen:?}: {e}"))
}

fn caller_of(cfg: &Config, uid: u32) -> Caller {
    let name = SystemAccounts
        .user_name(uid)
        .unwrap_or_else(|| format!("uid{uid}"));
    let home = identity::account(&name).map_or_else(
        || PathBuf::from("/nonexistent"),
        |(_, _, h)| PathBuf::from(h),
    );
    let admin = uid == 0
        || cfg
            .policy
            .is_admin(&cfg.admin_group, Some(&name), &SystemAccounts);
    Caller {
        uid,
        name,
        home,
        admin,
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn refusal(status: StatusCode, msg: &str) -> Response<Body> {
    let body = serde_json::json!({ "message": msg }).to_string();
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(full(body))
        .expect("a valid response")
}

fn refused(r: &Denial) -> Response<Body> {
    refusal(StatusCode::FORBIDDEN, &r.to_string())
}

/// The most a judged body may be: creates are a few KiB.
const BODY_CAP: usize = 1 << 20;

async fn handle(req: Request<Incoming>, gate: &Gate, conn: &Conn) -> Response<Body> {
    let caller = &conn.caller;
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let types = req
        .headers()
        .get_all(hyper::header::CONTENT_TYPE)
        .iter()
        .map(|v| v.as_bytes());
    let route = match gate::route(&method, &path)
        .and_then(|r| gate::judge_content_types(types).map(|()| r))
    {
        Ok(r) => r,
        // An admin reaches all of Docker, as through its own socket.
        Err(_) if caller.admin => return forward(req.map(|b| b.boxed()), gate, conn).await,
        Err(r) => {
            drain(req).await;
            return refused(&r);
        }
    };
    let mut req = Some(req);
    match judge(&mut req, route, gate, conn).await {
        Ok(req) => forward(req, gate, conn).await,
        Err(resp) => {
            if let Some(req) = req {
                drain(req).await;
            }
            resp
        }
    }
}

/// The request, for the one step of [`judge`] that consumes it.
fn take(req: &mut Option<Request<Incoming>>) -> Request<Incoming> {
    req.take().expect("a request is consumed once")
}

fn peek(req: &Option<Request<Incoming>>) -> &Request<Incoming> {
    req.as_ref().expect("not yet consumed")
}

/// The request to forward, judged and rewritten for its route, or the
/// answer that refuses it.
async fn judge(
    req: &mut Option<Request<Incoming>>,
    route: Route,
    gate: &Gate,
    conn: &Conn,
) -> Result<Request<Body>, Response<Body>> {
    let caller = &conn.caller;
    let plain = |req: Request<Incoming>| req.map(|b| b.boxed());
    match route {
        Route::Plain => Ok(plain(take(req))),
        Route::Create => {
            let (parts, body) = read_body(take(req)).await?;
            let place = if caller.admin {
                None
            } else {
                Some(place_of(gate, conn).await?)
            };
            let (new, reach) = gate::create(&body, caller, &gate.rules, place.as_ref())
                .map_err(|r| refused(&r))?;
            let mut ids = HashMap::new();
            for c in &reach.containers {
                if let Some(k) = own_container(gate, conn, c, true).await? {
                    ids.insert(c.clone(), k.id);
                }
            }
            for v in &reach.volumes {
                own_volume(gate, conn, v).await?;
            }
            for n in &reach.networks {
                own_network(gate, conn, n).await?;
            }
            let new = if ids.is_empty() {
                new
            } else {
                gate::name_reach(&new, &ids)
            };
            Ok(with_body(parts, new))
        }
        Route::List if gate.rules.list_all || caller.admin => Ok(plain(take(req))),
        Route::List | Route::Events | Route::Prune if !caller.admin => {
            let q = gate::own_filter(peek(req).uri().query(), caller).map_err(|r| refused(&r))?;
            with_query(plain(take(req)), &q)
        }
        Route::List | Route::Events | Route::Prune => Ok(plain(take(req))),
        Route::Container(id, op) => {
            if let Some(k) = own_container(gate, conn, &id, false).await? {
                // dockerd mounts a container's bind sources again, by their
                // path, to copy in or out: a path swapped for a link since
                // would be followed, as root.
                if op == Op::Other("archive".into()) && k.binds {
                    return Err(refused(&Denial {
                        rule: "archive-bind",
                        reason: "docker cp to or from a container with a bind mount is refused (dockerd would mount its source again by path); copy through the bound directory itself".into(),
                    }));
                }
                // The full id, so a name or prefix cannot mean another
                // container by the time dockerd acts.
                let path = peek(req).uri().path().replacen(
                    &format!("/containers/{id}"),
                    &format!("/containers/{}", k.id),
                    1,
                );
                let query = peek(req).uri().query().map(String::from);
                let uri = match query {
                    Some(q) => format!("{path}?{q}"),
                    None => path,
                };
                if let Some(r) = req.as_mut() {
                    *r.uri_mut() = uri.parse().map_err(|_| {
                        refusal(
                            StatusCode::BAD_REQUEST,
                            "ds01-gate: the path cannot be read (rule parse)",
                        )
                    })?;
                }
            }
            match op {
                Op::Start => {
                    let (parts, body) = read_body(take(req)).await?;
                    if !caller.admin && !body.iter().all(u8::is_ascii_whitespace) {
                        return Err(refused(&Denial {
                            rule: "start-body",
                            reason: "a start with a HostConfig (an old API's form) is refused; create the container with it".into(),
                        }));
                    }
                    Ok(with_body(parts, body.to_vec()))
                }
                Op::Update => {
                    let limits = gate
                        .cfg
                        .policy
                        .effective(Some(&caller.name), &SystemAccounts);
                    body_judged(take(req), caller, "update", |v| {
                        gate::body::judge_update(v)?;
                        gate::place::update(v, &caller.name, &limits)
                    })
                    .await
                }
                Op::Exec => body_judged(take(req), caller, "exec", gate::body::judge_exec).await,
                Op::Other(_) => Ok(plain(take(req))),
            }
        }
        Route::Exec(id) => {
            if let Some(container) = exec_container(gate, conn, &id).await.map_err(bad_gateway)? {
                own_container(gate, conn, &container, false).await?;
            }
            Ok(plain(take(req)))
        }
        Route::Build => {
            let pairs = gate::query::parse(peek(req).uri().query()).map_err(|r| refused(&r))?;
            if caller.admin {
                return Ok(plain(take(req)));
            }
            // A build's steps run in the caller's parent, within their share.
            let parent = place_of(gate, conn).await?.parent;
            let (q, tags) =
                gate::query::judge_build(&pairs, caller, &parent).map_err(|r| refused(&r))?;
            for t in &tags {
                own_tag(gate, conn, t, false).await?;
            }
            with_query(plain(take(req)), &q)
        }
        Route::Pull => {
            let pairs = gate::query::parse(peek(req).uri().query()).map_err(|r| refused(&r))?;
            let name = gate::query::judge_pull(&pairs).map_err(|r| refused(&r))?;
            // A pull refreshes a name from its registry; one a user built
            // is theirs alone to replace.
            own_tag(gate, conn, &name, true).await?;
            Ok(plain(take(req)))
        }
        Route::Tag => {
            let pairs = gate::query::parse(peek(req).uri().query()).map_err(|r| refused(&r))?;
            let name = gate::query::judge_tag(&pairs).map_err(|r| refused(&r))?;
            own_tag(gate, conn, &name, false).await?;
            Ok(plain(take(req)))
        }
        Route::Commit => {
            let pairs = gate::query::parse(peek(req).uri().query()).map_err(|r| refused(&r))?;
            let (container, name) = gate::query::judge_commit(&pairs).map_err(|r| refused(&r))?;
            let known = own_container(gate, conn, &container, true).await?;
            if let Some(n) = name {
                own_tag(gate, conn, &n, false).await?;
            }
            let (parts, body) = read_body(take(req)).await?;
            let new = gate::commit_config(&body, caller).map_err(|r| refused(&r))?;
            let req = with_body(parts, new);
            match known {
                // The full id, as for every other act on a container.
                Some(k) => {
                    let pairs: Vec<(String, String)> = pairs
                        .into_iter()
                        .map(|(key, v)| {
                            if key == "container" {
                                (key, k.id.clone())
                            } else {
                                (key, v)
                            }
                        })
                        .collect();
                    with_query(req, &gate::query::join(&pairs))
                }
                None => Ok(req),
            }
        }
        Route::ImageRemove(name) => {
            own_tag(gate, conn, &name, false).await?;
            Ok(plain(take(req)))
        }
        Route::VolumeCreate => {
            let (parts, body) = read_body(take(req)).await?;
            let new = gate::volume_create(&body, caller).map_err(|r| refused(&r))?;
            Ok(with_body(parts, new))
        }
        Route::NetworkCreate => {
            let (parts, body) = read_body(take(req)).await?;
            let new = gate::network_create(&body, caller).map_err(|r| refused(&r))?;
            Ok(with_body(parts, new))
        }
        Route::NetworkConnect(net) => {
            let (parts, body) = read_body(take(req)).await?;
            let mut body = body.to_vec();
            if let Some(c) = gate::judged(&body, caller, "network", gate::body::judge_connect)
                .map_err(|r| refused(&r))?
            {
                own_network(gate, conn, &net).await?;
                if let Some(k) = own_container(gate, conn, &c, true).await? {
                    let mut v: serde_json::Value =
                        serde_json::from_slice(&body).expect("judged above");
                    v["Container"] = serde_json::Value::String(k.id);
                    body = serde_json::to_vec(&v).expect("JSON serialises");
                }
            }
            Ok(with_body(parts, body))
        }
        Route::VolumeRemove(name) => {
            own_object(gate, conn, &format!("/volumes/{name}"), "volume", &name).await?;
            Ok(plain(take(req)))
        }
        Route::NetworkRemove(id) => {
            own_object(gate, conn, &format!("/networks/{id}"), "network", &id).await?;
            Ok(plain(take(req)))
        }
    }
}

/// Reads and drops what a refused request sends, so that its client,
/// still writing, reads the refusal instead of a broken pipe; within
/// limits, so a refusal cannot be made to cost much.
async fn drain(req: Request<Incoming>) {
    let body = http_body_util::Limited::new(req.into_body(), 16 << 20);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), body.collect()).await;
}

fn bad_gateway(e: String) -> Response<Body> {
    refusal(StatusCode::BAD_GATEWAY, &e)
}

fn with_query(mut req: Request<Body>, q: &str) -> Result<Request<Body>, Response<Body>> {
    let uri = format!("{}?{q}", req.uri().path());
    match uri.parse() {
        Ok(u) => {
            *req.uri_mut() = u;
            Ok(req)
        }
        Err(_) => Err(refusal(
            StatusCode::BAD_REQUEST,
            "ds01-gate: the query cannot be read (rule parse)",
        )),
    }
}

/// A body judged and passed on unchanged.
/// The caller's parent (by Docker's cgroup driver) and limits.
async fn place_of(gate: &Gate, conn: &Conn) -> Result<gate::place::Place, Response<Body>> {
    let systemd = get_json(gate, conn, "/info")
        .await
        .map_err(bad_gateway)?
        .and_then(|i| {
            i.get("CgroupDriver")
                .and_then(|d| d.as_str())
                .map(String::from)
        })
        .is_some_and(|d| d == "systemd");
    let driver = if systemd {
        share::Driver::Systemd
    } else {
        share::Driver::Cgroupfs
    };
    let user = &conn.caller.name;
    Ok(gate::place::Place {
        parent: share::parent_in(&gate.cfg.policy, &SystemAccounts, driver, user),
        limits: gate.cfg.policy.effective(Some(user), &SystemAccounts),
    })
}

async fn body_judged<T>(
    req: Request<Incoming>,
    caller: &Caller,
    what: &str,
    judge: impl Fn(&serde_json::Value) -> Result<T, Denial>,
) -> Result<Request<Body>, Response<Body>> {
    let (parts, body) = read_body(req).await?;
    gate::judged(&body, caller, what, judge).map_err(|r| refused(&r))?;
    Ok(with_body(parts, body.to_vec()))
}

/// Whether `id` is the caller's container; what the gate knows of it
/// (`None` for an admin, who is not checked, or one Docker does not know).
/// One Docker does not know is Docker's to report for a request on it
/// (`named` false), but is refused where another request names it (`named`
/// true: it may come to exist).
async fn own_container(
    gate: &Gate,
    conn: &Conn,
    id: &str,
    named: bool,
) -> Result<Option<Known>, Response<Body>> {
    if conn.caller.admin {
        return Ok(None);
    }
    match container(gate, conn, id).await.map_err(bad_gateway)? {
        Some(k) => {
            gate::may_act(&conn.caller, k.owner.as_deref()).map_err(|r| refused(&r))?;
            Ok(Some(k))
        }
        None if named => Err(refused(&Denial {
            rule: "ownership",
            reason: format!("there is no container {id} of yours"),
        })),
        None => Ok(None),
    }
}

/// A named volume a create mounts: the caller's, or made now in their name
/// (dockerd would make it with no owner).
async fn own_volume(gate: &Gate, conn: &Conn, name: &str) -> Result<(), Response<Body>> {
    let path = format!("/volumes/{name}");
    if label_of(gate, conn, &path, "/Labels")
        .await
        .map_err(bad_gateway)?
        .is_some()
    {
        return own_object(gate, conn, &path, "volume", name).await;
    }
    let body = gate::volume_create(
        serde_json::json!({ "Name": name }).to_string().as_bytes(),
        &conn.caller,
    )
    .map_err(|r| refused(&r))?;
    let req = Request::post("/volumes/create")
        .header("Host", "docker")
        .header("Content-Type", "application/json")
        .body(full(body))
        .map_err(|e| bad_gateway(e.to_string()))?;
    let resp = send(gate, conn, req).await.map_err(bad_gateway)?;
    if !resp.status().is_success() {
        return Err(bad_gateway(format!(
            "ds01-gate: Docker answered {} making volume {name}",
            resp.status()
        )));
    }
    Ok(())
}

/// A network a container joins: not another user's (Docker's own and the
/// admins' unlabelled ones are shared).
async fn own_network(gate: &Gate, conn: &Conn, name: &str) -> Result<(), Response<Body>> {
    let path = format!("/networks/{name}");
    let what = format!("network {name}");
    own_labelled(gate, conn, &path, "/Labels", true, "network-owner", &what).await
}

/// Whether the caller may write the image name `name`: it is new, or
/// theirs (or, where `unowned_ok`, no one's, such as a pulled image).
async fn own_tag(
    gate: &Gate,
    conn: &Conn,
    name: &str,
    unowned_ok: bool,
) -> Result<(), Response<Body>> {
    let path = format!("/images/{name}/json");
    let what = format!("the image {name}");
    own_labelled(
        gate,
        conn,
        &path,
        "/Config/Labels",
        unowned_ok,
        "image-owner",
        &what,
    )
    .await
}

/// Whether a volume or network is the caller's (stamped with their name).
async fn own_object(
    gate: &Gate,
    conn: &Conn,
    path: &str,
    kind: &str,
    name: &str,
) -> Result<(), Response<Body>> {
    let rule = if kind == "volume" {
        "volume-owner"
    } else {
        "network-owner"
    };
    let what = format!("{kind} {name}");
    own_labelled(gate, conn, path, "/Labels", false, rule, &what).await
}

/// Whether what `path` returns is the caller's by the `ds01.user` label at
/// `labels`: Docker does not know it, or it is theirs (or, where
/// `unowned_ok`, no one's). `what` names it in the refusal.
async fn own_labelled(
    gate: &Gate,
    conn: &Conn,
    path: &str,
    labels: &str,
    unowned_ok: bool,
    rule: &'static str,
    what: &str,
) -> Result<(), Response<Body>> {
    if conn.caller.admin {
        return Ok(());
    }
    match label_of(gate, conn, path, labels)
        .await
        .map_err(bad_gateway)?
    {
        None => Ok(()),
        Some(Some(o)) if o == conn.caller.name => Ok(()),
        Some(None) if unowned_ok => Ok(()),
        Some(owner) => Err(refused(&Denial {
            rule,
            reason: format!(
                "{what} is {}, not yours",
                owner.map_or_else(
                    || "shared (no ds01.user label)".to_string(),
                    |o| format!("{o}'s")
                )
            ),
        })),
    }
}

/// The whole request body, up to [`BODY_CAP`]; an unreadable or larger
/// one is refused.
async fn read_body(
    req: Request<Incoming>,
) -> Result<(hyper::http::request::Parts, Bytes), Response<Body>> {
    let (parts, body) = req.into_parts();
    http_body_util::Limited::new(body, BODY_CAP)
        .collect()
        .await
        .map(|c| (parts, c.to_bytes()))
        .map_err(|e| {
            refusal(
                StatusCode::BAD_REQUEST,
                &format!(
                    "ds01-gate: cannot read the request body: {e} (at most {BODY_CAP} bytes) (rule parse)"
                ),
            )
        })
}

fn with_body(mut parts: hyper::http::request::Parts, body: Vec<u8>) -> Request<Body> {
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(hyper::header::CONTENT_LENGTH, body.len().into());
    Request::from_parts(parts, full(body))
}

async fn connect(gate: &Gate) -> Result<SendRequest<Body>, String> {
    let stream = UnixStream::connect(&gate.docker).await.map_err(|e| {
        format!(
            "ds01-gate: cannot reach Docker at {}: {e}",
            gate.docker.display()
        )
    })?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("ds01-gate: Docker: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// Sends a plain request on the connection's kept dockerd connection,
/// opening one when there is none or it closed.
async fn send(gate: &Gate, conn: &Conn, req: Request<Body>) -> Result<Response<Incoming>, String> {
    let mut kept = conn.upstream.lock().await;
    if kept.as_ref().is_none_or(|s| s.is_closed()) {
        *kept = Some(connect(gate).await?);
    }
    let sender = kept.as_mut().expect("just made");
    if sender.ready().await.is_err() {
        *sender = connect(gate).await?;
    }
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("ds01-gate: Docker: {e}"))
}

/// Forwards one request to dockerd; an upgrade (attach, exec, BuildKit's
/// session) gets its own connection and becomes a two-way byte pipe.
async fn forward(mut req: Request<Body>, gate: &Gate, conn: &Conn) -> Response<Body> {
    if !req.headers().contains_key(hyper::header::UPGRADE) {
        return match send(gate, conn, req).await {
            Ok(resp) => resp.map(|b| b.boxed()),
            Err(e) => refusal(StatusCode::BAD_GATEWAY, &e),
        };
    }
    let client_side = hyper::upgrade::on(&mut req);
    let mut sender = match connect(gate).await {
        Ok(s) => s,
        Err(e) => return refusal(StatusCode::BAD_GATEWAY, &e),
    };
    let mut resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return refusal(StatusCode::BAD_GATEWAY, &format!("ds01-gate: Docker: {e}")),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(c), Ok(u)) = (client_side.await, upstream_side.await) {
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(u)).await;
            }
        });
    }
    resp.map(|b| b.boxed())
}

/// A GET on dockerd: `None` for 404, the JSON otherwise.
async fn get_json(
    gate: &Gate,
    conn: &Conn,
    path: &str,
) -> Result<Option<serde_json::Value>, String> {
    let req = Request::get(path)
        .header("Host", "docker")
        .body(full(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = send(gate, conn, req).await?;
    if resp.status() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    // Anything but a found object is no answer to judge by (a bad name is
    // not "no owner").
    if !resp.status().is_success() {
        return Err(format!(
            "ds01-gate: Docker answered {} for {path}; refused (rule parse)",
            resp.status()
        ));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("ds01-gate: Docker: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).map(Some).map_err(|e| {
        format!("ds01-gate: Docker's answer for {path} cannot be read: {e} (rule parse)")
    })
}

/// The `ds01.user` label at `labels` in what `path` returns: `None` when
/// Docker does not know the object, `Some(None)` when it has no owner.
async fn label_of(
    gate: &Gate,
    conn: &Conn,
    path: &str,
    labels: &str,
) -> Result<Option<Option<String>>, String> {
    Ok(get_json(gate, conn, path).await?.map(|v| {
        v.pointer(labels)
            .and_then(|l| l.get(gate::USER_LABEL))
            .and_then(serde_json::Value::as_str)
            .map(String::from)
    }))
}

/// What the gate knows of a container: its full id (what dockerd is then
/// told, so a name or id prefix cannot come to mean another container
/// between the check and the act), its owner, and whether it has a bind
/// mount (whose source dockerd mounts again for `cp`, by path).
#[derive(Clone)]
struct Known {
    id: String,
    owner: Option<String>,
    binds: bool,
}

/// A container, from Docker (cached by full id for this connection: ids
/// are never reused). The owner is the ds01 slice of its cgroup parent
/// (a build's steps: the gate sets it) before its `ds01.user` label
/// (which images carry), as ds01-runtime reads it.
async fn container(gate: &Gate, conn: &Conn, id: &str) -> Result<Option<Known>, String> {
    let full_id = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if full_id && let Some(k) = conn.owners.lock().expect("not poisoned").get(id) {
        return Ok(Some(k.clone()));
    }
    let path = format!("/containers/{}/json", gate::query::encode(id));
    let Some(v) = get_json(gate, conn, &path).await? else {
        return Ok(None);
    };
    let str_at = |p: &str| v.pointer(p).and_then(serde_json::Value::as_str);
    let Some(full) = str_at("/Id").filter(|i| i.len() == 64) else {
        return Err(format!(
            "ds01-gate: Docker's answer for {path} has no id (rule parse)"
        ));
    };
    let owner = str_at("/HostConfig/CgroupParent")
        .and_then(ds01_core::share::parent_user)
        .or_else(|| str_at(&format!("/Config/Labels/{}", gate::USER_LABEL)).map(String::from));
    let binds = v
        .get("Mounts")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .any(|m| m.get("Type").and_then(serde_json::Value::as_str) == Some("bind"));
    let known = Known {
        id: full.to_string(),
        owner,
        binds,
    };
    conn.owners
        .lock()
        .expect("not poisoned")
        .insert(known.id.clone(), known.clone());
    Ok(Some(known))
}

/// The container an exec instance runs in.
async fn exec_container(gate: &Gate, conn: &Conn, id: &str) -> Result<Option<String>, String> {
    Ok(get_json(gate, conn, &format!("/exec/{id}/json"))
        .await?
        .and_then(|v| {
            v.get("ContainerID")
                .and_then(serde_json::Value::as_str)
                .map(String::from)
        }))
}
