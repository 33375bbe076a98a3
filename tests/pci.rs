//! PCI from the guest's side: the probe scans the buses through configuration
//! mechanism #1 on `pc` and `q35` with a topology like machines/full.toml (PCIe root
//! ports or PCI bridges, a bridge behind one of them), numbers the bridges as firmware
//! does, and reports every function; the test checks the host bridge, the ISA/LPC
//! bridge, the bridges with the bus numbers the spec expects, and the devices the
//! machine puts on those buses. Needs /dev/kvm; says so and skips when it is missing.

use vmrun::boot::probe::{parse_report, ProbeLine};

mod common;
use common::kvm_usable;

fn machine(board: &str, port: &str) -> String {
    format!(
        "[machine]\nboard = \"{board}\"\nmemory = \"256MiB\"\ncpus = 1\n\
         [[bus]]\nid = \"rp0\"\nkind = \"{port}\"\naddr = \"1c.0\"\n\
         [[bus]]\nid = \"rp1\"\nkind = \"{port}\"\naddr = \"1c.1\"\n\
         [[bus]]\nid = \"br0\"\nkind = \"pci-bridge\"\nparent = \"rp1\"\n"
    )
}

fn probe(name: &str, machine: &str, extra: &[&str]) -> (Option<i32>, Vec<ProbeLine>, String) {
    let dir = std::env::temp_dir().join(format!("vmrun-pci-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("com1.log");
    let file = dir.join("m.toml");
    let text = format!(
        "{machine}\n[[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n",
        log.display()
    );
    std::fs::write(&file, text).unwrap();
    let out = common::vmrun()
        .args(["probe", file.to_str().unwrap(), "--timeout", "60s", "--"])
        .args(["quick=1", "fwcfg=0", "net=0", "blk=0", "vga=0"])
        .args(extra)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    let lines =
        parse_report(&report).unwrap_or_else(|e| panic!("{name}: bad report ({e}):\n{report}"));
    let ctx = format!("{report}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), lines, ctx)
}

struct Scan<'a> {
    lines: &'a [ProbeLine],
    ctx: &'a str,
}

impl<'a> Scan<'a> {
    fn dev(&self, bdf: &str) -> &'a ProbeLine {
        self.lines
            .iter()
            .find(|l| l.tag == "pci dev" && l.get("bdf") == Some(bdf))
            .unwrap_or_else(|| panic!("no function {bdf}:\n{}", self.ctx))
    }
    fn bridge(&self, bdf: &str) -> (u32, u32) {
        let l = self
            .lines
            .iter()
            .find(|l| l.tag == "pci bridge" && l.get("bdf") == Some(bdf))
            .unwrap_or_else(|| panic!("no bridge {bdf}:\n{}", self.ctx));
        let n = |k| l.get(k).and_then(|v| v.parse().ok()).unwrap();
        (n("secondary"), n("subordinate"))
    }
    fn ids(&self, bdf: &str) -> (&str, &str, &str) {
        let d = self.dev(bdf);
        (
            d.get("vendor").unwrap(),
            d.get("device").unwrap(),
            d.get("class").unwrap(),
        )
    }
}

#[test]
fn probe_scans_pc_and_q35() {
    if !kvm_usable() {
        return;
    }
    for (board, port) in [("pc", "pci-bridge"), ("q35", "pcie-root-port")] {
        let (status, lines, ctx) = probe(board, &machine(board, port), &[]);
        assert_eq!(status, Some(0), "{board}: {ctx}");
        let s = Scan {
            lines: &lines,
            ctx: &ctx,
        };
        let port_id = if board == "q35" { "0xc" } else { "0x1" };
        if board == "pc" {
            assert_eq!(s.ids("00:00.0"), ("0x8086", "0x1237", "0x060000"), "{ctx}");
            assert_eq!(s.ids("00:01.0"), ("0x8086", "0x7000", "0x060100"), "{ctx}");
            assert_eq!(s.ids("00:01.3"), ("0x8086", "0x7113", "0x068000"), "{ctx}");
        } else {
            assert_eq!(s.ids("00:00.0"), ("0x8086", "0x29c0", "0x060000"), "{ctx}");
            assert_eq!(s.ids("00:1f.0"), ("0x8086", "0x2918", "0x060100"), "{ctx}");
        }
        assert_eq!(s.ids("00:1c.0"), ("0x1b36", port_id, "0x060400"), "{ctx}");
        assert_eq!(s.ids("00:1c.1"), ("0x1b36", port_id, "0x060400"), "{ctx}");
        assert_eq!(s.ids("02:00.0"), ("0x1b36", "0x1", "0x060400"), "{ctx}");
        assert_eq!(s.dev("00:1c.0").get("header"), Some("1"));
        // Depth-first numbering: the spec's numbers.
        assert_eq!(s.bridge("00:1c.0"), (1, 1), "{ctx}");
        assert_eq!(s.bridge("00:1c.1"), (2, 3), "{ctx}");
        assert_eq!(s.bridge("02:00.0"), (3, 3), "{ctx}");
        let total = lines.iter().find(|l| l.tag == "pci").expect("pci summary");
        assert_eq!(total.get("buses"), Some("4"), "{ctx}");
        // Every function reported is counted.
        let devs = lines.iter().filter(|l| l.tag == "pci dev").count();
        assert_eq!(
            total.get("functions"),
            Some(devs.to_string().as_str()),
            "{ctx}"
        );
    }
}

#[test]
fn pci_0_skips_the_scan_and_microvm_has_none() {
    if !kvm_usable() {
        return;
    }
    let (status, lines, ctx) = probe("off", &machine("pc", "pci-bridge"), &["pci=0"]);
    assert_eq!(status, Some(0), "{ctx}");
    assert!(!lines.iter().any(|l| l.tag.starts_with("pci")), "{ctx}");
    let micro = "[machine]\nboard = \"microvm\"\nmemory = \"128MiB\"\ncpus = 1\n";
    let (_, lines, ctx) = probe("microvm", micro, &["exit=triple"]);
    assert!(lines.iter().any(|l| l.tag == "pci none"), "{ctx}");
}
