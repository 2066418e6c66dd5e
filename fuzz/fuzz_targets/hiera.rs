//! Hiera interpolation on hostile strings: the input (before the first NUL)
//! is the value of key `a` in common.yaml, full of `%{...}`; the rest, when
//! present, is the raw YAML of the node level. Lookups must return Ok or a
//! HieraError (recursion, missing key, syntax), never panic or hang.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::json;

const HIERA: &str = "version: 5\ndefaults:\n  datadir: data\n  data_hash: yaml_data\nhierarchy:\n  - name: node\n    path: \"nodes/%{trusted.certname}.yaml\"\n  - name: common\n    path: common.yaml\n";

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("data/nodes")).unwrap();
        std::fs::write(d.path().join("hiera.yaml"), HIERA).unwrap();
        d
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let (value, node) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    let d = dir();
    let common = json!({
        "a": value,
        "b": "plain %{facts.os.family}",
        "c": ["x", "%{lookup('b')}"],
        "h": {"k": "%{alias('c')}"},
        "lookup_options": {"s": {"convert_to": "Sensitive"}},
        "s": "secret-%{trusted.certname}",
    });
    std::fs::write(
        d.join("data/common.yaml"),
        agent::yaml::to_string(&common),
    )
    .unwrap();
    let node_file = d.join("data/nodes/fuzz-node.yaml");
    match node {
        Some(bytes) => std::fs::write(&node_file, bytes).unwrap(),
        None => {
            let _ = std::fs::remove_file(&node_file);
        }
    }
    // A new Hiera per input: the data cache must not carry the last input.
    let Ok(hiera) = agent::engine::hiera::Hiera::load(&d.join("hiera.yaml")) else {
        return;
    };
    let scope = json!({
        "facts": {"os": {"family": "Debian"}},
        "trusted": {"certname": "fuzz-node"},
        "role": "r",
        "osfamily": "Debian",
    });
    for key in ["a", "b", "c", "h", "h.k", "s", "missing"] {
        let _ = hiera.lookup(key, &scope, None);
    }
});
