//! The machine file's keys, in one place: the reader rejects keys not listed here (with
//! a "did you mean" from these lists) and checks each value against its [`Ty`];
//! `vmrun schema` turns the same tables into a JSON Schema (`json_schema.rs`), one
//! branch per device kind; a test checks that the README documents every key.

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
    /// A bus or device id: 1-64 letters, digits, `-`, `_` or `.`.
    Id,
    /// A SHA-256 digest: 64 hex digits.
    Sha256,
    Bool,
    /// An integer in `[min, max]`.
    Int(i64, i64),
    /// A size with a binary unit: "512MiB".
    Size,
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// A host path, relative to the machine file.
    Path,
    /// A host file, as a path or `{ path, sha256 }`.
    Artifact,
    /// A PCI address "SS.F" (hex slot and function, like lspci).
    PciAddr,
    /// A MAC address "52:54:00:12:34:56".
    Mac,
    /// A table with these keys.
    Table(&'static [Field]),
    /// An array of tables with these keys.
    Tables(&'static [Field]),
}

impl Ty {
    /// How the README's reference tables name the type.
    pub fn readme_name(&self) -> String {
        match *self {
            Ty::Str => "string".into(),
            Ty::Id => "id".into(),
            Ty::Sha256 => "SHA-256".into(),
            Ty::Bool => "bool".into(),
            Ty::Int(a, b) if b > 0xffff => format!("integer ≥ {a}"),
            Ty::Int(a, b) => format!("integer {a}-{b}"),
            Ty::Size => "size".into(),
            Ty::Choice(c) => c
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(" \\| "),
            Ty::Path => "path".into(),
            Ty::Artifact => "artifact".into(),
            Ty::PciAddr => "PCI address".into(),
            Ty::Mac => "MAC".into(),
            Ty::Table(_) => "table".into(),
            Ty::Tables(_) => "array of tables".into(),
        }
    }
}

/// Whether `s` is a valid bus or device id (see [`Ty::Id`]).
pub fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub key: &'static str,
    pub ty: Ty,
    /// The default, as the README shows it ("" when the key is required or has none).
    pub default: &'static str,
    pub doc: &'static str,
    /// The table is an error without this key.
    pub required: bool,
}

pub const fn f(key: &'static str, ty: Ty, default: &'static str, doc: &'static str) -> Field {
    Field {
        key,
        ty,
        default,
        doc,
        required: false,
    }
}

/// A key the table must have.
const fn req(key: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        required: true,
        ..f(key, ty, "", doc)
    }
}

pub const BOARDS: &[&str] = &["pc", "q35", "microvm"];

pub const TOP: &[Field] = &[
    f(
        "extends",
        Ty::Path,
        "",
        "Another machine file this one builds on (see \"Extending a machine\").",
    ),
    f(
        "machine",
        Ty::Table(MACHINE),
        "",
        "The board, memory and CPUs.",
    ),
    f("boot", Ty::Table(BOOT), "", "What the machine boots."),
    f(
        "control",
        Ty::Table(CONTROL),
        "",
        "The machine's QMP control socket.",
    ),
    f(
        "bus",
        Ty::Tables(BUS),
        "",
        "Extra buses: PCI-PCI bridges and PCIe root ports.",
    ),
    f("device", Ty::Tables(DEVICE_COMMON), "", "Devices."),
];

pub const MACHINE: &[Field] = &[
    f(
        "name",
        Ty::Str,
        "the file name without .toml",
        "Name of the machine (also seeds derived MAC addresses).",
    ),
    f(
        "board",
        Ty::Choice(BOARDS),
        "\"pc\"",
        "pc (i440FX + PIIX), q35 (Q35 + ICH9, PCIe) or microvm (no PCI, virtio-mmio).",
    ),
    f(
        "memory",
        Ty::Size,
        "\"512MiB\"",
        "Guest RAM, with a unit: \"512MiB\", \"4GiB\".",
    ),
    f(
        "cpus",
        Ty::Int(1, 1024),
        "1, or sockets × cores × threads",
        "Number of vCPUs.",
    ),
    f("sockets", Ty::Int(1, 1024), "1", "CPU sockets."),
    f(
        "cores",
        Ty::Int(1, 1024),
        "cpus / (sockets × threads)",
        "Cores per socket.",
    ),
    f("threads", Ty::Int(1, 1024), "1", "Threads per core."),
    f(
        "defaults",
        Ty::Bool,
        "true",
        "Add the board's default devices (overridable by id).",
    ),
];

