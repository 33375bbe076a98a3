//! The e1000 end to end, the probe's e1000 driver against vmrun's 82540EM: an e1000
//! (q35) and a virtio-net NIC (microvm) exchange frames over the lab switch in both
//! directions (each model sending, receiving and echoing), two e1000s on pc do the
//! same, and QEMU's e1000 (the reference model, with the same probe) talks to vmrun's
//! over the switch through QEMU's unix datagram netdev. Needs /dev/kvm; the QEMU test
//! needs qemu-system-x86_64.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::net::*;
use common::{have_tool, kvm_usable};
use vmrun::boot::probe::parse_report;

const E1000: &str = "model = \"e1000\"";

fn on_switch(sw: &Path, model: &str) -> String {
    format!(
        "{model}\nbackend = \"switch\"\nswitch = \"{}\"",
        sw.display()
    )
}

#[test]
fn e1000_and_virtio_net_on_a_lab_switch() {
    if !kvm_usable() {
        return;
    }
    let dir = tempdir("e1000-virtio");
    let sw = dir.join("sw");
    // The e1000 sends and receives, virtio-net echoes.
    let a = machine_on(
        &dir,
        "q35",
        "",
        "a",
        "52:54:00:00:aa:01",
        &on_switch(&sw, E1000),
    );
    let b = machine(&dir, "b", "52:54:00:00:bb:02", &on_switch(&sw, ""));
    exchange(&sw, a, b, "pci@00:");
    let log = std::fs::read_to_string(dir.join("a.log")).unwrap_or_default();
    assert!(log.contains(" model=e1000 "), "{log}");
    assert!(log.contains(" eeprom=ok"), "{log}");
    // And the other way round (new log files: a stale report must not be read).
    let a = machine(&dir, "c", "52:54:00:00:aa:01", &on_switch(&sw, ""));
    let b = machine_on(
        &dir,
        "q35",
        "",
        "d",
        "52:54:00:00:bb:02",
        &on_switch(&sw, E1000),
    );
    exchange(&sw, a, b, "mmio@");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_pc_e1000s_on_a_lab_switch() {
    if !kvm_usable() {
        return;
    }
    let dir = tempdir("e1000-pc");
    let sw = dir.join("sw");
    let nic = on_switch(&sw, E1000);
    let a = machine_on(&dir, "pc", "", "a", "52:54:00:00:aa:01", &nic);
    let b = machine_on(&dir, "pc", "", "b", "52:54:00:00:bb:02", &nic);
    exchange(&sw, a, b, "pci@00:");
    let log = std::fs::read_to_string(dir.join("b.log")).unwrap_or_default();
    assert!(
        log.contains(" phy=0x1410c20 "),
        "M88 PHY ID through MDIC: {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// QEMU's e1000 with the probe on q35, its netdev a unix datagram socket in the
/// switch directory named after its MAC (so the switch's ports reach it) sending to
/// `peer`'s port.
fn qemu(sw: &Path, log: &Path, mac: &str, peer: &str, opts: &[&str]) -> std::process::Child {
    let elf = sw.with_file_name("probe.elf");
    std::fs::write(&elf, vmrun::boot::probe::probe_elf()).unwrap();
    let port = |m: &str| sw.join(format!("{}.sock", m.replace(':', "")));
    let netdev = format!(
        "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
        port(mac).display(),
        port(peer).display()
    );
    let cmdline: Vec<&str> = QUICK.iter().chain(opts).copied().collect();
    Command::new("timeout")
        .arg("90")
        .arg("qemu-system-x86_64")
        .args(["-M", "q35", "-accel", "kvm", "-nodefaults", "-no-reboot"])
        .args(["-nographic", "-display", "none", "-m", "128M"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(&elf)
        .args(["-append", &cmdline.join(" ")])
        .args(["-netdev", &netdev])
        .args(["-device", &format!("e1000,netdev=n0,mac={mac}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn qemu_e1000_talks_to_vmrun_e1000() {
    if !kvm_usable() || !have_tool("qemu-system-x86_64", "qemu-system-x86") {
        return;
    }
    let dir = tempdir("e1000-qemu");
    let sw = dir.join("sw");
    std::fs::create_dir_all(&sw).unwrap();
    let (qmac, vmac) = ("52:54:00:00:0c:03", "52:54:00:00:bb:02");
    let (file, vlog) = machine_on(&dir, "q35", "", "v", vmac, &on_switch(&sw, E1000));
    // vmrun echoes what QEMU broadcasts; QEMU waits for the unicast answers.
    let mut v = spawn(&[], &file, &["netecho=4", "netwait=60000"]);
    wait_for_net(&vlog, &mut v);
    let qlog = dir.join("q.log");
    let q = qemu(
        &sw,
        &qlog,
        qmac,
        vmac,
        &["netsend=4", "netrecv=4", "netwait=60000"],
    );
    let q_out = q.wait_with_output().unwrap();
    let v = finish(v, &vlog);
    let qtext = std::fs::read_to_string(&qlog).unwrap_or_default();
    let qlines = parse_report(&qtext).unwrap_or_else(|e| panic!("{e}\n{qtext}"));
    let ctx = format!("qemu ({:?}):\n{qtext}\nvmrun:\n{}", q_out.status, v.ctx);
    let q_rx = qlines.iter().find(|l| l.tag == "net rx ok");
    assert_eq!(q_rx.and_then(|l| l.get_u64("frames")), Some(4), "{ctx}");
    assert_eq!(q_rx.and_then(|l| l.get("from")), Some(vmac), "{ctx}");
    let echo = line(&v, "net echo");
    assert_eq!(echo.get_u64("frames"), Some(4), "{ctx}");
    assert_eq!(echo.get("from"), Some(qmac), "{ctx}");
    let _ = std::fs::remove_dir_all(&dir);
}
