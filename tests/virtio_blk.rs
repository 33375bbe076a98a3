//! virtio-blk end to end: the probe writes a pattern to a temp raw image through
//! virtio-mmio (microvm) and virtio-pci (pc), reads it back, flushes; the test checks
//! the host file's bytes. A read-only disk refuses writes and stays unchanged; a
//! second vmrun cannot open a running VM's image for writing; data flushed before a
//! kill -9 is in the file. Needs /dev/kvm; says so and skips when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmrun::boot::probe::{parse_report, ProbeLine};

mod common;
use common::kvm_usable;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmrun-blk-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn image(path: &Path, len: usize, fill: u8) {
    std::fs::write(path, vec![fill; len]).unwrap();
}

/// A machine file with the given disks (path, readonly) and COM1 into `log`.
fn machine(dir: &Path, board: &str, disks: &[(&Path, bool)]) -> PathBuf {
    let mut t =
        format!("[machine]\nname = \"blk\"\nboard = \"{board}\"\nmemory = \"64MiB\"\ncpus = 1\n");
    for (i, (p, ro)) in disks.iter().enumerate() {
        t += &format!(
            "\n[[device]]\nid = \"disk{i}\"\nkind = \"disk\"\npath = \"{}\"\nreadonly = {ro}\n",
            p.display()
        );
    }
    t += &format!(
        "\n[[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n",
        dir.join("com1.log").display()
    );
    let f = dir.join("m.toml");
    std::fs::write(&f, t).unwrap();
    f
}

fn vmrun(m: &Path, opts: &str) -> Command {
    let mut c = common::vmrun();
    c.args(["probe", &m.display().to_string(), "--timeout", "60s", "--"]);
    c.args(opts.split_whitespace());
    c
}

fn report(dir: &Path) -> (String, Vec<ProbeLine>) {
    let mut log = std::fs::read_to_string(dir.join("com1.log")).unwrap_or_default();
    // The probe may be mid-line while a test polls: parse whole lines only.
    log.truncate(log.rfind('\n').map_or(0, |i| i + 1));
    let lines = parse_report(&log).unwrap_or_else(|e| panic!("bad report ({e}):\n{log}"));
    (log, lines)
}

fn tagged<'a>(lines: &'a [ProbeLine], tag: &str) -> Vec<&'a ProbeLine> {
    lines.iter().filter(|l| l.tag == tag).collect()
}

fn check_pattern(path: &Path, sectors: usize) {
    let f = std::fs::read(path).unwrap();
    common::assert_blk_pattern(&f, sectors, 0, &path.display().to_string());
}

const QUICK: &str = "quick=1 smp=0 fwcfg=0 net=0";

