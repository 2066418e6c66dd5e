//! Links the agent's binaries with packed relative relocations (DT_RELR,
//! glibc >= 2.36): a binary of this size carries ~17k relative relocations,
//! which as classic RELA entries are 400 KiB the dynamic loader reads at
//! every start, a hundred page faults and a fifth of the start-up of a
//! one-resource run. Packed, they are 5 KiB. The binary stays
//! position-independent (ASLR); libraries and tests are unaffected.

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
