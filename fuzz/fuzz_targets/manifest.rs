//! The manifest loader on hostile YAML: `site.yaml` and one role file come
//! from the input (split at the first NUL byte). Loading must return Ok or
//! a ManifestError, never panic, hang or overflow the stack.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("roles")).unwrap();
        d
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let (site, role) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"default: [roles/r]\n"[..], data),
    };
    let d = dir();
    std::fs::write(d.join("site.yaml"), site).unwrap();
    std::fs::write(d.join("roles/r.yaml"), role).unwrap();
    if let Err(e) = agent::engine::manifest::load(d, "fuzz-node") {
        let _ = e.to_string();
    }
});