fn rw_and_ro(board: &str, dev_prefix: &str) {
    let dir = tmpdir(board);
    let (rw, ro) = (dir.join("rw.img"), dir.join("ro.img"));
    image(&rw, 1 << 20, 0);
    image(&ro, 64 << 10, 0x5a);
    let m = machine(&dir, board, &[(&rw, false), (&ro, true)]);
    let out = vmrun(&m, &format!("{QUICK} blksectors=16"))
        .output()
        .unwrap();
    let (log, lines) = report(&dir);
    let ctx = format!("{log}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let devs = tagged(&lines, "blk");
    assert_eq!(devs.len(), 2, "{ctx}");
    assert!(devs[0].get("dev").unwrap().starts_with(dev_prefix), "{ctx}");
    assert_eq!(devs[0].get_u64("capacity"), Some(2048), "{ctx}");
    assert_eq!(devs[0].get_u64("ro"), Some(0), "{ctx}");
    assert_eq!(devs[0].get("id"), Some("disk0"), "{ctx}");
    assert_eq!(devs[1].get_u64("capacity"), Some(128), "{ctx}");
    assert_eq!(devs[1].get_u64("ro"), Some(1), "{ctx}");
    assert_eq!(
        tagged(&lines, "blk rw ok")[0].get_u64("sectors"),
        Some(16),
        "{ctx}"
    );
    assert_eq!(
        tagged(&lines, "blk ro ok")[0].get_u64("status"),
        Some(1),
        "{ctx}"
    );
    check_pattern(&rw, 16);
    assert!(
        std::fs::read(&ro).unwrap().iter().all(|&b| b == 0x5a),
        "read-only image changed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn microvm_mmio_read_write_and_readonly() {
    if !kvm_usable() {
        return;
    }
    rw_and_ro("microvm", "mmio@0xfeb0");
}

#[test]
fn pc_pci_read_write_and_readonly() {
    if !kvm_usable() {
        return;
    }
    rw_and_ro("pc", "pci@00:");
}

#[test]
fn q35_pci_read_write_and_readonly() {
    if !kvm_usable() {
        return;
    }
    rw_and_ro("q35", "pci@00:");
}

#[test]
fn lock_and_kill_after_flush() {
    if !kvm_usable() {
        return;
    }
    let dir = tmpdir("lock");
    let img = dir.join("disk.img");
    image(&img, 256 << 10, 0);
    let m = machine(&dir, "microvm", &[(&img, false)]);
    // The first VM writes, flushes, reports, then halts (exit=halt) until killed.
    let mut first = vmrun(&m, &format!("{QUICK} exit=halt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !report(&dir).1.iter().any(|l| l.tag.starts_with("blk rw")) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no blk rw line: {}",
            report(&dir).0
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A second VM with the same image (other serial log) must refuse to start. It has
    // the first one's name, so it registers in another runtime directory.
    let dir2 = tmpdir("lock2");
    let m2 = machine(&dir2, "microvm", &[(&img, false)]);
    let out = vmrun(&m2, QUICK)
        .env("XDG_RUNTIME_DIR", &dir2)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "second VM ran: {err}");
    assert!(
        err.contains(&img.display().to_string()) && err.contains("in use"),
        "{err}"
    );
    // Read-only users are refused too while a writer holds the image.
    let m3 = machine(&dir2, "microvm", &[(&img, true)]);
    let ro = vmrun(&m3, QUICK)
        .env("XDG_RUNTIME_DIR", &dir2)
        .output()
        .unwrap();
    assert_ne!(ro.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ro.stderr).contains("in use"));

    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(
        tagged(&report(&dir).1, "blk rw ok").len() == 1,
        "{}",
        report(&dir).0
    );
    check_pattern(&img, 8);
    // The lock went with the process.
    let out = vmrun(&m2, QUICK).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

/// virtirq=msix|intx: the probe waits for each request's completion interrupt
/// (MSI-X to its LAPIC, or INTx through the IOAPIC pin the MP table names).
fn irq_modes(board: &str, gsi: u64) {
    let dir = tmpdir(&format!("irq-{board}"));
    let img = dir.join("rw.img");
    image(&img, 1 << 20, 0);
    let m = machine(&dir, board, &[(&img, false)]);
    for mode in ["msix", "intx"] {
        let out = vmrun(&m, &format!("{QUICK} pci=0 virtirq={mode}"))
            .output()
            .unwrap();
        let (log, lines) = report(&dir);
        let ctx = format!("{log}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{ctx}");
        assert_eq!(tagged(&lines, "blk rw ok").len(), 1, "{ctx}");
        let irq = tagged(&lines, &format!("blk irq {mode} ok"));
        assert_eq!(irq.len(), 1, "{ctx}");
        // GET_ID, write, read, flush: at least one interrupt each ("ok": none missed;
        // under load a level-triggered line may be taken once more).
        assert!(irq[0].get_u64("count").is_some_and(|c| c >= 4), "{ctx}");
        if mode == "intx" {
            assert_eq!(irq[0].get_u64("gsi"), Some(gsi), "{ctx}");
        }
    }
    check_pattern(&img, 8);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn q35_completion_interrupts_msix_and_intx() {
    if !kvm_usable() {
        return;
    }
    // Slot 2, INTA: PIRQ C on q35 = GSI 18.
    irq_modes("q35", 18);
}

#[test]
fn pc_completion_interrupts_msix_and_intx() {
    if !kvm_usable() {
        return;
    }
    // Slot 3, INTA: PIRQ C on PIIX = GSI 11.
    irq_modes("pc", 11);
}

/// machines/full.toml's topology: a disk behind a PCI bridge behind a root port, a NIC
/// behind the other root port. The probe numbers the buses (1, 2, 3), programs the
/// bridge windows around the BARs it assigns, writes and reads the disk (waiting for
/// MSI-X interrupts) and sends frames into a lab switch.
#[test]
fn q35_devices_behind_root_ports_and_a_bridge() {
    if !kvm_usable() {
        return;
    }
    let dir = tmpdir("bridges");
    let img = dir.join("data.img");
    image(&img, 1 << 20, 0);
    let sw = dir.join("sw");
    let log = dir.join("com1.log");
    let m = dir.join("m.toml");
    let text = format!(
        "[machine]\nname = \"bridges\"\nboard = \"q35\"\nmemory = \"64MiB\"\ncpus = 1\n\n\
         [[bus]]\nid = \"rp0\"\nkind = \"pcie-root-port\"\naddr = \"1c.0\"\n\n\
         [[bus]]\nid = \"rp1\"\nkind = \"pcie-root-port\"\naddr = \"1c.1\"\n\n\
         [[bus]]\nid = \"br0\"\nkind = \"pci-bridge\"\nparent = \"rp1\"\n\n\
         [[device]]\nid = \"net0\"\nkind = \"nic\"\nbus = \"rp0\"\nmac = \"52:54:00:00:0b:01\"\n\
         backend = \"switch\"\nswitch = \"{}\"\n\n\
         [[device]]\nid = \"data\"\nkind = \"disk\"\nbus = \"br0\"\npath = \"{}\"\n\n\
         [[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n",
        sw.display(),
        img.display(),
        log.display()
    );
    std::fs::write(&m, text).unwrap();
    let out = vmrun(
        &m,
        "memtest=0 smp=0 timer=0 rtc=0 fwcfg=0 netsend=3 virtirq=msix",
    )
    .output()
    .unwrap();
    let (log, lines) = report(&dir);
    let ctx = format!("{log}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let blk = tagged(&lines, "blk");
    assert_eq!(blk.len(), 1, "{ctx}");
    assert_eq!(blk[0].get("dev"), Some("pci@03:00.0"), "{ctx}");
    assert_eq!(tagged(&lines, "blk rw ok").len(), 1, "{ctx}");
    assert_eq!(tagged(&lines, "blk irq msix ok").len(), 1, "{ctx}");
    let net = tagged(&lines, "net");
    assert_eq!(net.len(), 1, "{ctx}");
    assert_eq!(net[0].get("dev"), Some("pci@01:00.0"), "{ctx}");
    assert_eq!(net[0].get("link"), Some("up"), "{ctx}");
    assert_eq!(
        tagged(&lines, "net tx")[0].get_u64("frames"),
        Some(3),
        "{ctx}"
    );
    // pci.c's scan afterwards sees the same numbering.
    let bridges = tagged(&lines, "pci bridge");
    assert_eq!(bridges.len(), 3, "{ctx}");
    check_pattern(&img, 8);
    let _ = std::fs::remove_dir_all(&dir);
}
