//! What a node of a cluster says about itself, in one query: primary or
//! standby, the master it streams from (`pg_stat_wal_receiver`), its WAL
//! position, and its copy of the cluster's heartbeat row. The same code
//! serves a one-shot probe (facts, `agent cluster status --fresh`) and the
//! watcher, which keeps one connection per node between ticks (a tick then
//! costs a query per node, not a login: SCRAM alone is milliseconds).
//!
//! The heartbeat is plusmoin's way to measure lag: the watching agent
//! writes `(cluster, master, now())` on the master ([`Prober::beat`]); each
//! slave's copy of that row is read back through the slave, and the lag is
//! the master's timestamp minus the slave's copy — one clock, no skew, and
//! an idle primary does not look lagging (each beat is replayed at once),
//! where `now() - pg_last_xact_replay_timestamp()` grows without bound.

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::{Client, Statement};

use crate::failover::clusters::ClusterConfig;
use crate::failover::dbmaster::{ProbeConfig, Target};

/// What one node answered.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub in_recovery: bool,
    /// The `host:port` its WAL receiver streams from (a standby), if any.
    pub sender: Option<(String, u16)>,
    /// Its WAL position: written (a primary) or replayed (a standby).
    pub lsn: Option<u64>,
    /// Its copy of the cluster's heartbeat: seconds since the epoch, by
    /// the master's clock.
    pub heartbeat: Option<f64>,
}

/// A node's answer, or why there is none.
pub type NodeProbe = Result<NodeInfo, String>;

/// Parses a `pg_lsn` text (`16/B374D848`).
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

const STATE_SQL: &str = "SELECT pg_is_in_recovery(), \
       (SELECT sender_host FROM pg_stat_wal_receiver LIMIT 1), \
       (SELECT sender_port FROM pg_stat_wal_receiver LIMIT 1), \
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
             ELSE pg_current_wal_lsn() END)::text, \
       to_regclass($1::text) IS NOT NULL";

/// [`STATE_SQL`] with the heartbeat row, once the node has the table.
fn with_beat_sql(table: &str) -> String {
    format!(
        "SELECT pg_is_in_recovery(), \
           (SELECT sender_host FROM pg_stat_wal_receiver LIMIT 1), \
           (SELECT sender_port FROM pg_stat_wal_receiver LIMIT 1), \
           (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                 ELSE pg_current_wal_lsn() END)::text, \
           true, \
           (SELECT extract(epoch FROM ts)::float8 FROM {table} WHERE cluster = $1)"
    )
}

/// A kept connection and its prepared statements: a tick is then one
/// round trip per node (bind, execute), not a parse each time.
pub struct Conn {
    client: Client,
    state: Option<Statement>,
    with_beat: Option<Statement>,
}

/// Probes nodes, keeping a connection to each between calls.
pub struct Prober {
    rt: tokio::runtime::Runtime,
    cfg: ProbeConfig,
    table: String,
    /// `cluster/host:port` → an open connection.
    clients: HashMap<String, Conn>,
}

impl Prober {
    pub fn new(cfg: ProbeConfig, table: &str) -> std::io::Result<Prober> {
        Ok(Prober {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            cfg,
            table: table.to_string(),
            clients: HashMap::new(),
        })
    }

    /// Probes every node of every cluster at once, each bounded by the
    /// probe timeout; answers in the clusters' and nodes' order.
    pub fn probe(&mut self, clusters: &[ClusterConfig]) -> Vec<Vec<NodeProbe>> {
        let mut set = tokio::task::JoinSet::new();
        for (ci, c) in clusters.iter().enumerate() {
            for (ni, t) in c.nodes.iter().enumerate() {
                let key = format!("{}/{}", c.name, t.label());
                let client = self.clients.remove(&key);
                let (cfg, table, t, name) = (
                    self.cfg.clone(),
                    self.table.clone(),
                    t.clone(),
                    c.name.clone(),
                );
                set.spawn_on(
                    async move {
                        let (client, got) = probe_one(client, &t, &cfg, &table, &name).await;
                        (ci, ni, key, client, got)
                    },
                    self.rt.handle(),
                );
            }
        }
        let mut out: Vec<Vec<NodeProbe>> = clusters
            .iter()
            .map(|c| vec![Err("not probed".to_string()); c.nodes.len()])
            .collect();
        let done = self.rt.block_on(async {
            let mut done = Vec::new();
            while let Some(r) = set.join_next().await {
                if let Ok(r) = r {
                    done.push(r);
                }
            }
            done
        });
        for (ci, ni, label, client, got) in done {
            if let Some(c) = client {
                self.clients.insert(label, c);
            }
            out[ci][ni] = got;
        }
        out
    }

