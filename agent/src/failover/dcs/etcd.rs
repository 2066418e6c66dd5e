//! Patroni's keys in etcd, through etcd's v3 JSON gateway: the HTTP face of
//! its v3 gRPC API that every etcd since 3.3 serves on its client URLs
//! (`POST /v3/kv/range`, `POST /v3/watch`). One read of the cluster's keys
//! ([`read`]) and a subscription to the leader key ([`Subscription`]) for
//! `agent watch`.
//!
//! Why not the gRPC client crate (`etcd-client`): it compiles etcd's
//! protobuf files at build time, so building the agent would need `protoc`
//! (a Debian package) before `cargo build` — a fresh machine could not run
//! `cargo test` any more — and it added 2 MB to the binary. The gateway is
//! etcd's own API with the same semantics, spoken with the HTTP client the
//! Patroni source already uses.
//!
//! A read is one range request over `<namespace><scope>/` (the leader key
//! and the members' data) on the first endpoint that answers, bounded as a
//! whole by the source's timeout. Requests carry etcd's require-leader flag
//! (`hasleader` metadata): a member cut off from the others' quorum refuses
//! instead of answering from a stale view.
//!
//! The subscription holds one etcd watch on the leader key (a streamed
//! response) on a thread of its own: an idle cluster costs no request. A
//! watch that stays silent for [`IDLE_REARM`] is re-armed from the next
//! revision (so no change is missed in between) — this is how a member that
//! froze or was cut off is noticed without the HTTP/2 pings of gRPC. Each
//! change of the key, each (re)established watch after a loss and each lost
//! one wakes the watch loop, which then reads the cluster once.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{conn_host_port, EtcdSettings, Member, View};

/// A silent watch stream is re-armed after this long (one request per
/// period on an idle cluster, none to the databases).
pub const IDLE_REARM: Duration = Duration::from_secs(10);

/// etcd's require-leader flag, as gRPC metadata through the gateway.
const REQUIRE_LEADER: (&str, &str) = ("Grpc-Metadata-hasleader", "true");

fn agent(per_call: Option<Duration>, per_read: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(per_call)
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_per_read(per_read)
        // etcd's errors come as JSON bodies with a status: read them.
        .http_status_as_error(false)
        .build()
        .into()
}

/// The end of the range of keys starting with `prefix` (etcd's convention:
/// the prefix with its last byte incremented).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(v: &Value) -> Option<String> {
    String::from_utf8(B64.decode(v.as_str()?).ok()?).ok()
}

/// etcd's JSON renders int64 as strings.
fn int(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
}

/// An error document of the gateway (`{"error": …, "code": …}`), if any.
fn gateway_error(doc: &Value) -> Option<String> {
    let msg = doc.get("error").or_else(|| doc.get("message"))?;
    Some(msg.as_str().unwrap_or_default().to_string())
}

/// Reads the leader key and the members' data under the cluster's prefix.
pub fn read(cfg: &EtcdSettings) -> Result<View, String> {
    let started = Instant::now();
    let body = json!({
        "key": b64(cfg.prefix.as_bytes()),
        "range_end": b64(&prefix_end(&cfg.prefix)),
    });
    let mut errors = vec![];
    for endpoint in &cfg.endpoints {
        let left = cfg.timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            errors.push(format!("{endpoint}: no time left"));
            continue;
        }
        let url = format!("{endpoint}/v3/kv/range");
        let answer = super::json_of(
            agent(Some(left), None)
                .post(&url)
                .header(REQUIRE_LEADER.0, REQUIRE_LEADER.1)
                .send_json(&body),
        );
        match answer {
            Ok(doc) => match gateway_error(&doc) {
                Some(e) => errors.push(format!("{endpoint}: {e}")),
                None => {
                    let kvs = key_values(&doc);
                    let view = view_of(&cfg.prefix, &kvs);
                    tracing::debug!("{} read from etcd: leader {:?}", cfg.prefix, view.leader);
                    return Ok(view);
                }
            },
            Err(e) => errors.push(format!("{endpoint}: {e}")),
        }
    }
    Err(format!("no etcd member answered: {}", errors.join("; ")))
}

