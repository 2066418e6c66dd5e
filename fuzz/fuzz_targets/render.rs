//! Handlebars rendering of hostile manifest strings (strict mode, the
//! `lookup` helper): Ok or an error message, never a panic or a hang.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use serde_json::json;

const HIERA: &str = "version: 5\ndefaults:\n  datadir: data\n  data_hash: yaml_data\nhierarchy:\n  - name: common\n    path: common.yaml\n";

fn hiera() -> &'static (tempfile::TempDir, Arc<agent::engine::hiera::Hiera>) {
    static H: OnceLock<(tempfile::TempDir, Arc<agent::engine::hiera::Hiera>)> = OnceLock::new();
    H.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("data")).unwrap();
        std::fs::create_dir_all(d.path().join("templates")).unwrap();
        std::fs::write(d.path().join("hiera.yaml"), HIERA).unwrap();
        std::fs::write(
            d.path().join("data/common.yaml"),
            "k: v\nlist: [a, b]\nhash: {x: 1}\n",
        )
        .unwrap();
        let h = agent::engine::hiera::Hiera::load(&d.path().join("hiera.yaml")).unwrap();
        (d, Arc::new(h))
    })
}

fuzz_target!(|text: &str| {
    let (dir, h) = hiera();
    let scope = Arc::new(json!({"facts": {}, "trusted": {"certname": "n"}}));
    // A fresh renderer per input: its cache of parsed strings must not grow
    // across inputs.
    let lookups = Arc::new(agent::engine::render::Lookups::new(h.clone(), scope));
    let mut r = agent::engine::render::Renderer::new(lookups, dir.path().join("templates"));
    let ctx = json!({
        "facts": {"os": {"family": "Debian"}},
        "node": {"name": "n", "roles": ["roles/r"]},
        "item": {"name": "x", "ip": "10.0.0.1"},
    });
    let ctx = handlebars::Context::wraps(ctx).unwrap();
    let _ = r.render_str(text, &ctx);
});
