//! Table-driven validation tests: start from a valid machine, break one thing, expect
//! exactly that error at exactly that place.

use std::path::{Path, PathBuf};

const BASE: &str = r#"[machine]
name = "t"
board = "pc"
memory = "512MiB"
cpus = 2

[boot]
kernel = "kernel.bin"

[[bus]]
id = "br0"
kind = "pci-bridge"

[[device]]
id = "net0"
kind = "nic"
bus = "br0"
mac = "52:54:00:12:34:56"

[[device]]
id = "disk0"
kind = "disk"
path = "disk.img"

[[device]]
id = "com2"
kind = "serial"
backend = "null"
"#;

/// A fresh directory per call: tests run in parallel and must not rewrite each other's
/// files while they are being read.
fn dir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("vmrun-check-errors-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("kernel.bin"), vmrun::boot::probe::probe_elf()).unwrap();
    std::fs::write(d.join("garbage.bin"), b"not a kernel").unwrap();
    std::fs::write(d.join("disk.img"), vec![0u8; 4096]).unwrap();
    std::fs::write(d.join("disk2.img"), vec![0u8; 4096]).unwrap();
    d
}

/// Applies the edits, checks, and returns the rendered diagnostics with positions.
fn errors(edits: &[(&str, &str)], dir: &Path) -> Vec<(String, String, String)> {
    let mut text = BASE.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "edit target {from:?} not in the base");
        text = text.replacen(from, to, 1);
    }
    let (sources, result) = vmrun::check_str("m.toml", &text, dir);
    match result {
        Ok(_) => Vec::new(),
        Err(diags) => diags
            .iter()
            .map(|d| {
                (
                    d.message.clone(),
                    sources.describe(&d.loc),
                    d.render(&sources),
                )
            })
            .collect(),
    }
}

#[test]
fn base_is_valid() {
    let d = dir();
    assert_eq!(errors(&[], &d), Vec::<(String, String, String)>::new());
}

