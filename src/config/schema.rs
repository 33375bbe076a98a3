//! The machine file's keys, in one place: the reader rejects keys not listed here (with
//! a "did you mean" from these lists), `vmrun schema` turns them into a JSON Schema, and
//! a test checks that the README documents every one of them.

use serde_json::{json, Map, Value as Json};

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
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
    /// An array of tables with these keys.
    Tables(&'static [Field]),
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub key: &'static str,
    pub ty: Ty,
    /// The default, as the README shows it ("" when the key is required or has none).
    pub default: &'static str,
    pub doc: &'static str,
}

const fn f(key: &'static str, ty: Ty, default: &'static str, doc: &'static str) -> Field {
    Field {
        key,
        ty,
        default,
        doc,
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
        Ty::Tables(MACHINE),
        "",
        "The board, memory and CPUs.",
    ),
    f("boot", Ty::Tables(BOOT), "", "What the machine boots."),
    f(
        "control",
        Ty::Tables(CONTROL),
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
        "Kernel command line (needs kernel).",
    ),
    f(
        "firmware",
        Ty::Artifact,
        "none",
        "A BIOS image (SeaBIOS bios.bin), mapped below 4 GiB.",
    ),
];

pub const CONTROL: &[Field] = &[f(
    "qmp",
    Ty::Path,
    "$XDG_RUNTIME_DIR/vmrun/<name>/qmp.sock",
    "Where the QMP socket goes (`vmrun run --qmp PATH` wins over it).",
)];

pub const ARTIFACT: &[Field] = &[
    f(
        "path",
        Ty::Path,
        "",
        "The file, relative to the machine file.",
    ),
    f(
        "sha256",
        Ty::Str,
        "none",
        "Expected SHA-256 (64 hex digits); a mismatch is an error.",
    ),
];

pub const BUS_KINDS: &[&str] = &["pci-bridge", "pcie-root-port"];

pub const BUS: &[Field] = &[
    f(
        "id",
        Ty::Str,
        "",
        "Name devices and other buses use to sit on this bus.",
    ),
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
    f(
        "id",
        Ty::Str,
        "",
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
pub const NIC_BACKENDS: &[&str] = &["none", "tap", "switch"];

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
    f(
        "name",
        Ty::Str,
        "",
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
        "Image format; qcow2 (v2/v3) is read-only.",
    ),
];

/// The kind-specific keys of a device kind.
pub fn device_fields(kind: &str) -> &'static [Field] {
    match kind {
        "serial" => SERIAL,
        "rtc" => RTC,
        "debugcon" => DEBUGCON,
        "fw_cfg" => FW_CFG,
        "vga" => VGA,
        "nic" => NIC,
        "disk" => DISK,
        _ => &[],
    }
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
    for k in DEVICE_KINDS {
        let fields = device_fields(k);
        if !fields.is_empty() {
            v.push((format!("[[device]] kind = \"{k}\""), fields));
        }
    }
    v
}

fn field_schema(fl: &Field) -> Json {
    let mut s = match fl.ty {
        Ty::Str => json!({"type": "string"}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Int(min, max) => json!({"type": "integer", "minimum": min, "maximum": max}),
        Ty::Size => json!({"type": "string", "pattern": "^[0-9]+ ?(B|KiB|MiB|GiB|TiB)$"}),
        Ty::Choice(c) => json!({"enum": c}),
        Ty::Path => json!({"type": "string", "minLength": 1}),
        Ty::Artifact => json!({"anyOf": [
            {"type": "string", "minLength": 1},
            object(ARTIFACT, &["path"]),
        ]}),
        Ty::PciAddr => json!({"type": "string", "pattern": "^[0-9a-fA-F]{1,2}(\\.[0-7])?$"}),
        Ty::Mac => json!({"type": "string", "pattern": "^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"}),
        Ty::Tables(fields) => json!({"type": "array", "items": object(fields, &[])}),
    };
    if let Json::Object(m) = &mut s {
        m.insert("description".into(), json!(fl.doc));
    }
    s
}

fn object(fields: &[Field], required: &[&str]) -> Json {
    let props: Map<String, Json> = fields
        .iter()
        .map(|fl| (fl.key.to_string(), field_schema(fl)))
        .collect();
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

/// The JSON Schema (draft-07) of a machine file, for editors (taplo, Even Better TOML).
pub fn json_schema() -> Json {
    let mut device_props: Vec<Field> = DEVICE_COMMON.to_vec();
    for k in DEVICE_KINDS {
        device_props.extend(device_fields(k).iter().copied());
    }
    device_props.dedup_by_key(|fl| fl.key);
    let mut seen = std::collections::BTreeSet::new();
    device_props.retain(|fl| seen.insert(fl.key));
    let common: Vec<&str> = DEVICE_COMMON.iter().map(|fl| fl.key).collect();
    let per_kind: Vec<Json> = DEVICE_KINDS
        .iter()
        .map(|k| {
            let mut keys = common.clone();
            keys.extend(device_fields(k).iter().map(|fl| fl.key));
            json!({
                "if": {"properties": {"kind": {"const": k}}, "required": ["kind"]},
                "then": {"propertyNames": {"enum": keys}}
            })
        })
        .collect();
    let mut device = object(&device_props, &["id"]);
    device["allOf"] = Json::Array(per_kind);
    let mut top = object(TOP, &[]);
    top["properties"]["machine"] = object(MACHINE, &[]);
    top["properties"]["boot"] = object(BOOT, &[]);
    top["properties"]["control"] = object(CONTROL, &[]);
    top["properties"]["bus"] = json!({"type": "array", "items": object(BUS, &["id", "kind"])});
    top["properties"]["device"] = json!({"type": "array", "items": device});
    top["$schema"] = json!("http://json-schema.org/draft-07/schema#");
    top["title"] = json!("vmrun machine file");
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_lists_every_device_key() {
        let s = json_schema();
        let props = &s["properties"]["device"]["items"]["properties"];
        for k in DEVICE_KINDS {
            for fl in device_fields(k) {
                assert!(props.get(fl.key).is_some(), "{k}.{}", fl.key);
            }
        }
        assert_eq!(
            s["properties"]["machine"]["properties"]["board"]["enum"],
            json!(BOARDS)
        );
    }
}
