//! Boots the embedded probe under QEMU (microvm, KVM) and checks its report.
//! This pins the probe itself against a reference VMM, independent of vmrun.
//! Skipped (with a message) when qemu-system-x86_64 or /dev/kvm is missing.

use std::path::PathBuf;
use std::process::Command;

use vmrun::boot::probe::{parse_report, probe_elf, ProbeLine};

mod common;

fn qemu_available() -> bool {
    common::kvm_usable() && common::have_tool("qemu-system-x86_64", "qemu-system-x86")
}

fn write_probe(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("vmrun-probe-{}-{name}.elf", std::process::id()));
    std::fs::write(&path, probe_elf()).unwrap();
    path
}

fn boot_microvm(name: &str, smp: u32, mem: &str, cmdline: &str) -> Vec<ProbeLine> {
    let elf = write_probe(name);
    let out = Command::new("timeout")
        .arg("60")
        .arg("qemu-system-x86_64")
        .args([
            "-M",
            "microvm",
            "-accel",
            "kvm",
            "-nodefaults",
            "-no-reboot",
        ])
        .args(["-nographic", "-serial", "stdio", "-display", "none"])
        .args(["-smp", &smp.to_string(), "-m", mem])
        .arg("-kernel")
        .arg(&elf)
        .args(["-append", cmdline])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&elf);
    let log = String::from_utf8_lossy(&out.stdout);
    parse_report(&log).unwrap_or_else(|e| panic!("{e}\n{log}"))
}

fn one<'a>(lines: &'a [ProbeLine], tag: &str) -> &'a ProbeLine {
    let found: Vec<_> = lines.iter().filter(|l| l.tag == tag).collect();
    assert_eq!(found.len(), 1, "expected one `{tag}` line in {lines:#?}");
    found[0]
}

#[test]
fn probe_reports_smp_memory_and_timer_under_qemu() {
    if !qemu_available() {
        return;
    }
    let lines = boot_microvm("smp", 2, "64M", "exit=triple cpus=2");
    assert_eq!(lines.first().map(|l| l.tag.as_str()), Some("hello"));
    assert_eq!(one(&lines, "cmdline").quoted, vec!["exit=triple cpus=2"]);
    let ram: Vec<_> = lines
        .iter()
        .filter(|l| l.tag == "mem" && l.get_u64("type") == Some(1))
        .collect();
    assert!(ram.len() >= 2, "{lines:#?}");
    assert!(
        lines
            .iter()
            .filter(|l| l.tag == "memtest")
            .all(|l| l.has_flag("ok")),
        "{lines:#?}"
    );
    let cpus = one(&lines, "cpus");
    assert_eq!(cpus.get_u64("count"), Some(2));
    assert!(cpus.has_flag("ok"));
    let apics: Vec<_> = lines
        .iter()
        .filter(|l| l.tag == "cpu")
        .filter_map(|l| l.get_u64("apic"))
        .collect();
    assert_eq!(apics, vec![0, 1]);
    let timer = one(&lines, "timer ok");
    assert_eq!(timer.get("path"), Some("ioapic"));
    assert!(timer.get_u64("ticks").unwrap_or(0) > 0);
    assert!(lines.iter().any(|l| l.tag == "done"));
    assert!(
        lines.iter().all(|l| !l.tag.starts_with("fault")),
        "{lines:#?}"
    );
}

#[test]
fn probe_quick_mode_and_fault_path() {
    if !qemu_available() {
        return;
    }
    let lines = boot_microvm("quick", 1, "64M", "quick=1 pio=100 crash=1 exit=triple");
    assert!(lines.iter().all(|l| l.tag != "memtest" && l.tag != "cpus"));
    assert_eq!(one(&lines, "pio").get_u64("count"), Some(100));
    let fault = one(&lines, "fault");
    assert_eq!(fault.get_u64("vector"), Some(6));
    assert_eq!(lines.last().map(|l| l.get("method")), Some(Some("triple")));
}
