//! Boots the probe on pc, q35 and microvm with a fw_cfg device that carries machine-file
//! files, and checks what the probe reads through fw_cfg's I/O and DMA interfaces.
//! Needs /dev/kvm; says so and skips when it is missing.

use std::path::{Path, PathBuf};

use vmrun::boot::probe::ProbeLine;

mod common;
use common::kvm_usable;

fn dir(name: &str) -> PathBuf {
    common::temp_dir("fwcfg", name)
}

/// Boots the probe with `machine` (plus COM1 into a log file); returns the exit code,
/// the parsed report and the raw log for messages.
fn boot(name: &str, machine: &str, opts: &[&str]) -> (Option<i32>, Vec<ProbeLine>, String) {
    let b = common::boot("fwcfg", name, machine, opts);
    let ctx = b.ctx();
    (b.status, b.lines, ctx)
}

fn tagged<'a>(lines: &'a [ProbeLine], tag: &str) -> Vec<&'a ProbeLine> {
    lines.iter().filter(|l| l.tag == tag).collect()
}

/// A machine of `board` whose fw_cfg has an inline file and a file read from disk.
fn machine(board: &str, extra_path: &Path) -> String {
    let kind = if board == "microvm" {
        "kind = \"fw_cfg\"\n"
    } else {
        ""
    };
    format!(
        "[machine]\nboard = \"{board}\"\nmemory = \"128MiB\"\ncpus = 2\n\
         [[device]]\nid = \"fw_cfg\"\n{kind}files = [\n\
           {{ name = \"opt/vmrun/greeting\", string = \"hello from {board}\" }},\n\
           {{ name = \"opt/vmrun/blob\", path = \"{}\" }},\n]\n",
        extra_path.display()
    )
}

fn check(board: &str) {
    let blob = dir(board).join("blob.bin");
    std::fs::write(&blob, [0u8, 1, 2, 3, 0xff]).unwrap();
    let (status, lines, ctx) = boot(board, &machine(board, &blob), &["quick=1", "fwcfg=1"]);
    let ctx = format!("{board}:\n{ctx}");
    assert_eq!(status, Some(0), "{ctx}");
    let head = tagged(&lines, "fwcfg");
    assert_eq!(head.len(), 1, "{ctx}");
    assert_eq!(head[0].get("signature"), Some("QEMU"), "{ctx}");
    assert_eq!(head[0].get("id"), Some("0x3"), "{ctx}");
    let files = tagged(&lines, "fwcfg file");
    assert_eq!(head[0].get_u64("files"), Some(files.len() as u64), "{ctx}");
    let names: Vec<&str> = files.iter().filter_map(|f| f.get("name")).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "directory sorted by name; {ctx}");
    for want in [
        "bootorder",
        "etc/boot-fail-wait",
        "etc/e820",
        "opt/vmrun/blob",
        "opt/vmrun/greeting",
    ] {
        assert!(names.contains(&want), "{want} missing; {ctx}");
    }
    for (i, f) in files.iter().enumerate() {
        assert_eq!(f.get_u64("select"), Some(0x20 + i as u64), "{ctx}");
    }
    let size = |n: &str| {
        files
            .iter()
            .find(|f| f.get("name") == Some(n))
            .and_then(|f| f.get_u64("size"))
    };
    // RAM below the hole + the KVM private pages (+ RAM above 4 GiB: none at 128 MiB).
    assert_eq!(size("etc/e820"), Some(2 * 20), "{ctx}");
    assert_eq!(size("opt/vmrun/blob"), Some(5), "{ctx}");
    let greeting = format!("hello from {board}");
    assert_eq!(
        size("opt/vmrun/greeting"),
        Some(greeting.len() as u64),
        "{ctx}"
    );
    // Contents: only the printable opt/ file.
    let data = tagged(&lines, "fwcfg data");
    assert_eq!(data.len(), 1, "{ctx}");
    assert_eq!(data[0].get("name"), Some("opt/vmrun/greeting"), "{ctx}");
    assert_eq!(data[0].get("value"), Some(greeting.as_str()), "{ctx}");
    let dma = tagged(&lines, "fwcfg dma ok");
    assert_eq!(dma.len(), 1, "{ctx}");
}

#[test]
fn probe_reads_fw_cfg_on_pc() {
    if kvm_usable() {
        check("pc");
    }
}

#[test]
fn probe_reads_fw_cfg_on_q35() {
    if kvm_usable() {
        check("q35");
    }
}

#[test]
fn probe_reads_fw_cfg_on_microvm() {
    if kvm_usable() {
        check("microvm");
    }
}

#[test]
fn no_fw_cfg_and_fwcfg_off() {
    if !kvm_usable() {
        return;
    }
    // microvm has no fw_cfg unless the machine file adds one.
    let m = "[machine]\nboard = \"microvm\"\nmemory = \"64MiB\"\n";
    let (status, lines, ctx) = boot("none", m, &["quick=1", "fwcfg=1"]);
    assert_eq!(status, Some(0), "{ctx}");
    assert_eq!(tagged(&lines, "fwcfg none").len(), 1, "{ctx}");
    // fwcfg=0: no fwcfg lines at all.
    let m = "[machine]\nboard = \"pc\"\nmemory = \"64MiB\"\n";
    let (status, lines, ctx) = boot("off", m, &["quick=1", "fwcfg=0"]);
    assert_eq!(status, Some(0), "{ctx}");
    assert!(!lines.iter().any(|l| l.tag.starts_with("fwcfg")), "{ctx}");
}
