//! Patroni's REST API as a `db_master` source: `GET /cluster` on the first
//! configured address that answers (each request bounded by the source's
//! timeout). Patroni builds `/cluster` from its DCS, so it answers what the
//! leader key says, with each member's PostgreSQL `host` and `port`.

use serde_json::Value;

use super::{Member, PatroniSettings, View};

/// Asks each address in turn; the first answer wins.
pub fn read(cfg: &PatroniSettings) -> Result<View, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(cfg.timeout))
        .build()
        .into();
    let mut errors = vec![];
    for base in &cfg.urls {
        let url = format!("{base}/cluster");
        let answer = super::json_of(agent.get(&url).call());
        match answer {
            Ok(doc) => return Ok(view_of(&doc)),
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    Err(format!("no Patroni answered: {}", errors.join("; ")))
}

/// The cluster as `/cluster` describes it: the leader is the one member
/// whose role is `leader`; two such members are reported as claimers with
/// no leader (a split brain).
pub fn view_of(doc: &Value) -> View {
    let members: Vec<Member> = doc
        .get("members")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(member).collect())
        .unwrap_or_default();
    let leaders: Vec<&Member> = members.iter().filter(|m| m.role == "leader").collect();
    let leader = match leaders.as_slice() {
        [one] => Some(one.name.clone()),
        _ => None,
    };
    View { leader, members }
}

fn member(m: &Value) -> Member {
    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
    let conn = (!s("host").is_empty()).then(|| {
        let port = m.get("port").and_then(Value::as_u64).unwrap_or(5432);
        if s("host").contains(':') {
            format!("[{}]:{port}", s("host"))
        } else {
            format!("{}:{port}", s("host"))
        }
    });
    Member {
        name: s("name").to_string(),
        conn,
        role: s("role").to_string(),
        state: s("state").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_cluster_documents() {
        let doc = json!({"members": [
            {"name": "n1", "role": "replica", "state": "running", "host": "127.0.0.21", "port": 25432},
            {"name": "n2", "role": "leader", "state": "running", "host": "127.0.0.22", "port": 25432},
            {"name": "n3", "role": "sync_standby", "state": "running", "host": "::1", "port": 5432},
        ]});
        let v = view_of(&doc);
        assert_eq!(v.leader.as_deref(), Some("n2"));
        assert_eq!(v.members[1].conn.as_deref(), Some("127.0.0.22:25432"));
        assert_eq!(v.members[2].conn.as_deref(), Some("[::1]:5432"));
        let two = json!({"members": [
            {"name": "a", "role": "leader", "host": "a", "port": 1},
            {"name": "b", "role": "leader", "host": "b", "port": 2},
        ]});
        assert_eq!(view_of(&two).leader, None);
    }
}