/// The (key, value) pairs of a range answer, decoded.
fn key_values(doc: &Value) -> Vec<(String, String)> {
    doc.get("kvs")
        .and_then(Value::as_array)
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| Some((unb64(kv.get("key")?)?, unb64(kv.get("value")?)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The cluster as Patroni's keys under `prefix` describe it.
pub fn view_of(prefix: &str, kvs: &[(String, String)]) -> View {
    let mut view = View::default();
    for (key, value) in kvs {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        if rest == "leader" {
            view.leader = Some(value.trim().to_string());
        } else if let Some(name) = rest.strip_prefix("members/") {
            let data: serde_json::Value = serde_json::from_str(value).unwrap_or_default();
            let field = |k: &str| {
                data.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            view.members.push(Member {
                name: name.to_string(),
                conn: conn_host_port(&field("conn_url")),
                role: field("role"),
                state: field("state"),
            });
        }
    }
    view
}

/// Why the watch loop was woken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// The leader key changed, or the watch was (re)established or lost:
    /// read the cluster again.
    Evaluate(String),
    /// Nothing happened before the deadline.
    Idle,
    /// SIGTERM/SIGINT.
    Stop,
}

/// An etcd watch on the leader key, held on a thread of its own; the
/// watch loop [`Subscription::wait`]s on it.
pub struct Subscription {
    key: String,
    rx: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
}

impl Subscription {
    /// Starts watching `cfg`'s leader key (re-arming a silent watch,
    /// reconnecting after a loss every half second while etcd cannot be
    /// reached).
    pub fn start(cfg: EtcdSettings) -> Subscription {
        let key = cfg.leader_key();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut watcher = Watcher {
                cfg,
                tx,
                next_revision: None,
                lost: true,
            };
            while !stopped.load(Ordering::Relaxed) {
                match watcher.watch_once(&stopped) {
                    Ended::Rearm => {}
                    Ended::Lost(why) => {
                        watcher.lost = true;
                        if watcher.tx.send(why).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Ended::Gone => return,
                }
            }
        });
        Subscription { key, rx, stop }
    }

    /// The key watched.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Waits for a change until `deadline`, waking for a stop request.
    /// Local only: no request reaches etcd while the key stays the same.
    pub fn wait(&self, deadline: Instant) -> Wake {
        loop {
            if crate::schedule::signals::stop_requested() {
                return Wake::Stop;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wake::Idle;
            }
            // Short slices only to see the stop flag a signal sets.
            match self
                .rx
                .recv_timeout((deadline - now).min(Duration::from_millis(50)))
            {
                Ok(why) => {
                    // Several events in a burst make one evaluation.
                    while self.rx.try_recv().is_ok() {}
                    return Wake::Evaluate(why);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Wake::Evaluate("the etcd watch ended".into())
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The thread sees it at its next line or re-arm (at most
        // IDLE_REARM later); it holds nothing but its socket.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How one watch stream ended.
enum Ended {
    /// Silent for IDLE_REARM: arm it again from the next revision.
    Rearm,
    /// Broken or refused: the loop is told, and a new watch follows.
    Lost(String),
    /// The subscription was dropped.
    Gone,
}

struct Watcher {
    cfg: EtcdSettings,
    tx: mpsc::Sender<String>,
    /// The revision after the last one seen: a re-armed watch starts there,
    /// so a change made while no stream was open is still delivered.
    next_revision: Option<i64>,
    /// No watch was held since the last loss (or ever): the first created
    /// one wakes the loop, since anything may have changed meanwhile.
    lost: bool,
}

impl Watcher {
    fn send(&self, why: String) -> bool {
        self.tx.send(why).is_ok()
    }

    /// One watch stream on the first endpoint that takes it, until it
    /// breaks, idles out or the subscription is dropped.
    fn watch_once(&mut self, stopped: &AtomicBool) -> Ended {
        let key = self.cfg.leader_key();
        let mut create = json!({ "key": b64(key.as_bytes()) });
        if let Some(rev) = self.next_revision {
            create["start_revision"] = json!(rev.to_string());
        }
        let body = json!({ "create_request": create });
        let mut errors = vec![];
        for endpoint in &self.cfg.endpoints {
            let url = format!("{endpoint}/v3/watch");
            let response = agent(None, Some(IDLE_REARM))
                .post(&url)
                .header(REQUIRE_LEADER.0, REQUIRE_LEADER.1)
                .send_json(&body);
            let response = match response {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => {
                    errors.push(format!("{endpoint}: HTTP {}", r.status()));
                    continue;
                }
                Err(e) => {
                    errors.push(format!("{endpoint}: {e}"));
                    continue;
                }
            };
            let lines = BufReader::new(response.into_body().into_reader()).lines();
            return self.follow(lines, &key, stopped);
        }
        Ended::Lost(format!("cannot watch {key}: {}", errors.join("; ")))
    }

    /// Reads the watch's stream: one JSON document per line.
    fn follow(
        &mut self,
        lines: impl Iterator<Item = std::io::Result<String>>,
        key: &str,
        stopped: &AtomicBool,
    ) -> Ended {
        for line in lines {
            if stopped.load(Ordering::Relaxed) {
                return Ended::Gone;
            }
            let line = match line {
                Ok(l) => l,
                Err(e) if is_idle_timeout(&e) => return Ended::Rearm,
                Err(e) => return Ended::Lost(format!("the watch on {key} broke: {e}")),
            };
            if line.trim().is_empty() {
                continue;
            }
            let doc: Value = match serde_json::from_str(&line) {
                Ok(d) => d,
                Err(e) => return Ended::Lost(format!("the watch on {key} sent {e}")),
            };
            if let Some(e) = doc
                .get("error")
                .and_then(|e| gateway_error(e).or(Some(e.to_string())))
            {
                return Ended::Lost(format!("the watch on {key} failed: {e}"));
            }
            let Some(result) = doc.get("result") else {
                continue;
            };
            if let Some(rev) = result.pointer("/header/revision").and_then(int) {
                self.next_revision = Some(rev + 1);
            }
            if result.get("canceled").and_then(Value::as_bool) == Some(true) {
                // Compacted past our revision: start from now, and read.
                self.next_revision = None;
                let reason = result
                    .get("cancel_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given");
                return Ended::Lost(format!("etcd cancelled the watch on {key}: {reason}"));
            }
            if result.get("created").and_then(Value::as_bool) == Some(true) {
                if self.lost {
                    self.lost = false;
                    if !self.send(format!("watching {key}")) {
                        return Ended::Gone;
                    }
                }
                continue;
            }
            let events = result
                .get("events")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if events > 0 && !self.send(format!("{key} changed")) {
                return Ended::Gone;
            }
        }
        Ended::Lost(format!("etcd closed the watch on {key}"))
    }
}

/// A read that timed out because the stream was silent (ureq's per-read
/// timeout), as opposed to a broken connection.
fn is_idle_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) || e.to_string().contains("timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_patroni_keys() {
        let kvs = [
            ("/service/c/leader".to_string(), "n2".to_string()),
            (
                "/service/c/members/n1".into(),
                r#"{"conn_url":"postgres://127.0.0.21:5432/postgres","role":"replica","state":"running"}"#.into(),
            ),
            (
                "/service/c/members/n2".into(),
                r#"{"conn_url":"postgres://127.0.0.22:5433/postgres","role":"master","state":"running"}"#.into(),
            ),
            ("/service/c/config".into(), "{}".into()),
            ("/service/c/members/bad".into(), "not json".into()),
        ];
        let v = view_of("/service/c/", &kvs);
        assert_eq!(v.leader.as_deref(), Some("n2"));
        assert_eq!(v.members.len(), 3);
        assert_eq!(v.members[1].conn.as_deref(), Some("127.0.0.22:5433"));
        assert_eq!(v.members[1].role, "master");
        assert_eq!(v.members[2].conn, None);
    }

    #[test]
    fn range_end_is_the_prefix_plus_one() {
        assert_eq!(prefix_end("/service/c/"), b"/service/c0".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }

    #[test]
    fn decodes_a_range_answer() {
        let doc = json!({
            "header": {"revision": "7"},
            "kvs": [{"key": b64(b"/service/c/leader"), "value": b64(b"n1"), "mod_revision": "5"}],
            "count": "1"
        });
        assert_eq!(
            key_values(&doc),
            vec![("/service/c/leader".to_string(), "n1".to_string())]
        );
        assert!(key_values(&json!({"header": {}})).is_empty());
        assert_eq!(
            gateway_error(&json!({"error": "etcdserver: no leader", "code": 14})).as_deref(),
            Some("etcdserver: no leader")
        );
    }
}
