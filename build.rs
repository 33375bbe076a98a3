//! Builds the probe guest (firmware/) with the system C toolchain and leaves
//! `probe.elf` in OUT_DIR, where `src/boot/probe.rs` embeds it, and `mini.elf` (the
//! benchmarks' minimal guest, `firmware/mini.S`), which `tests/mini_guest.rs` boots.
//!
//! firmware/Makefile is the single source of truth for the compiler flags; this
//! script only checks that the tools exist and runs `make -C firmware O=$OUT_DIR`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let fw = manifest.join("firmware");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    watch_sources(&fw);

    let cc = env::var("CC").unwrap_or_else(|_| "gcc".to_string());
    require_tool(&cc, "a C compiler (gcc) is needed to build the probe guest in firmware/; install it (e.g. `apt-get install gcc`) or point CC at one");
    require_tool("make", "`make` is needed to build the probe guest in firmware/; install it (e.g. `apt-get install make`)");

    let status = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(&fw)
        .arg(format!("O={}", out.display()))
        .arg(format!("CC={cc}"))
        .status()
        .unwrap_or_else(|e| panic!("could not run make for the probe guest: {e}"));
    if !status.success() {
        panic!(
            "building the probe guest failed (make -C {} exited with {status})",
            fw.display()
        );
    }
    for name in ["probe.elf", "mini.elf"] {
        let elf = out.join(name);
        if !elf.is_file() {
            panic!("the firmware build did not produce {}", elf.display());
        }
    }
}

/// Reruns the build when any source file in firmware/ changes. The build/
/// directory (from a manual `make -C firmware`) is not watched; a new source
/// file also means a Makefile change, which is.
fn watch_sources(fw: &Path) {
    let Ok(entries) = fs::read_dir(fw) else {
        panic!("firmware directory {} is missing", fw.display());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn require_tool(tool: &str, why: &str) {
    match Command::new(tool).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!("`{tool}` not found or not working: {why}"),
    }
}