#[test]
fn each_broken_field_gives_its_error() {
    let d = dir();
    // (what, (from, to) edits of the file, the message, where)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        ("unknown key", &[("memory = \"512MiB\"", "memroy = \"512MiB\"")], "unknown key `memroy` in [machine]", "m.toml:4:1"),
        ("bare number", &[("memory = \"512MiB\"", "memory = 512")], "needs a unit", "m.toml:4:10"),
        ("decimal unit", &[("512MiB", "512MB")], "ambiguous", "m.toml:4:10"),
        ("unknown board", &[("board = \"pc\"", "board = \"pcc\"")], "can't be \"pcc\"", "m.toml:3:9"),
        ("wrong type", &[("cpus = 2", "cpus = \"two\"")], "must be an integer", "m.toml:5:8"),
        ("topology not divisible", &[("cpus = 2", "cpus = 2\nsockets = 3")], "can't be split into 3 socket(s)", "m.toml:5:8"),
        ("topology mismatch", &[("cpus = 2", "cpus = 2\nsockets = 2\ncores = 2")], "sockets × cores × threads = 2 × 2 × 1 = 4, but cpus = 2", "m.toml:5:8"),
        ("too many cpus", &[("cpus = 2", "cpus = 300")], "too many for board pc", "m.toml:5:8"),
        ("memory too small", &[("512MiB", "1MiB")], "too small for board pc", "m.toml:4:10"),
        ("memory past address space", &[("512MiB", "2TiB")], "does not fit in the guest address space", "m.toml:4:10"),
        ("missing kernel", &[("kernel.bin", "nokernel.bin")], "not found", "m.toml:8:10"),
        ("kernel of an unknown format", &[("kernel.bin", "garbage.bin")], "can't be booted: not a bzImage", "m.toml:8:10"),
        (
            "sha256 mismatch",
            &[("kernel = \"kernel.bin\"", "kernel = { path = \"kernel.bin\", sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\" }")],
            "does not match its sha256",
            "m.toml:8:42",
        ),
        ("initrd without kernel", &[("kernel = \"kernel.bin\"", "initrd = \"kernel.bin\"")], "an initrd needs a kernel", "m.toml:8:10"),
        ("unknown bus", &[("bus = \"br0\"", "bus = \"br1\"")], "sits on unknown bus `br1`", "m.toml:17:7"),
        ("bridge on microvm", &[("board = \"pc\"", "board = \"microvm\""), ("bus = \"br0\"\n", "")], "has no PCI, so it can't have a pci-bridge", "m.toml:12:8"),
        ("root port on pc", &[("kind = \"pci-bridge\"", "kind = \"pcie-root-port\"")], "needs PCI Express", "m.toml:12:8"),
        ("bus cycle", &[("kind = \"pci-bridge\"", "kind = \"pci-bridge\"\nparent = \"br0\"")], "buses form a cycle", "m.toml:10:1"),
        ("e1000 on microvm", &[("board = \"pc\"", "board = \"microvm\""), ("[[bus]]\nid = \"br0\"\nkind = \"pci-bridge\"\n", ""), ("bus = \"br0\"\n", "model = \"e1000\"\n")], "an e1000 is a PCI card", "m.toml:14:9"),
        ("vga on microvm", &[("board = \"pc\"", "board = \"microvm\""), ("[[bus]]\nid = \"br0\"\nkind = \"pci-bridge\"\n", ""), ("bus = \"br0\"\n", ""), ("id = \"com2\"\nkind = \"serial\"\nbackend = \"null\"", "id = \"v\"\nkind = \"vga\"")], "a vga is a PCI device and board microvm has no PCI", "m.toml:23:8"),
        ("io conflict", &[("backend = \"null\"", "backend = \"null\"\nio = 0x3f8")], "overlap", "m.toml:29:6"),
        ("irq conflict", &[("backend = \"null\"", "backend = \"null\"\nirq = 8")], "GSI 8 of device `com2`", "m.toml:29:7"),
        ("pci address taken by the chipset", &[("bus = \"br0\"\n", "addr = \"01.0\"\n")], "taken by the pc chipset's PIIX3 ISA bridge", "m.toml:17:8"),
        ("function without function 0", &[("bus = \"br0\"\n", "bus = \"br0\"\naddr = \"04.1\"\n")], "nothing is at function 0", "m.toml:18:8"),
        ("duplicate id", &[("id = \"disk0\"", "id = \"net0\"")], "device id `net0` is used twice in this file", "m.toml:21:6"),
        ("missing id", &[("id = \"com2\"\n", "")], "a [[device]] has no `id`", "m.toml:25:1"),
        ("io out of range", &[("backend = \"null\"", "backend = \"null\"\nio = 0x10000")], "out of range", "m.toml:29:6"),
        ("bad mac", &[("52:54:00:12:34:56", "52:54:zz")], "not a MAC address", "m.toml:18:7"),
        ("multicast mac", &[("52:54:00:12:34:56", "01:54:00:12:34:56")], "multicast", "m.toml:18:7"),
        ("dgram without remote", &[("mac = \"52:54:00:12:34:56\"", "mac = \"52:54:00:12:34:56\"\nbackend = \"dgram\"\nlocal = \"a.sock\"")], "needs `local` and `remote`", "m.toml:19:11"),
        ("dgram of two kinds", &[("mac = \"52:54:00:12:34:56\"", "mac = \"52:54:00:12:34:56\"\nbackend = \"dgram\"\nlocal = \"a.sock\"\nremote = \"udp://127.0.0.1:5000\"")], "must both be socket paths or both udp://", "m.toml:21:10"),
        ("dgram bad url", &[("mac = \"52:54:00:12:34:56\"", "mac = \"52:54:00:12:34:56\"\nbackend = \"dgram\"\nlocal = \"udp://x\"\nremote = \"udp://y:1\"")], "neither a socket path nor udp://HOST:PORT", "m.toml:20:9"),
        ("local without dgram", &[("mac = \"52:54:00:12:34:56\"", "mac = \"52:54:00:12:34:56\"\nlocal = \"a.sock\"")], "only used by backend \"dgram\"", "m.toml:19:9"),
        ("duplicate mac", &[("path = \"disk.img\"", "path = \"disk.img\"\n\n[[device]]\nid = \"net1\"\nkind = \"nic\"\nmac = \"52:54:00:12:34:56\"")], "same MAC address as device `net0`", "m.toml:28:7"),
        ("missing disk image", &[("disk.img", "nodisk.img")], "disk image", "m.toml:23:8"),
        ("shared writable image", &[("path = \"disk.img\"", "path = \"disk.img\"\n\n[[device]]\nid = \"disk1\"\nkind = \"disk\"\npath = \"disk.img\"")], "use the same image", "m.toml:28:8"),
        ("two stdio serials", &[("backend = \"null\"", "backend = \"stdio\"")], "both read standard input", "m.toml:28:11"),
        ("unknown kind", &[("kind = \"nic\"", "kind = \"nicc\"")], "can't be \"nicc\"", "m.toml:16:8"),
        ("property of another kind", &[("mac = \"52:54:00:12:34:56\"", "vram = \"16MiB\"")], "unknown key `vram` in device `net0`", "m.toml:18:1"),
        ("addr on an ISA device", &[("backend = \"null\"", "backend = \"null\"\naddr = \"03.0\"")], "`addr` does not apply", "m.toml:29:8"),
        ("fixed port", &[("id = \"com2\"\nkind = \"serial\"\nbackend = \"null\"", "id = \"rtc\"\nio = 0x80")], "fixed at 0x70", "m.toml:27:6"),
        ("switch off unknown device", &[("id = \"com2\"\nkind = \"serial\"\nbackend = \"null\"", "id = \"com9\"\nenabled = false")], "no board default or inherited device has that id", "m.toml:26:6"),
        ("file backend without path", &[("backend = \"null\"", "backend = \"file\"")], "needs a `path`", "m.toml:28:11"),
        ("syntax error", &[("[boot]", "[boot")], "invalid TOML", "m.toml:7:6"),
        ("extends missing file", &[("[machine]", "extends = \"nope.toml\"\n[machine]")], "cannot read", "m.toml:1:11"),
        ("fw_cfg name outside opt/", &[("id = \"com2\"\nkind = \"serial\"\nbackend = \"null\"", "id = \"fw_cfg\"\nfiles = [{ name = \"etc/e820\", string = \"x\" }]")], "must be under \"opt/\"", "m.toml:27:19"),
        ("bad pci address", &[("bus = \"br0\"\n", "bus = \"br0\"\naddr = \"40.0\"\n")], "not a PCI address", "m.toml:18:8"),
    ];
    let mut failures = Vec::new();
    for (name, edits, want_msg, want_at) in cases {
        let errs = errors(edits, &d);
        let ok = errs.len() == 1 && errs[0].0.contains(want_msg) && errs[0].1 == *want_at;
        if !ok {
            let got: Vec<String> = errs.iter().map(|(_, at, r)| format!("{at}\n{r}")).collect();
            failures.push(format!(
                "case `{name}`: wanted one error containing {want_msg:?} at {want_at}, got {}:\n{}",
                errs.len(),
                got.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn several_errors_are_reported_together() {
    let d = dir();
    let errs = errors(
        &[
            ("memory = \"512MiB\"", "memroy = \"512MiB\""),
            ("kind = \"nic\"", "kind = \"nicc\""),
            ("backend = \"null\"", "backend = \"null\"\nio = 0x3f8"),
        ],
        &d,
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

#[test]
fn conflicts_name_both_parties() {
    let d = dir();
    let errs = errors(
        &[("backend = \"null\"", "backend = \"null\"\nio = 0x3f8")],
        &d,
    );
    let r = &errs[0].2;
    assert!(
        r.contains("device `com2`") && r.contains("device `com1`"),
        "{r}"
    );
    assert!(r.contains("<board pc defaults>"), "{r}");
}
