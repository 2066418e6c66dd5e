//! A planned switchover between the two sites (issue 14): `agent dr
//! switchover` on GoldDR makes GoldDR the writable site and Gold its
//! standby cluster; `agent dr failback` on Gold (then the standby site)
//! does the same the other way. One command, run on the leader of the site
//! to become writable; it drives both sites through their Patroni REST
//! APIs (the other site's from Hiera, `dr::gold_patroni` on GoldDR,
//! `dr::golddr_patroni` on Gold, or `--peer`).
//!
//! The steps (nothing changes before the checks pass):
//! 1. checks: this site is a standby cluster (else: nothing to do), the
//!    other site's leader answers `/primary` (else: not a planned
//!    switchover, use `agent dr promote`), both run the same database
//!    (system identifier), and this site's replay is within
//!    `dr::switchover_max_lag_bytes` of the other's WAL;
//! 2. writes stop on the other site: `default_transaction_read_only: on`
//!    through its `/config` (Patroni reloads it), its client sessions
//!    terminated, then a `CHECKPOINT`;
//! 3. it is demoted: `PATCH /config {"standby_cluster": {host, port}}` of
//!    this site's leader (and the read-only setting removed in the same
//!    patch). Patroni 3 stops a primary that must become a standby leader
//!    with `pg_ctl stop -m immediate` (`demote('immediate-nolock')`): no
//!    shutdown checkpoint, so `pg_controldata`'s checkpoint location can
//!    be behind the last WAL the old primary wrote. The demotion token is
//!    therefore: system identifier, timeline, the checkpoint location
//!    (from `pg_control_checkpoint()`, after our `CHECKPOINT`, confirmed
//!    after the demotion) and the *end of its WAL*: the position the
//!    demoted server itself replays to once restarted as a standby (it
//!    replays all its local WAL), at least its insert position just
//!    before the demotion;
//! 4. this site replays past the end of that WAL (it streams it from the
//!    demoted server, a cascading standby now);
//! 5. this site is promoted (`PATCH /config {"standby_cluster": null}`, as
//!    `agent dr promote` does): its new timeline branches off at or after
//!    the end of the other site's WAL, which the other site therefore
//!    follows without pg_rewind;
//! 6. the epoch is recorded (with the token) and `dr_switchover` fired;
//!    then it waits until the other site streams from this one.
//!
//! A failure after step 2 puts the other site back as it was (read-only
//! setting removed; after step 3 its `standby_cluster` removed again) and
//! says so.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};

use crate::engine::state::StateDir;
use crate::failover::dr::{self, text, DrSettings, Epoch};
use crate::failover::hooks::Hooks;

/// Switchover (GoldDR becomes writable) or failback (Gold again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Switchover,
    Failback,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Switchover => "switchover",
            Kind::Failback => "failback",
        }
    }
}

/// What `agent dr switchover`/`failback` was asked.
#[derive(Debug, Clone)]
pub struct SwitchRequest {
    pub kind: Kind,
    pub reason: String,
    pub node: String,
    pub hooks: Hooks,
}

/// What a switchover did.
#[derive(Debug, Clone)]
pub enum Switched {
    Now {
        epoch: Box<Epoch>,
        /// From the first change to this site writable.
        seconds: f64,
        /// The demoted site's PostgreSQL (`host:port`).
        demoted: String,
        /// Whether the demoted site streams from this one (else why not).
        streaming: Result<(), String>,
    },
    /// This site is writable already: nothing done.
    Already(Option<u64>),
}

/// The other site's leader.
#[derive(Debug, Clone)]
struct Peer {
    api: String,
    host: String,
    port: u16,
}

