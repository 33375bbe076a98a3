//! The benchmarks' minimal guest (`firmware/mini.S`, built by build.rs into OUT_DIR)
//! boots as an ordinary `[boot] kernel` on every board: it prints its one line on COM1
//! and powers off through the board's PM block (exit 0), with nothing else on COM1.

mod common;
use common::*;

const MINI_ELF: &str = concat!(env!("OUT_DIR"), "/mini.elf");
const LINE: &str = "mini: hello from the minimal guest\n";

fn boots_and_powers_off(board: &str) {
    if !kvm_usable() {
        return;
    }
    let d = temp_dir("mini", board);
    let log = d.join("com1.log");
    let file = d.join("m.toml");
    let text = format!(
        "[machine]\nboard = \"{board}\"\nmemory = \"128MiB\"\ncpus = 1\n\
         [boot]\nkernel = \"{MINI_ELF}\"\n\
         [[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n",
        log.display()
    );
    std::fs::write(&file, text).unwrap();
    let out = vmrun()
        .args([file.to_str().unwrap(), "--timeout", "30s"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let com1 = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{board}: stderr: {stderr}");
    assert_eq!(com1, LINE, "{board}: COM1 output");
}

#[test]
fn mini_guest_on_microvm() {
    boots_and_powers_off("microvm");
}

#[test]
fn mini_guest_on_pc() {
    boots_and_powers_off("pc");
}

#[test]
fn mini_guest_on_q35() {
    boots_and_powers_off("q35");
}
