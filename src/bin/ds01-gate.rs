//! `ds01-gate --listen PATH --docker PATH`: the Docker API gate. It listens
//! where users reach Docker, learns each caller's uid from the kernel
//! (`SO_PEERCRED`), applies `ds01::gate`'s policy, and forwards what it
//! allows to the real dockerd socket, streams and hijacked connections
//! included. What it cannot read it refuses.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use ds01::gate::{self, Caller, Refusal, Rules, Target};
use ds01_core::config::Config;
use ds01_core::identity::{self, Accounts, SystemAccounts};
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
    owners: std::sync::Mutex<HashMap<String, Option<String>>>,
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
    let gate = Arc::new(Gate { docker, rules, cfg });
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
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ds01-gate: accept: {e}");
                continue;
            }
        };
        let Ok(cred) = stream.peer_cred() else {
            continue; // no credentials: no service (fail closed)
        };
        let conn = Arc::new(Conn {
            caller: caller_of(&gate.cfg, cred.uid()),
            upstream: tokio::sync::Mutex::new(None),
            owners: std::sync::Mutex::new(HashMap::new()),
        });
        let gate = gate.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (gate, conn) = (gate.clone(), conn.clone());
                async move { Ok::<_, Infallible>(handle(req, &gate, &conn).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// The socket is for the `docker-users` group (or root alone, where there
/// is no such group).
fn permit(listen: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let group = std::ffi::CString::new("docker-users").expect("no NUL");
    // SAFETY: getgrnam returns static storage or null; the gid is copied.
    let gid = unsafe {
        let g = libc::getgrnam(group.as_ptr());
        (!g.is_null()).then(|| (*g).gr_gid)
    };
    let mode = match gid {
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

fn refused(r: &Refusal) -> Response<Body> {
    refusal(StatusCode::FORBIDDEN, &r.to_string())
}

async fn handle(mut req: Request<Incoming>, gate: &Gate, conn: &Conn) -> Response<Body> {
    let caller = &conn.caller;
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    match gate::target(&method, &path) {
        Target::Create => {
            let (parts, body) = match read_body(req).await {
                Ok(x) => x,
                Err(r) => return r,
            };
            match gate::create(&body, caller, &gate.rules) {
                Ok(new) => forward(with_body(parts, new), gate, conn).await,
                Err(r) => refused(&r),
            }
        }
        Target::VolumeCreate => {
            let (parts, body) = match read_body(req).await {
                Ok(x) => x,
                Err(r) => return r,
            };
            match gate::volume_create(&body, caller) {
                Ok(new) => forward(with_body(parts, new), gate, conn).await,
                Err(r) => refused(&r),
            }
        }
        Target::List if !gate.rules.list_all && !caller.admin => {
            let q = gate::own_filter(req.uri().query(), caller);
            let uri = format!("{path}?{q}");
            match uri.parse() {
                Ok(u) => {
                    *req.uri_mut() = u;
                    forward(req.map(|b| b.boxed()), gate, conn).await
                }
                Err(_) => refusal(
                    StatusCode::BAD_REQUEST,
                    "ds01-gate: the list query cannot be read (rule parse)",
                ),
            }
        }
        Target::Container(id, _op) => {
            match owner_of(gate, conn, &format!("/containers/{id}/json")).await {
                Ok(Some(owner)) => match gate::may_act(caller, owner.as_deref()) {
                    Ok(()) => forward(req.map(|b| b.boxed()), gate, conn).await,
                    Err(r) => refused(&r),
                },
                // Docker does not know it: it says so itself.
                Ok(None) => forward(req.map(|b| b.boxed()), gate, conn).await,
                Err(e) => refusal(StatusCode::BAD_GATEWAY, &e),
            }
        }
        Target::Exec(id) => match exec_container(gate, conn, &id).await {
            Ok(Some(container)) => {
                match owner_of(gate, conn, &format!("/containers/{container}/json")).await {
                    Ok(Some(owner)) => match gate::may_act(caller, owner.as_deref()) {
                        Ok(()) => forward(req.map(|b| b.boxed()), gate, conn).await,
                        Err(r) => refused(&r),
                    },
                    Ok(None) => forward(req.map(|b| b.boxed()), gate, conn).await,
                    Err(e) => refusal(StatusCode::BAD_GATEWAY, &e),
                }
            }
            Ok(None) => forward(req.map(|b| b.boxed()), gate, conn).await,
            Err(e) => refusal(StatusCode::BAD_GATEWAY, &e),
        },
        Target::VolumeRemove(name) => {
            match label_of(gate, conn, &format!("/volumes/{name}"), "/Labels").await {
                // Volumes are shared; one stamped with another user's name is theirs.
                Ok(Some(Some(owner))) if owner != caller.name && !caller.admin => {
                    refused(&Refusal {
                        rule: "volume-owner",
                        reason: format!("volume {name} is {owner}'s, not yours"),
                    })
                }
                Ok(_) => forward(req.map(|b| b.boxed()), gate, conn).await,
                Err(e) => refusal(StatusCode::BAD_GATEWAY, &e),
            }
        }
        _ => forward(req.map(|b| b.boxed()), gate, conn).await,
    }
}

/// The whole request body (creates are small); an unreadable one is refused.
async fn read_body(
    req: Request<Incoming>,
) -> Result<(hyper::http::request::Parts, Bytes), Response<Body>> {
    let (parts, body) = req.into_parts();
    body.collect()
        .await
        .map(|c| (parts, c.to_bytes()))
        .map_err(|e| {
            refusal(
                StatusCode::BAD_REQUEST,
                &format!("ds01-gate: cannot read the request body: {e} (rule parse)"),
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

/// A container's owner, from Docker (cached by full id for this connection).
async fn owner_of(gate: &Gate, conn: &Conn, path: &str) -> Result<Option<Option<String>>, String> {
    let id = path
        .trim_start_matches("/containers/")
        .trim_end_matches("/json");
    let full_id = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if full_id && let Some(o) = conn.owners.lock().expect("not poisoned").get(id) {
        return Ok(Some(o.clone()));
    }
    let found = label_of(gate, conn, path, "/Config/Labels").await?;
    if full_id && let Some(o) = &found {
        conn.owners
            .lock()
            .expect("not poisoned")
            .insert(id.to_string(), o.clone());
    }
    Ok(found)
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