    /// Writes the cluster's heartbeat row on its master (creating the table
    /// the first time); the master's timestamp it wrote.
    pub fn beat(&mut self, cluster: &str, master: &Target) -> Result<f64, String> {
        let key = format!("{cluster}/{}", master.label());
        let client = self.clients.remove(&key);
        let (cfg, table) = (self.cfg.clone(), self.table.clone());
        let (client, got) = self.rt.block_on(async {
            let conn = match client {
                Some(c) if !c.client.is_closed() => c,
                _ => match connect(master, &cfg).await {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                },
            };
            let client = &conn.client;
            let work = async {
                client
                    .batch_execute(&format!(
                        "CREATE TABLE IF NOT EXISTS {table} (cluster text PRIMARY KEY, \
                         master text NOT NULL, ts timestamptz NOT NULL)"
                    ))
                    .await?;
                let row = client
                    .query_one(
                        &format!(
                            "INSERT INTO {table} VALUES ($1, $2, now()) ON CONFLICT (cluster) \
                             DO UPDATE SET master = excluded.master, ts = excluded.ts \
                             RETURNING extract(epoch FROM ts)::float8"
                        ),
                        &[&cluster, &master.label()],
                    )
                    .await?;
                Ok::<f64, tokio_postgres::Error>(row.get(0))
            };
            match tokio::time::timeout(cfg.timeout, work).await {
                Ok(Ok(ts)) => (Some(conn), Ok(ts)),
                Ok(Err(e)) => (None, Err(why(&e))),
                Err(_) => (None, Err(format!("no answer within {:?}", cfg.timeout))),
            }
        });
        if let Some(c) = client {
            self.clients.insert(key, c);
        }
        got
    }
}

fn redacted(e: &str) -> String {
    resources::redact::redact(e).into_owned()
}

/// The error and its causes (tokio-postgres says "error connecting to
/// server" and keeps the why in its source), redacted.
fn why(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    redacted(&text)
}

async fn connect(t: &Target, cfg: &ProbeConfig) -> Result<Conn, String> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&t.host)
        .port(t.port)
        .user(&cfg.user)
        .dbname(&cfg.dbname)
        .application_name("agent-db_master-probe")
        .connect_timeout(cfg.timeout);
    if let Some(p) = &cfg.password {
        pg.password(p);
    }
    let connecting = async {
        let (client, conn) = pg
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| why(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            client,
            state: None,
            with_beat: None,
        })
    };
    match tokio::time::timeout(cfg.timeout, connecting).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", cfg.timeout)),
    }
}

/// One node: reuses `conn` when it is still open; gives back the
/// connection worth keeping.
async fn probe_one(
    conn: Option<Conn>,
    t: &Target,
    cfg: &ProbeConfig,
    table: &str,
    cluster: &str,
) -> (Option<Conn>, NodeProbe) {
    let started = tokio::time::Instant::now();
    let mut conn = match conn {
        Some(c) if !c.client.is_closed() => c,
        _ => match connect(t, cfg).await {
            Ok(c) => c,
            Err(e) => return (None, Err(e)),
        },
    };
    let left = cfg
        .timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    let work = async {
        let row = match &conn.with_beat {
            Some(st) => conn.client.query_one(st, &[&cluster]).await?,
            None => {
                if conn.state.is_none() {
                    conn.state = Some(conn.client.prepare(STATE_SQL).await?);
                }
                let st = conn.state.as_ref().expect("prepared above");
                let row = conn.client.query_one(st, &[&table]).await?;
                if !row.get::<_, bool>(4) {
                    row
                } else {
                    // The table is there (now, for good): one statement from now on.
                    let st = conn.client.prepare(&with_beat_sql(table)).await?;
                    let row = conn.client.query_one(&st, &[&cluster]).await?;
                    conn.with_beat = Some(st);
                    row
                }
            }
        };
        let host: Option<String> = row.get(1);
        let port: Option<i32> = row.get(2);
        let lsn: Option<String> = row.get(3);
        let heartbeat = if conn.with_beat.is_some() {
            row.get::<_, Option<f64>>(5)
        } else {
            None
        };
        Ok::<NodeInfo, tokio_postgres::Error>(NodeInfo {
            in_recovery: row.get(0),
            sender: host.zip(port.and_then(|p| u16::try_from(p).ok())),
            lsn: lsn.as_deref().and_then(parse_lsn),
            heartbeat,
        })
    };
    match tokio::time::timeout(left, work).await {
        Ok(Ok(info)) => (Some(conn), Ok(info)),
        Ok(Err(e)) => (None, Err(why(&e))),
        Err(_) => (None, Err(format!("no answer within {:?}", cfg.timeout))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(parse_lsn("nope"), None);
    }
}