pub const BOOT: &[Field] = &[
    f(
        "kernel",
        Ty::Artifact,
        "none (boots the built-in probe)",
        "Linux kernel: bzImage, ELF vmlinux or PVH ELF.",
    ),
    f(
        "initrd",
        Ty::Artifact,
        "none",
        "Initial ramdisk (needs kernel).",
    ),
    f(
        "cmdline",
        Ty::Str,
        "\"\"",
        "Kernel command line; without a kernel, the built-in probe's options (e.g. \"idle=1\").",
    ),
    f(
        "firmware",
        Ty::Artifact,
        "none",
        "A BIOS image (SeaBIOS bios.bin), mapped below 4 GiB.",
    ),
    f(
        "snapshot",
        Ty::Artifact,
        "none (boots)",
        "Start from this snapshot directory (`vmrun ctl NAME snapshot DIR`) instead of booting; sha256 pins its manifest.json.",
    ),
];

pub const CONTROL: &[Field] = &[f(
    "qmp",
    Ty::Path,
    "$XDG_RUNTIME_DIR/vmrun/<name>/qmp.sock",
    "Where the QMP socket goes (`vmrun run --qmp PATH` wins over it).",
)];

pub const ARTIFACT: &[Field] = &[
    req("path", Ty::Path, "The file, relative to the machine file."),
    f(
        "sha256",
        Ty::Sha256,
        "none",
        "Expected SHA-256 (64 hex digits); a mismatch is an error.",
    ),
];

pub const BUS_KINDS: &[&str] = &["pci-bridge", "pcie-root-port"];

pub const BUS: &[Field] = &[
    req(
        "id",
        Ty::Id,
        "Name devices and other buses use to sit on this bus.",
    ),
    // Not required by the schema: an extending file may override a bus by id alone.
    f(
        "kind",
        Ty::Choice(BUS_KINDS),
        "",
        "pci-bridge (pc, q35) or pcie-root-port (q35, on pcie.0).",
    ),
    f(
        "parent",
        Ty::Str,
        "the board's root PCI bus",
        "The bus this bridge sits on.",
    ),
    f(
        "addr",
        Ty::PciAddr,
        "first free slot",
        "Slot.function on the parent bus.",
    ),
];

pub const DEVICE_KINDS: &[&str] = &[
    "serial", "rtc", "i8042", "debugcon", "pm", "fw_cfg", "vga", "nic", "disk", "pit", "pic",
    "ioapic",
];

pub const DEVICE_COMMON: &[Field] = &[
    req(
        "id",
        Ty::Id,
        "Unique name; a device with the id of an inherited or default device overrides it.",
    ),
    f(
        "kind",
        Ty::Choice(DEVICE_KINDS),
        "",
        "What the device is (may be left out when overriding).",
    ),
    f(
        "enabled",
        Ty::Bool,
        "true",
        "false removes an inherited or default device.",
    ),
    f(
        "bus",
        Ty::Str,
        "by kind: isa, the root PCI bus, or sysbus",
        "The bus the device sits on.",
    ),
    f(
        "addr",
        Ty::PciAddr,
        "first free slot",
        "PCI slot.function (PCI devices).",
    ),
    f(
        "io",
        Ty::Int(0, 0xffff),
        "by kind (COM1 0x3f8, ...)",
        "Base I/O port (ISA devices).",
    ),
    f(
        "irq",
        Ty::Int(0, 23),
        "by kind (COM1 4, ...)",
        "ISA IRQ / GSI (ISA and virtio-mmio devices).",
    ),
    f(
        "mmio",
        Ty::Int(0, i64::MAX),
        "next virtio-mmio slot",
        "MMIO base (virtio-mmio devices on microvm).",
    ),
];

pub const SERIAL_BACKENDS: &[&str] = &["stdio", "file", "socket", "pty", "null"];
pub const DEBUGCON_BACKENDS: &[&str] = &["stderr", "stdio", "file", "null"];
pub const NIC_MODELS: &[&str] = &["virtio-net", "e1000"];
pub const NIC_BACKENDS: &[&str] = &["none", "tap", "switch", "dgram"];

