//! SeaBIOS (Debian's `seabios` package, which no one here wrote) on vmrun's boards:
//!
//! * pc + `bios.bin` under `vmrun probe`: SeaBIOS sizes RAM, counts the CPUs, finds
//!   fw_cfg, runs QEMU's `pvh.bin` from `genroms/` and boots the probe, whose report
//!   must be complete and end in an ACPI power-off.
//! * q35 + `bios-256k.bin` with 5 GiB (RAM above 4 GiB) and 4 vCPUs, no payload: it must
//!   reach its boot stage ("No bootable device").
//!
//! Real mode is emulated under nested KVM, so each boot takes seconds; this file holds
//! only these two. Skips (with a message) without /dev/kvm, SeaBIOS or the option ROM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use vmrun::boot::probe::parse_report;

mod common;

fn skip_unless(paths: &[&str]) -> bool {
    !common::kvm_usable()
        || !paths
            .iter()
            .all(|p| common::have_file(p, "seabios and qemu-system-data"))
}

fn machine(name: &str, body: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("vmrun-seabios-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dbg = dir.join("debugcon.log");
    let com1 = dir.join("com1.log");
    let file = dir.join("m.toml");
    let text = format!(
        "{body}\n[[device]]\nid = \"dbg\"\nkind = \"debugcon\"\nbackend = \"file\"\npath = \"{}\"\n\
         [[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n",
        dbg.display(),
        com1.display()
    );
    std::fs::write(&file, text).unwrap();
    (file, dbg, com1)
}

fn read(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

#[test]
fn pc_seabios_boots_the_probe() {
    if skip_unless(&["/usr/share/seabios/bios.bin", "/usr/share/qemu/pvh.bin"]) {
        return;
    }
    let (file, dbg, com1) = machine(
        "pc",
        "[machine]\nname = \"pc-seabios\"\nboard = \"pc\"\nmemory = \"512MiB\"\ncpus = 2\n\
         [boot]\nfirmware = \"/usr/share/seabios/bios.bin\"\n",
    );
    let t = Instant::now();
    let out = common::vmrun()
        .args(["probe", file.to_str().unwrap(), "--timeout", "120s"])
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let (log, report) = (read(&dbg), read(&com1));
    let ctx = format!(
        "after {secs:.1} s, status {:?}\nstderr: {}\n--- debugcon:\n{log}\n--- com1:\n{report}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("pc + SeaBIOS + probe: {secs:.1} s");
    // SeaBIOS's own view of the machine.
    assert!(log.contains("SeaBIOS (version"), "{ctx}");
    assert!(log.contains("Found QEMU fw_cfg"), "{ctx}");
    assert!(
        log.contains("qemu/e820: addr 0x0000000000000000 len 0x0000000020000000 [RAM]")
            || log.contains("RamSize: 0x20000000"),
        "512 MiB of RAM: {ctx}"
    );
    assert!(log.contains("Found 2 cpu(s)"), "{ctx}");
    assert!(log.contains("1: /rom@genroms/pvh.bin"), "bootorder: {ctx}");
    assert!(log.contains("Booting from ROM"), "{ctx}");
    // PCI through 0xCF8/0xCFC: the host bridge, PIIX3 ISA and PIIX4 PM functions.
    assert!(!log.contains("Detected non-PCI system"), "{ctx}");
    for f in [
        "00:00.0 id=8086:1237",
        "00:01.0 id=8086:7000",
        "00:01.3 id=8086:7113",
    ] {
        assert!(log.contains(&format!("PCI: init bdf={f}")), "{f}: {ctx}");
    }
    // The probe it booted.
    let lines = parse_report(&report).unwrap_or_else(|e| panic!("bad report ({e}): {ctx}"));
    let tag = |t: &'static str| {
        lines
            .iter()
            .filter(move |l| l.tag == t || l.tag.starts_with(&format!("{t} ")))
    };
    let cpus = tag("cpus")
        .next()
        .unwrap_or_else(|| panic!("no cpus line: {ctx}"));
    assert_eq!(cpus.get("count"), Some("2"), "{ctx}");
    assert_eq!(tag("done").count(), 1, "{ctx}");
    let exit = tag("exit")
        .next()
        .unwrap_or_else(|| panic!("no exit line: {ctx}"));
    assert_eq!(exit.get("method"), Some("acpi"), "{ctx}");
    assert_eq!(out.status.code(), Some(0), "poweroff exits 0: {ctx}");
}

#[test]
fn q35_seabios_reaches_its_boot_stage() {
    if skip_unless(&["/usr/share/seabios/bios-256k.bin"]) {
        return;
    }
    let (file, dbg, _) = machine(
        "q35",
        "[machine]\nname = \"q35-seabios\"\nboard = \"q35\"\nmemory = \"5GiB\"\ncpus = 4\n\
         [boot]\nfirmware = \"/usr/share/seabios/bios-256k.bin\"\n",
    );
    let t = Instant::now();
    // With nothing to boot SeaBIOS waits forever (etc/boot-fail-wait = -1): stop it once
    // its log says it got there.
    let shot = file.with_extension("png");
    let _ = std::fs::remove_file(&shot);
    let mut child = common::vmrun()
        .args([
            "run",
            file.to_str().unwrap(),
            "--timeout",
            "120s",
            "--screenshot-on-exit",
        ])
        .arg(&shot)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reached = loop {
        let log = read(&dbg);
        if log.contains("No bootable device") {
            break true;
        }
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let secs = t.elapsed().as_secs_f64();
    // SIGTERM: vmrun stops the machine and writes the screenshot on its way out.
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    let log = read(&dbg);
    eprintln!("q35 + SeaBIOS to its boot stage: {secs:.1} s");
    // SeaBIOS ran Debian's vgabios-stdvga.bin as the VGA's option ROM, and the screen
    // (text mode, the font vgabios loaded) shows SeaBIOS's banner on the first text row.
    assert!(log.contains("Start SeaVGABIOS"), "{log}");
    let png = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = png.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, bpp) = (info.width as usize, info.line_size / info.width as usize);
    let lit = |y0: usize, y1: usize| {
        (y0..y1)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| buf[y * info.line_size + x * bpp] > 0x80)
            .count()
    };
    assert_eq!(
        (info.width, info.height),
        (720, 400),
        "80x25 text mode, 9x16 cells"
    );
    assert!(lit(0, 16) > 200, "banner on text row 0");
    assert!(
        lit(384, 400) < 40,
        "the last row is empty but for the cursor"
    );
    assert!(reached, "vmrun ended before SeaBIOS's boot stage:\n{log}");
    assert!(log.contains("Found QEMU fw_cfg"), "{log}");
    // 5 GiB on q35: 2 GiB below the PCI hole, 3 GiB from 4 GiB.
    assert!(
        log.contains("addr 0x0000000000000000 len 0x0000000080000000 [RAM]"),
        "{log}"
    );
    assert!(
        log.contains("addr 0x0000000100000000 len 0x00000000c0000000 [RAM]"),
        "{log}"
    );
    assert!(log.contains("Found 4 cpu(s)"), "{log}");
    assert!(log.contains("Booting from Hard Disk"), "{log}");
    // PCI through 0xCF8/0xCFC and ECAM: the Q35 host bridge and the ICH9 LPC bridge.
    assert!(!log.contains("Detected non-PCI system"), "{log}");
    for f in ["00:00.0 id=8086:29c0", "00:1f.0 id=8086:2918"] {
        assert!(log.contains(&format!("PCI: init bdf={f}")), "{f}: {log}");
    }
}
