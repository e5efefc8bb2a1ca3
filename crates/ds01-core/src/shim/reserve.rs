//! The first step of a GPU create: devices reserved in the ledger, under
//! its lock, waiting in the GPU queue where the request may. What comes
//! back is a [`Reservation`]: until it is committed, dropping it gives the
//! devices back, so no error path after the allocation can forget to.

use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::{Ctx, ShimError, Want, argv::Argv, release, who};
use crate::allocate::{self, Refusal};
use crate::audit::{self, Event};
use crate::idle;
use crate::inventory::DeviceNode;
use crate::inventory::Inventory;
use crate::ledger::{Pending, Record, Records};
use crate::queue;
use crate::time::timestamp;

/// How often a waiting create tries again.
const QUEUE_POLL: Duration = Duration::from_millis(200);

/// Devices held for one create. It owns the create's marker (handed to
/// runc, so the allocation counts as a create in flight while any process
/// of it lives) and the record. Dropped before [`Reservation::commit`],
/// it releases the record, then the marker goes.
pub struct Reservation<'c> {
    ctx: &'c Ctx<'c>,
    pub record: Record,
    /// The allocated units' own device nodes.
    pub nodes: Vec<DeviceNode>,
    /// Why a drop releases: set by [`Reservation::release`].
    why: &'static str,
    committed: bool,
    marker: Pending,
}

impl Reservation<'_> {
    /// The marker's descriptor, for runc to inherit.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.marker.fd()
    }

    /// The container lives on with its devices: the create is over.
    pub fn commit(mut self) {
        self.committed = true;
    }

    /// The devices go back, for `why` (logged and audited).
    pub fn release(mut self, why: &'static str) {
        self.failing(why);
    }

    /// Names the reason a later drop releases for.
    pub(super) fn failing(&mut self, why: &'static str) {
        self.why = why;
    }

    pub(super) fn ctx(&self) -> &Ctx<'_> {
        self.ctx
    }
    /// After a successful `runc create`: notes the container's init
    /// process, so that staleness is judged by it. An error means the
    /// allocation is gone (reclaimed while runc ran): the container must
    /// not start.
    pub fn note_init_pid(&self, pid_file: Option<&Path>) -> Result<(), String> {
        let (ctx, record) = (self.ctx, &self.record);
        // Without a pid file (runtime-tools, a hand-run create), runc's own
        // state names the init: a record with its pid is judged by it, not
        // by a guess at why runc no longer knows the container.
        let pid = pid_file
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<u32>().ok())
            .or_else(|| {
                ctx.host
                    .runc_init(&record.root, &record.container_id)
                    .map(|(pid, _)| pid)
            });
        // Without a pid (or its start time, to tell it from a reused one) the
        // record stays pending: runc's own state then vouches for it.
        let start = pid.and_then(|p| ctx.host.process_start(p));
        if pid.is_none() || start.is_none() {
            ctx.log(
                "warn",
                &format!(
                    "container {}: no live init pid to record",
                    record.container_id
                ),
            );
        }
        let ledger = ctx.ledger();
        // The create still holds its marker, so no one reclaims the record
        // meanwhile: a read without the lock tells whether it is still there.
        let found = ledger.read().map(|rs| {
            rs.records
                .iter()
                .any(|r| r.alloc_id == record.alloc_id)
                .then_some(())
        });
        let found = match (found, pid.zip(start)) {
            (Ok(Some(())), Some((pid, start))) => ledger
                .note_pid(&record.alloc_id, pid, start)
                .map(|()| Some(())),
            (found, _) => found,
        };
        match found {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(format!(
                "ds01: the allocation of {} to container {} was lost while runc created it; \
                 the container was removed, start it again",
                record.devices.join(","),
                record.container_id
            )),
            Err(e) => Err(format!(
                "ds01: container {}: cannot record its init process: {e}",
                record.container_id
            )),
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let alloc = self.record.alloc_id.clone();
            release(self.ctx, self.why, &self.record.container_id, |r| {
                r.alloc_id == alloc
            });
        }
        // The marker goes after the release (a field drops after this).
    }
}

