//! Boots the probe (quick=1) on pc, q35 and microvm and checks its ACPI report: the
//! RSDP from start_info, every table in the XSDT with a good checksum, and a MADT
//! whose CPUs and APIC IDs are the machine's. Needs /dev/kvm; skips without it.

use vmrun::boot::probe::ProbeLine;

mod common;
use common::kvm_usable;

fn boot(name: &str, machine: &str) -> (Vec<ProbeLine>, String) {
    boot_with(name, machine, "")
}

fn boot_with(name: &str, machine: &str, boot_section: &str) -> (Vec<ProbeLine>, String) {
    let b = common::boot(
        "acpi",
        name,
        &format!("{machine}\n{boot_section}"),
        &["quick=1"],
    );
    let ctx = format!("{name}:\n{}", b.ctx());
    assert_eq!(b.status, Some(0), "{ctx}");
    (b.lines, ctx)
}

fn check(name: &str, machine: &str, want_sigs: &[&str], apic_ids: &str) {
    let (lines, ctx) = boot(name, machine);
    let acpi: Vec<&ProbeLine> = lines.iter().filter(|l| l.tag == "acpi").collect();
    assert_eq!(acpi.len(), 1, "{ctx}");
    assert_eq!(acpi[0].get_u64("rsdp"), Some(0xf_0000), "{ctx}");
    assert_eq!(acpi[0].get("rev"), Some("2"), "{ctx}");
    assert_eq!(acpi[0].get("oem"), Some("VMRUN "), "{ctx}");
    assert_eq!(acpi[0].get("found"), Some("start_info"), "{ctx}");
    let tables: Vec<&ProbeLine> = lines.iter().filter(|l| l.tag == "acpi table").collect();
    let mut sigs: Vec<&str> = tables.iter().filter_map(|l| l.get("sig")).collect();
    sigs.sort_unstable();
    let mut want = want_sigs.to_vec();
    want.sort_unstable();
    assert_eq!(sigs, want, "{ctx}");
    for t in &tables {
        let sum = t.get("checksum");
        let facs = t.get("sig") == Some("FACS");
        assert_eq!(sum, Some(if facs { "none" } else { "ok" }), "{ctx}");
        assert!(t.get_u64("len").unwrap_or(0) >= 36, "{ctx}");
    }
    let madt = lines
        .iter()
        .find(|l| l.tag == "acpi madt")
        .unwrap_or_else(|| panic!("no madt line; {ctx}"));
    assert_eq!(madt.get("apic_ids"), Some(apic_ids), "{ctx}");
    let n = apic_ids.split(',').count() as u64;
    assert_eq!(madt.get_u64("cpus"), Some(n), "{ctx}");
    assert_eq!(madt.get_u64("ioapic"), Some(0xfec0_0000), "{ctx}");
    assert_eq!(madt.get_u64("overrides"), Some(2), "{ctx}");
    // The fixed-feature power button and the SCI as `system_powerdown` raises it.
    let fadt = lines
        .iter()
        .find(|l| l.tag == "acpi fadt")
        .unwrap_or_else(|| panic!("no fadt line; {ctx}"));
    for (k, v) in [
        ("sci", "9"),
        ("gsi", "9"),
        ("trigger", "level"),
        ("polarity", "high"),
        ("pwrbtn", "fixed"),
    ] {
        assert_eq!(fadt.get(k), Some(v), "{k}: {ctx}");
    }
    assert_eq!(fadt.get_u64("pm1a_evt"), Some(0x600), "{ctx}");
}

const COMMON: &[&str] = &["XSDT", "FACP", "DSDT", "FACS", "APIC"];

#[test]
fn probe_sees_acpi_on_pc() {
    if !kvm_usable() {
        return;
    }
    let m = "[machine]\nboard = \"pc\"\nmemory = \"128MiB\"\ncpus = 2\n";
    check("pc", m, COMMON, "0,1");
}

#[test]
fn probe_sees_acpi_on_q35_with_sparse_apic_ids() {
    if !kvm_usable() {
        return;
    }
    // Two sockets of three cores: core IDs take 2 bits, so socket 1 starts at 4.
    let m = "[machine]\nboard = \"q35\"\nmemory = \"256MiB\"\ncpus = 6\nsockets = 2\ncores = 3\nthreads = 1\n";
    let mut sigs = COMMON.to_vec();
    sigs.push("MCFG");
    check("q35", m, &sigs, "0,1,2,4,5,6");
}

#[test]
fn probe_sees_acpi_on_microvm() {
    if !kvm_usable() {
        return;
    }
    let m = "[machine]\nboard = \"microvm\"\nmemory = \"64MiB\"\ncpus = 1\n";
    check("microvm", m, COMMON, "0");
}

/// SeaBIOS executes our `etc/table-loader` (RSDP allocated in the F-segment, tables
/// in high RAM, pointers and checksums patched), then boots the probe through fw_cfg.
#[test]
fn seabios_loads_the_tables_through_the_table_loader() {
    let bios = "/usr/share/seabios/bios-256k.bin";
    if !kvm_usable() {
        return;
    }
    if !common::have_file(bios, "seabios") {
        return;
    }
    let m = "[machine]\nboard = \"q35\"\nmemory = \"256MiB\"\ncpus = 2\n";
    let (lines, ctx) = boot_with("seabios", m, &format!("[boot]\nfirmware = \"{bios}\""));
    let acpi = lines.iter().find(|l| l.tag == "acpi").expect("acpi line");
    let rsdp = acpi.get_u64("rsdp").unwrap_or(0);
    assert!((0xe_0000..0x10_0000).contains(&rsdp), "{ctx}");
    let tables: Vec<&ProbeLine> = lines.iter().filter(|l| l.tag == "acpi table").collect();
    assert_eq!(tables.len(), 6, "{ctx}");
    for t in tables {
        assert!(
            t.get_u64("addr").unwrap_or(0) >= 0x10_0000,
            "tables in high RAM; {ctx}"
        );
        assert_ne!(t.get("checksum"), Some("bad"), "{ctx}");
    }
    let madt = lines.iter().find(|l| l.tag == "acpi madt").expect("madt");
    assert_eq!(madt.get("apic_ids"), Some("0,1"), "{ctx}");
}