impl Peer {
    fn pg(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `X/Y` → a 64-bit position.
pub fn parse_lsn(s: &str) -> Result<u64> {
    let (hi, lo) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| anyhow!("'{s}' is no LSN"))?;
    Ok((u64::from_str_radix(hi, 16)? << 32) | u64::from_str_radix(lo, 16)?)
}

fn is_standby(config: &Value) -> bool {
    config
        .get("standby_cluster")
        .is_some_and(|v| v.as_object().is_some_and(|m| !m.is_empty()))
}

/// `host:port` of the member of `api`'s cluster whose role is one of `roles`.
fn member(s: &DrSettings, api: &str, roles: &[&str]) -> Option<(String, u16)> {
    let (_, c) = s.get(&format!("{api}/cluster"), s.probe_timeout).ok()?;
    c["members"].as_array()?.iter().find_map(|m| {
        roles.contains(&m["role"].as_str()?).then(|| {
            (
                text(&m["host"]),
                text(&m["port"]).parse::<u16>().unwrap_or(5432),
            )
        })
    })
}

fn patch(s: &DrSettings, api: &str, body: &Value) -> Result<()> {
    let mut req = s
        .http(Duration::from_secs(5))
        .patch(&format!("{api}/config"));
    if let Some(a) = &s.auth {
        req = req.header("Authorization", a);
    }
    let mut resp = req
        .send_json(body)
        .with_context(|| format!("PATCH {api}/config"))?;
    if !resp.status().is_success() {
        let code = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        bail!(
            "PATCH {api}/config answered {code}: {}{}",
            resources::redact::redact(text.trim()),
            if code == 401 {
                " (both sites take patroni::rest_user/patroni::rest_password)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn wait<T>(what: &str, within: Duration, mut ok: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    loop {
        match ok() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!(" (last: {})", dr::redact(&e)),
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?}{last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Why this switchover must not start (nothing changed yet), if it must not.
fn check_lag(kind: Kind, scope: &str, lag: u64, max: u64) -> Result<()> {
    if lag > max {
        bail!(
            "refusing the {} of {scope}: this site's replay is {lag} bytes behind the other site's leader, \
             more than dr::switchover_max_lag_bytes {max}. Nothing was changed.\n\
             hint: wait until it has caught up (`agent dr status`), then run it again",
            kind.name()
        );
    }
    Ok(())
}

/// The switchover (or failback) of the module's doc, with `s` this site's
/// settings and `s.gold_patroni` the other site's Patroni REST APIs.
pub fn switchover(s: &DrSettings, state: &StateDir, req: &SwitchRequest) -> Result<Switched> {
    let kind = req.kind.name();
    let timeout = Duration::from_secs(5);
    let (code, config) = s
        .get(&format!("{}/config", s.api), timeout)
        .with_context(|| format!("this node's Patroni ({}/config) does not answer", s.api))?;
    if code != 200 {
        bail!(
            "GET {}/config answered {code}: is this cluster initialised?",
            s.api
        );
    }
    if !is_standby(&config) {
        return Ok(Switched::Already(dr::read_epoch(state).map(|e| e.epoch)));
    }
    let (my_host, my_port) = member(s, &s.api, &["standby_leader"]).ok_or_else(|| {
        anyhow!(
            "{}: no standby leader in this site's cluster ({}/cluster); nothing was changed",
            s.scope,
            s.api
        )
    })?;
    if s.gold_patroni.is_empty() {
        bail!(
            "refusing the {kind}: nothing names the other site's Patroni REST API. Nothing was changed.\n\
             hint: dr::gold_patroni (on GoldDR) or dr::golddr_patroni (on Gold) in Hiera, or --peer host:port"
        );
    }
    // 1. The other site's leader, answering.
    let peer = s
        .gold_patroni
        .iter()
        .find_map(|api| {
            let (code, _) = s.get(&format!("{api}/primary"), s.probe_timeout).ok()?;
            if code != 200 {
                return None;
            }
            let (host, port) = member(s, api, &["leader", "master", "primary"])?;
            Some(Peer {
                api: api.clone(),
                host,
                port,
            })
        })
        .ok_or_else(|| {
            anyhow!(
                "refusing the {kind} of {}: the other site's leader does not answer ({} answer no /primary), \
                 so this is not a planned switchover. Nothing was changed.\n\
                 hint: if that site is lost, `agent dr promote` (it refuses while that leader answers)",
                s.scope,
                s.gold_patroni.join(", ")
            )
        })?;
    let mut pc = s
        .conn(&peer.host, peer.port)
        .connect()
        .with_context(|| format!("the other site's leader's PostgreSQL ({})", peer.pg()))?;
    let mut mc = s
        .conn(&my_host, my_port)
        .connect()
        .with_context(|| format!("this site's PostgreSQL ({my_host}:{my_port})"))?;
    let sysid = |c: &mut postgres::Client| -> Result<String> {
        Ok(c.query_one(
            "select system_identifier::text from pg_control_system()",
            &[],
        )?
        .get(0))
    };
    let (peer_id, my_id) = (sysid(&mut pc)?, sysid(&mut mc)?);
    if peer_id != my_id {
        bail!(
            "refusing the {kind}: the sites run different databases (system identifier {peer_id} at {}, \
             {my_id} here): this site is no copy of that one. Nothing was changed.",
            peer.pg()
        );
    }
    let peer_lsn: String = pc
        .query_one("select pg_current_wal_lsn()::text", &[])?
        .get(0);
    let lag: Option<f64> = mc
        .query_one(
            "select pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())::float8",
            &[&peer_lsn],
        )?
        .get(0);
    let lag = lag.ok_or_else(|| {
        anyhow!("refusing the {kind}: this site's PostgreSQL replays nothing (not in recovery?). Nothing was changed.")
    })?;
    check_lag(
        req.kind,
        &s.scope,
        lag.max(0.0) as u64,
        s.switchover_max_lag_bytes,
    )?;

    // 2. Writes stop on the other site.
    let started = Instant::now();
    let read_only = |on: bool| json!({"postgresql": {"parameters": {"default_transaction_read_only": if on { json!("on") } else { Value::Null }}}});
    let undo_read_only = || {
        if let Err(e) = patch(s, &peer.api, &read_only(false)) {
            tracing::error!("could not remove default_transaction_read_only again: {e:#}");
        }
    };
    patch(s, &peer.api, &read_only(true))?;
    let quiesced = (|| -> Result<(String, u32, String, String)> {
        wait(
            "the other site's leader read-only (Patroni reloads it)",
            Duration::from_secs(30),
            || {
                let mut c = s.conn(&peer.host, peer.port).connect()?;
                let v: String = c
                    .query_one("show default_transaction_read_only", &[])?
                    .get(0);
                Ok((v == "on").then_some(()))
            },
        )?;
        let mut c = s.conn(&peer.host, peer.port).connect()?;
        c.batch_execute(
            "select pg_terminate_backend(pid) from pg_stat_activity \
             where backend_type = 'client backend' and pid <> pg_backend_pid(); checkpoint",
        )?;
        let row = c.query_one(
            "select s.system_identifier::text, k.timeline_id::int8, k.checkpoint_lsn::text, \
             pg_current_wal_insert_lsn()::text \
             from pg_control_system() s, pg_control_checkpoint() k",
            &[],
        )?;
        Ok((
            row.get(0),
            row.get::<_, i64>(1) as u32,
            row.get(2),
            row.get(3),
        ))
    })();
    let (system_id, timeline, checkpoint_lsn, insert_lsn) = match quiesced {
        Ok(v) => v,
        Err(e) => {
            undo_read_only();
            return Err(e.context(format!(
                "stopping writes on {} (put back as it was)",
                peer.pg()
            )));
        }
    };

    // 3. Demoted: a standby cluster of this site's leader.
    let demote = json!({
        "standby_cluster": {"host": my_host, "port": my_port},
        "postgresql": {"parameters": {"default_transaction_read_only": null}},
    });
    if let Err(e) = patch(s, &peer.api, &demote) {
        undo_read_only();
        return Err(e.context("demoting the other site (put back as it was)"));
    }
    let rollback = |e: anyhow::Error| -> anyhow::Error {
        match patch(
            s,
            &peer.api,
            &json!({"standby_cluster": null, "postgresql": {"parameters": {"default_transaction_read_only": null}}}),
        ) {
            Ok(()) => e.context(format!(
                "the {kind} was undone: {} is a writable primary again (its standby_cluster removed); \
                 this site stays a standby cluster",
                peer.pg()
            )),
            Err(u) => e.context(format!(
                "the {kind} could NOT be undone ({u:#}): neither site is writable; \
                 remove standby_cluster from {}'s /config by hand",
                peer.api
            )),
        }
    };
    let token = (|| -> Result<Value> {
        let mut last: Option<u64> = None;
        let end = wait(
            "the other site restarted as a standby leader, its WAL replayed",
            s.promote_timeout,
            || {
                let (_, p) = s.get(&format!("{}/patroni", peer.api), s.probe_timeout)?;
                if p["role"] != "standby_leader" || p["state"] != "running" {
                    return Ok(None);
                }
                let mut c = s.conn(&peer.host, peer.port).connect()?;
                let row = c.query_one(
                    "select pg_is_in_recovery(), pg_last_wal_replay_lsn()::text",
                    &[],
                )?;
                let (rec, lsn): (bool, Option<String>) = (row.get(0), row.get(1));
                let Some(lsn) = lsn.filter(|_| rec) else {
                    return Ok(None);
                };
                let lsn = parse_lsn(&lsn)?;
                // Stable over two reads: all its local WAL replayed.
                let stable = last == Some(lsn);
                last = Some(lsn);
                Ok(stable.then_some(lsn))
            },
        )?;
        let mut c = s.conn(&peer.host, peer.port).connect()?;
        let row = c.query_one(
            "select s.system_identifier::text, k.timeline_id::int8, k.checkpoint_lsn::text \
             from pg_control_system() s, pg_control_checkpoint() k",
            &[],
        )?;
        let (id_after, tl_after, ckpt_after): (String, i64, String) =
            (row.get(0), row.get(1), row.get(2));
        if id_after != system_id || tl_after as u32 != timeline {
            bail!(
                "after the demotion {} reports system {id_after} timeline {tl_after}, \
                 before it {system_id} timeline {timeline}",
                peer.pg()
            );
        }
        if parse_lsn(&ckpt_after)? < parse_lsn(&checkpoint_lsn)? {
            bail!(
                "after the demotion {}'s checkpoint {ckpt_after} is before {checkpoint_lsn}",
                peer.pg()
            );
        }
        let end = end.max(parse_lsn(&insert_lsn)?);
        Ok(json!({
            "system_identifier": system_id,
            "timeline": timeline,
            "checkpoint_lsn": ckpt_after,
            "end_lsn": format!("{:X}/{:X}", end >> 32, end & 0xffff_ffff),
            "demoted": peer.pg(),
        }))
    })()
    .map_err(rollback)?;
    let end = parse_lsn(token["end_lsn"].as_str().unwrap_or_default())?;

    // 4. This site replays past it.
    wait(
        &format!(
            "this site replaying past the other site's end of WAL {}",
            token["end_lsn"]
        ),
        s.promote_timeout,
        || {
            let mut c = s.conn(&my_host, my_port).connect()?;
            let lsn: Option<String> = c
                .query_one("select pg_last_wal_replay_lsn()::text", &[])?
                .get(0);
            Ok(match lsn {
                Some(l) if parse_lsn(&l)? >= end => Some(()),
                _ => None,
            })
        },
    )
    .map_err(rollback)?;

    // 5. Promoted.
    let leader = patch(s, &s.api, &json!({"standby_cluster": null}))
        .and_then(|()| dr::wait_writable(s))
        .with_context(|| {
            format!(
                "promoting this site after {} was demoted (it is a standby cluster of this site, \
                 caught up): neither site may be writable now; see this node's Patroni log, then \
                 `agent dr promote` here",
                peer.pg()
            )
        })?;
    let seconds = started.elapsed().as_secs_f64();

    // 6. The epoch, the hook; then the other site streaming from us.
    let previous = dr::read_epoch(state);
    let epoch = Epoch {
        epoch: previous.as_ref().map_or(0, |e| e.epoch) + 1,
        time: dr::now(),
        reason: req.reason.clone(),
        forced: false,
        node: req.node.clone(),
        leader: leader.clone(),
        token: Some(json!({"kind": kind, "demotion": token.clone()})),
        history: dr::history_of(previous)?,
    };
    dr::write_epoch(state, &epoch)?;
    let doc = json!({
        "event": "dr_switchover",
        "kind": kind,
        "reason": epoch.reason,
        "epoch": epoch.epoch,
        "scope": s.scope,
        "leader": leader,
        "demoted": peer.pg(),
        "token": token,
        "seconds": seconds,
        "agent_node": req.node,
        "time": epoch.time,
    });
    for t in req.hooks.fire_doc("dr_switchover", &doc) {
        let _ = t.join();
    }
    let streaming = wait(
        "the demoted site streaming from this one",
        s.promote_timeout,
        || {
            let mut c = s.conn(&peer.host, peer.port).connect()?;
            let rows = c.query(
                "select 1 from pg_stat_wal_receiver where status = 'streaming' and sender_host = $1",
                &[&my_host],
            )?;
            Ok((!rows.is_empty()).then_some(()))
        },
    )
    .map_err(|e| dr::redact(&e));
    Ok(Switched::Now {
        epoch: Box::new(epoch),
        seconds,
        demoted: peer.pg(),
        streaming,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_and_the_lag_bound() {
        assert_eq!(parse_lsn("0/3000028").unwrap(), 0x3000028);
        assert_eq!(parse_lsn("1/0").unwrap(), 1 << 32);
        assert!(parse_lsn("nope").is_err());
        check_lag(Kind::Switchover, "golddr", 10, 100).unwrap();
        let err = check_lag(Kind::Failback, "gold", 101, 100)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refusing the failback of gold")
                && err.contains("dr::switchover_max_lag_bytes 100")
                && err.contains("Nothing was changed"),
            "{err}"
        );
    }
}
