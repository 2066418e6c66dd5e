//! The `systemd` service provider: `systemctl is-active` / `is-enabled` to
//! look, `start`, `stop`, `restart`, `reload`, `enable`, `disable` to act.
//! The unit is the title (`stash` means `stash.service`).

use std::time::Duration;

use super::{Provider, Status};
use crate::core::{Context, ResourceError};
use crate::runner::Cmd;

#[derive(Debug)]
pub struct Systemd {
    unit: String,
    /// The systemctl binary (tests put a stand-in here).
    systemctl: String,
    timeout: Duration,
}

impl Systemd {
    pub fn new(unit: &str, timeout: Duration) -> Systemd {
        Systemd {
            unit: unit.to_string(),
            systemctl: "systemctl".into(),
            timeout,
        }
    }

    fn cmd(&self, verb: &str) -> Cmd {
        let mut c = Cmd::new(&[self.systemctl.as_str(), verb, &self.unit]);
        c.env.push(("LC_ALL".into(), "C".into()));
        // Never wait for a password prompt or a pager.
        c.env.push(("SYSTEMD_PAGER".into(), String::new()));
        c.timeout = Some(self.timeout);
        c
    }

    fn act(&self, cx: &Context, verb: &str) -> Result<(), ResourceError> {
        cx.runner.run(&self.cmd(verb)).map(drop)
    }
}

/// Reads `systemctl is-enabled`: `None` for units whose enablement is not
/// a setting (static, indirect, generated, transient), so that neither
/// `enable: true` nor `false` reports a change it could never make.
pub fn parse_is_enabled(stdout: &str) -> Option<bool> {
    match stdout.lines().next().unwrap_or("").trim() {
        "enabled" | "enabled-runtime" | "alias" => Some(true),
        "static" | "indirect" | "generated" | "transient" => None,
        // disabled, masked, linked, not-found, empty: not started at boot.
        _ => Some(false),
    }
}

impl Provider for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn status(&self, cx: &Context) -> Result<Status, ResourceError> {
        // Exit 0: active (or reloading); anything else: not running.
        let out = cx.runner.output(&self.cmd("is-active"))?;
        Ok(if out.success() {
            Status::Running
        } else {
            Status::Stopped
        })
    }

    fn start(&self, cx: &Context) -> Result<(), ResourceError> {
        self.act(cx, "start")
    }

    fn stop(&self, cx: &Context) -> Result<(), ResourceError> {
        self.act(cx, "stop")
    }

    fn restart(&self, cx: &Context) -> Result<(), ResourceError> {
        self.act(cx, "restart")
    }

    fn reload(&self, cx: &Context) -> Result<(), ResourceError> {
        self.act(cx, "reload")
    }

    fn enabled(&self, cx: &Context) -> Result<Option<bool>, ResourceError> {
        // Non-zero for disabled units: the text says which state it is.
        let out = cx.runner.output(&self.cmd("is-enabled"))?;
        Ok(parse_is_enabled(&out.stdout))
    }

    fn set_enabled(&self, cx: &Context, on: bool) -> Result<(), ResourceError> {
        self.act(cx, if on { "enable" } else { "disable" })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decl, sandbox};
    use super::super::{build_with, Service};
    use super::*;
    use crate::core::Resource;
    use serde_json::json;

    #[test]
    fn is_enabled_states() {
        assert_eq!(parse_is_enabled("enabled\n"), Some(true));
        assert_eq!(parse_is_enabled("disabled\n"), Some(false));
        assert_eq!(parse_is_enabled("masked\n"), Some(false));
        assert_eq!(parse_is_enabled("static\n"), None);
        assert_eq!(parse_is_enabled(""), Some(false));
    }

    /// A stand-in systemctl keeping the unit's state in files beside it.
    const FAKE: &str = r#"#!/bin/sh
d=$(dirname "$0")
echo "$*" >> "$d/calls"
case "$1" in
  is-active) if [ -f "$d/active" ]; then echo active; else echo inactive; exit 3; fi ;;
  is-enabled) if [ -f "$d/enabled" ]; then echo enabled; else echo disabled; exit 1; fi ;;
  start) touch "$d/active" ;;
  stop) rm -f "$d/active" ;;
  restart) echo restart >> "$d/log"; touch "$d/active" ;;
  reload) echo reload >> "$d/log" ;;
  enable) touch "$d/enabled" ;;
  disable) rm -f "$d/enabled" ;;
  *) echo "unknown verb $1" >&2; exit 1 ;;
esac
"#;

    fn fake_service(dir: &std::path::Path, attrs: serde_json::Value) -> Service {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("systemctl");
        std::fs::write(&bin, FAKE).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut s = build_with(&decl("stash", attrs), true).unwrap();
        let mut provider = Systemd::new("stash", Duration::from_secs(10));
        provider.systemctl = bin.display().to_string();
        s.provider = Box::new(provider);
        s
    }

    #[test]
    fn starts_enables_and_refreshes_through_systemctl() {
        let (dir, cx) = sandbox();
        let s = fake_service(dir.path(), json!({"ensure": "running", "enable": true}));
        let plan = s.check(&cx).unwrap();
        let lines = crate::testing::lines(&plan);
        assert_eq!(
            lines,
            [
                "ensure changed 'stopped' to 'running'",
                "enable changed 'false' to 'true'"
            ]
        );
        s.apply(&cx, plan).unwrap();
        assert!(s.check(&cx).unwrap().is_empty(), "idempotent");
        s.refresh(&cx).unwrap();
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert!(
            calls.contains("start stash\n") && calls.contains("enable stash\n"),
            "{calls}"
        );
        assert!(
            calls.ends_with("is-active stash\nrestart stash\n"),
            "{calls}"
        );
        let history = cx.runner.history().join("\n");
        assert!(history.contains("systemctl start stash"), "{history}");

        let reload = fake_service(dir.path(), json!({"restart": "reload"}));
        reload.refresh(&cx).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("log")).unwrap(),
            "restart\nreload\n"
        );

        let off = fake_service(dir.path(), json!({"ensure": "stopped", "enable": false}));
        let plan = off.check(&cx).unwrap();
        let changes = plan.changes().to_vec();
        assert_eq!(changes.len(), 2, "{changes:?}");
        off.apply(&cx, plan).unwrap();
        assert!(off.check(&cx).unwrap().is_empty());
        assert!(!dir.path().join("active").exists() && !dir.path().join("enabled").exists());
    }
}