pub const SERIAL: &[Field] = &[
    f(
        "backend",
        Ty::Choice(SERIAL_BACKENDS),
        "\"stdio\" for com1, else \"null\"",
        "Where the port's bytes go.",
    ),
    f(
        "path",
        Ty::Path,
        "",
        "File (backend file) or unix socket (backend socket).",
    ),
    f(
        "log",
        Ty::Path,
        "none",
        "Also copy the output to this file.",
    ),
];
pub const RTC: &[Field] = &[f(
    "clock",
    Ty::Choice(&["utc", "localtime"]),
    "\"utc\"",
    "What the RTC's time is.",
)];
pub const DEBUGCON: &[Field] = &[
    f(
        "backend",
        Ty::Choice(DEBUGCON_BACKENDS),
        "\"stderr\"",
        "Where the bytes written to the port go.",
    ),
    f("path", Ty::Path, "", "File (backend file)."),
];
pub const FW_CFG_FILE: &[Field] = &[
    req(
        "name",
        Ty::Str,
        "fw_cfg file name, e.g. \"opt/org.example/config\" (at most 55 bytes).",
    ),
    f("path", Ty::Path, "", "Host file with the contents."),
    f("string", Ty::Str, "", "Inline contents (instead of path)."),
];
pub const FW_CFG: &[Field] = &[f(
    "files",
    Ty::Tables(FW_CFG_FILE),
    "[]",
    "Extra named files for the firmware.",
)];
pub const VGA: &[Field] = &[f(
    "vram",
    Ty::Size,
    "\"16MiB\"",
    "Video memory (power of two, 1-256 MiB).",
)];
pub const NIC: &[Field] = &[
    f(
        "model",
        Ty::Choice(NIC_MODELS),
        "\"virtio-net\"",
        "Network card model.",
    ),
    f(
        "mac",
        Ty::Mac,
        "derived from machine name + id",
        "MAC address.",
    ),
    f(
        "backend",
        Ty::Choice(NIC_BACKENDS),
        "\"none\"",
        "Where frames go.",
    ),
    f("tap", Ty::Str, "", "TAP interface name (backend tap)."),
    f(
        "switch",
        Ty::Path,
        "",
        "Lab switch directory (backend switch), shared by the NICs on it.",
    ),
    f(
        "local",
        Ty::Str,
        "",
        "Backend dgram: the socket this NIC binds, a path or \"udp://ADDR:PORT\".",
    ),
    f(
        "remote",
        Ty::Str,
        "",
        "Backend dgram: where its frames go, a path or \"udp://HOST:PORT\".",
    ),
];
pub const DISK: &[Field] = &[
    f("path", Ty::Path, "", "Disk image."),
    f(
        "readonly",
        Ty::Bool,
        "false",
        "Open read-only; guest writes fail.",
    ),
    f(
        "format",
        Ty::Choice(&["raw", "qcow2"]),
        "\"raw\"",
        "Image format; qcow2 (v2/v3) images are written too and may have backing files.",
    ),
    f(
        "overlay",
        Ty::Bool,
        "false",
        "Write to a qcow2 overlay over the image, never to the image: thrown away when the run ends; in a lab kept per node until `vmrun lab reset`.",
    ),
];

/// A device kind and the keys of its own (beyond [`DEVICE_COMMON`]).
#[derive(Debug)]
pub struct KindDef {
    pub name: &'static str,
    pub fields: &'static [Field],
}

const fn k(name: &'static str, fields: &'static [Field]) -> KindDef {
    KindDef { name, fields }
}

/// Every device kind with its keys, in [`DEVICE_KINDS`] order: the one table the
/// reader validates each device's keys and values against, and the JSON Schema's
/// per-kind branches come from.
pub const KINDS: &[KindDef] = &[
    k("serial", SERIAL),
    k("rtc", RTC),
    k("i8042", &[]),
    k("debugcon", DEBUGCON),
    k("pm", &[]),
    k("fw_cfg", FW_CFG),
    k("vga", VGA),
    k("nic", NIC),
    k("disk", DISK),
    k("pit", &[]),
    k("pic", &[]),
    k("ioapic", &[]),
];

/// The kind-specific keys of a device kind (none for an unknown kind).
pub fn device_fields(kind: &str) -> &'static [Field] {
    KINDS
        .iter()
        .find(|d| d.name == kind)
        .map_or(&[], |d| d.fields)
}

/// Every list of keys with a name for the README: (heading, fields).
pub fn sections() -> Vec<(String, &'static [Field])> {
    let mut v: Vec<(String, &'static [Field])> = vec![
        ("top level".into(), TOP),
        ("[machine]".into(), MACHINE),
        ("[boot]".into(), BOOT),
        ("[control]".into(), CONTROL),
        ("artifact table".into(), ARTIFACT),
        ("[[bus]]".into(), BUS),
        ("[[device]] (every kind)".into(), DEVICE_COMMON),
        ("fw_cfg files".into(), FW_CFG_FILE),
    ];
    for d in KINDS.iter().filter(|d| !d.fields.is_empty()) {
        v.push((format!("[[device]] kind = \"{}\"", d.name), d.fields));
    }
    v
}

pub use super::json_schema::json_schema;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_table_lists_every_kind_in_order() {
        let names: Vec<&str> = KINDS.iter().map(|d| d.name).collect();
        assert_eq!(names, DEVICE_KINDS);
    }

    #[test]
    fn ids() {
        assert!(is_id("com1") && is_id("a.b-c_d") && is_id(&"x".repeat(64)));
        assert!(!is_id("") && !is_id("a b") && !is_id("é") && !is_id(&"x".repeat(65)));
    }
}