/// Why a create got no device: none free now (it may wait), or not for
/// waiting (a limit, a profile the host lacks).
enum Unserved {
    Full(String),
    NotFull(Refusal),
}
use Unserved::{Full, NotFull};

/// Reserves devices for `want` under the ledger lock, reclaiming stale
/// records where they stand in the way, and waiting in the GPU queue for
/// up to `want.wait` while the server is full.
pub fn reserve<'c>(
    ctx: &'c Ctx<'c>,
    argv: &Argv,
    bundle: &Path,
    want: &Want,
    inv: &Inventory,
) -> Result<Reservation<'c>, ShimError> {
    let Want { owner, req, wait } = want;
    let wait = *wait;
    let id = argv.id.clone().unwrap_or_default();
    if owner.user.is_none() && ctx.cfg.refuse_unknown_owner {
        return Err(ctx.refuse(
            owner,
            &id,
            Refusal(
                "this container's owner is unknown, and this server gives GPUs only to known owners; \
                 start it with --label ds01.user=<your user name>"
                    .into(),
            ),
        ));
    }
    let limits = ctx
        .cfg
        .policy
        .effective(owner.user.as_deref(), ctx.accounts);
    let now = ctx.host.now();
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let shim_pid = std::process::id();
    let alloc_id = format!("{nanos:x}-{shim_pid}");
    let ledger = ctx.ledger();
    // The marker is held before the record exists, so no reclaimer ever
    // sees the record without it. Every return below drops it.
    let marker = ledger.begin(&alloc_id)?;
    let root = argv.root_or_default();
    let pending_dir = ledger.pending_dir();
    let state_dir = &ctx.cfg.state_dir;
    let me = queue::Entry::new(&alloc_id, &id, owner.user.as_deref(), idle::ms(now), req);
    let waiting_since = Instant::now();
    let mut waiter: Option<queue::Waiter> = None;
    let choose = |rs: &Records| {
        let used = allocate::usage(rs, owner.user.as_deref());
        allocate::choose(inv, rs, req, &who(owner), &limits, &used)
    };
    loop {
        let updated = ledger.update(|rs| {
            // An earlier run of this very container whose release was
            // missed (its delete killed between runc's and the hook) goes
            // now: two records of one container would confuse `exec` and
            // the reaper.
            let mut reclaimed = rs.reclaim_where(ctx.host, &pending_dir, |r| {
                r.container_id == id && r.root == root
            });
            // Stale records are looked for only when they stand in the
            // way: checking every record's processes on each create would
            // be most of the time the lock is held.
            if choose(rs).is_err() {
                reclaimed.extend(rs.reclaim(ctx.host, &pending_dir));
            }
            // Waiters ahead that could take a device now are served first.
            let waiters = queue::live(state_dir, ctx.host);
            let position = queue::position(&waiters, &me, rs);
            let ahead = queue::ahead_that_fit(&waiters, &me, rs, inv);
            let chosen = if ahead > 0 {
                Err(Full(format!(
                    "the devices free now are promised to {ahead} container(s) ahead of it in the GPU queue"
                )))
            } else {
                choose(rs).map_err(|refusal| {
                    // Only a request that would fit on an idle server waits:
                    // a limit reached is not cured by waiting.
                    let idle_server = Records::default();
                    let used = allocate::usage(rs, owner.user.as_deref());
                    if allocate::choose(inv, &idle_server, req, &who(owner), &limits, &used).is_ok()
                    {
                        Full(refusal.0)
                    } else {
                        NotFull(refusal)
                    }
                })
            };
            // The root first: a record is pushed only where it can stay.
            if chosen.is_ok() && !rs.records.iter().any(|r| r.root == root) {
                ledger.remember_root(&root)?;
            }
            let result = chosen.map(|units| {
                let record = Record {
                    alloc_id: alloc_id.clone(),
                    container_id: id.clone(),
                    bundle: bundle.to_path_buf(),
                    root: root.clone(),
                    devices: units.iter().map(|u| u.uuid.to_string()).collect(),
                    kind: units[0].kind,
                    profile: units[0].profile().to_string(),
                    gpueq: units.iter().map(|u| u.gpueq()).sum(),
                    user: owner.user.clone(),
                    identity_source: owner.source,
                    since: timestamp(ctx.host.now()),
                    boot_id: ctx.host.boot_id(),
                    pid: None,
                    pid_start: None,
                    shim_pid,
                    shim_start: ctx.host.process_start(shim_pid),
                };
                rs.records.push(record.clone());
                // Under the lock, before the write: a rebuild of a ledger
                // lost meanwhile finds the record in the held marker.
                marker.describe(&record);
                let nodes: Vec<DeviceNode> = units.iter().flat_map(|u| u.nodes()).collect();
                (record, nodes)
            });
            Ok((result, reclaimed, position))
        });
        let (result, reclaimed, position) = match updated.and_then(|r| r) {
            Ok(u) => u,
            Err(e) => {
                // The write failed: the marker vouches for nothing.
                marker.describe_none();
                return Err(e.into());
            }
        };
        // Their markers went with the write that took them out.
        audit::note_reclaimed(&ctx.cfg.log, &ctx.cfg.audit_log, &reclaimed);
        let waited = waiting_since.elapsed();
        match result {
            Ok((record, nodes)) => {
                drop(waiter);
                if waited >= QUEUE_POLL {
                    let mut e = Event::of(
                        audit::EventKind::Queue,
                        &record,
                        Some(format!(
                            "waited {} in the GPU queue (number {position})",
                            idle::text(waited)
                        )),
                    );
                    e.seconds = Some(waited.as_secs());
                    ctx.audit(&e);
                }
                return Ok(Reservation {
                    ctx,
                    record,
                    nodes,
                    why: "create failed",
                    committed: false,
                    marker,
                });
            }
            Err(Full(why)) if waited < wait => {
                // Wait without the lock: in the queue, so creates behind
                // this one yield to it, and out of it the moment this
                // process dies.
                if waiter.is_none() {
                    match queue::join(state_dir, &me) {
                        Ok(w) => waiter = Some(w),
                        Err(e) => ctx.log(
                            "warn",
                            &format!("container {id}: cannot join the GPU queue: {e}"),
                        ),
                    }
                    ctx.log(
                        "info",
                        &format!(
                            "container {id} waits (number {position} in the GPU queue, up to {}): {why}",
                            idle::text(wait)
                        ),
                    );
                }
                std::thread::sleep(QUEUE_POLL.min(wait - waited));
            }
            Err(Full(why)) if !wait.is_zero() => {
                let refusal = Refusal(format!(
                    "no {} came free within its wait of {} (it was number {position} in the GPU queue; see 'ds01 queue'): {why}",
                    me.wants().trim_start_matches("a "),
                    idle::text(wait),
                ));
                return Err(ctx.refuse(owner, &id, refusal));
            }
            Err(Full(why)) => {
                let hint = if position > 1 {
                    "; wait for one with DS01_GPU_WAIT=30m, see 'ds01 queue'"
                } else {
                    "; wait for one with DS01_GPU_WAIT=30m"
                };
                return Err(ctx.refuse(owner, &id, Refusal(format!("{why}{hint}"))));
            }
            Err(NotFull(refusal)) => return Err(ctx.refuse(owner, &id, refusal)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DriverInjection};
    use crate::driver::Found;
    use crate::identity::{Owner, Source};
    use crate::ledger::Ledger;
    use crate::request::{Profile, Request};
    use crate::shim::patch;
    use crate::testing::{FakeHost, Nobody, sim_inventory as inv};

    fn want() -> Want {
        Want {
            owner: Owner {
                user: Some("alice".into()),
                source: Source::DockerLabel,
            },
            req: Request {
                count: 1,
                profile: Profile::AnyMig,
            },
            wait: Duration::ZERO,
        }
    }

    fn argv(id: &str) -> Argv {
        Argv {
            command: Some("create".into()),
            id: Some(id.into()),
            ..Argv::default()
        }
    }

    /// Nothing held, and no create's marker left.
    fn assert_clean(cfg: &Config) {
        let ledger = Ledger::new(&cfg.state_dir);
        assert!(ledger.read().unwrap().records.is_empty());
        let markers: Vec<_> = std::fs::read_dir(ledger.pending_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(markers.is_empty(), "{markers:?}");
    }

    #[test]
    fn a_reservation_not_committed_leaves_nothing_on_any_path() {
        let dir = tempfile::tempdir().unwrap();
        // The simulated inventory: with NVML's, the patch would make
        // missing device nodes under the host's /dev.
        let sim = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/sim/inventory.toml");
        let mut cfg = Config {
            state_dir: dir.path().join("state"),
            log: dir.path().join("runtime.log"),
            audit_log: dir.path().join("events.jsonl"),
            inventory: crate::config::InventorySource::File(sim),
            ..Config::default()
        };
        let host = FakeHost::default();
        let inv = inv();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("config.json"), "{}").unwrap();
        let found = || Found {
            hook: None,
            cdi: Err(crate::cdi::stale(&[])),
        };
        let reserved = |cfg: &Config, f: &dyn Fn(Reservation)| {
            let ctx = Ctx {
                cfg,
                host: &host,
                exe: Path::new("/usr/bin/ds01-runtime"),
                accounts: &Nobody,
            };
            let res = reserve(&ctx, &argv("c1"), &bundle, &want(), &inv).unwrap();
            assert_eq!(Ledger::new(&cfg.state_dir).read().unwrap().records.len(), 1);
            f(res);
        };
        // Dropped on its own (a `?` or a return after the allocation).
        reserved(&cfg, &|res| drop(res));
        assert_clean(&cfg);
        // runc failed; a foreground run ended.
        reserved(&cfg, &|res| res.release("create failed"));
        assert_clean(&cfg);
        // The spec cannot be written: the bundle is gone.
        reserved(&cfg, &|mut res| {
            let mut spec = serde_json::json!({});
            let gone = bundle.join("gone");
            let e = patch::patch(&mut res, &mut spec, &gone, &want().owner, &inv, &found());
            assert!(e.is_err());
        });
        assert_clean(&cfg);
        // No driver to give it.
        cfg.driver_injection = DriverInjection::Hook;
        reserved(&cfg, &|mut res| {
            let mut spec = serde_json::json!({});
            let e = patch::patch(&mut res, &mut spec, &bundle, &want().owner, &inv, &found());
            assert!(e.unwrap_err().to_string().contains("NVIDIA driver"));
        });
        assert_clean(&cfg);
        // The allocation lost while runc ran: the note fails, the drop is harmless.
        reserved(&cfg, &|res| {
            Ledger::new(&cfg.state_dir)
                .update(|rs| rs.take(|_| true))
                .unwrap();
            assert!(res.note_init_pid(None).unwrap_err().contains("was lost"));
        });
        assert_clean(&cfg);
        let releases = crate::audit::read(&cfg.audit_log)
            .unwrap()
            .into_iter()
            .filter_map(|e| {
                e.reason
                    .filter(|_| e.event == crate::audit::EventKind::Release)
            })
            .collect::<Vec<_>>();
        assert_eq!(
            releases,
            [
                "create failed",
                "create failed",
                "spec not written",
                "no driver"
            ]
        );
        // Committed, it stays, and only the marker goes.
        let ctx = Ctx {
            cfg: &cfg,
            host: &host,
            exe: Path::new("/usr/bin/ds01-runtime"),
            accounts: &Nobody,
        };
        let res = reserve(&ctx, &argv("c2"), &bundle, &want(), &inv).unwrap();
        res.commit();
        let ledger = Ledger::new(&cfg.state_dir);
        assert_eq!(ledger.read().unwrap().records.len(), 1);
        assert_eq!(std::fs::read_dir(ledger.pending_dir()).unwrap().count(), 0);
    }
}
