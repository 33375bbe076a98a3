//! The typed machine file: what the user wrote (after `extends` and board defaults
//! are merged in), every value with its location. Nothing here is checked against
//! anything else yet; that is `spec`'s job.

use std::path::PathBuf;

use super::node::Node;
use super::origin::Origins;
use super::reader::{Artifact, PciAddr, Sp, TableReader};
use super::schema::{self, Field};
use super::source::{Diagnostic, Loc, Sources};
use crate::board::BoardKind;

#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// The start of the top machine file, for errors about what is missing.
    pub anchor: Loc,
    /// Sources with this id or higher are the board's built-in texts.
    pub board_src_start: u32,
    /// Where the board's devices came from: [`Origins::relocate`] moves an error found
    /// in a board's text to the user's line.
    pub origins: Origins,
    pub name: Sp<String>,
    pub board: Sp<BoardKind>,
    pub memory: Sp<u64>,
    pub cpus: Option<Sp<i64>>,
    pub sockets: Option<Sp<i64>>,
    pub cores: Option<Sp<i64>>,
    pub threads: Option<Sp<i64>>,
    pub boot: Boot,
    /// `[control] qmp`, absolute.
    pub qmp: Option<Sp<PathBuf>>,
    pub buses: Vec<BusCfg>,
    pub devices: Vec<DeviceCfg>,
    /// Ids of buses that could not be read (already reported): devices naming them
    /// are not reported again as being on an unknown bus.
    pub broken_buses: Vec<String>,
    /// Devices switched off with `enabled = false`: their kind (where known) and where
    /// `enabled` was written, so check can refuse switching off what can't be.
    pub disabled: Vec<DisabledCfg>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DisabledCfg {
    pub id: String,
    pub kind: Option<String>,
    pub enabled: Loc,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Boot {
    pub kernel: Option<Artifact>,
    pub initrd: Option<Artifact>,
    pub cmdline: Option<Sp<String>>,
    pub firmware: Option<Artifact>,
    pub snapshot: Option<Artifact>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BusCfg {
    pub loc: Loc,
    pub id: Sp<String>,
    pub kind: Sp<String>,
    pub parent: Option<Sp<String>>,
    pub addr: Option<Sp<PciAddr>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceCfg {
    /// Where the device's table is (for a board default: in the board's source).
    pub loc: Loc,
    pub id: Sp<String>,
    pub kind: Sp<String>,
    pub bus: Option<Sp<String>>,
    pub addr: Option<Sp<PciAddr>>,
    pub io: Option<Sp<i64>>,
    pub irq: Option<Sp<i64>>,
    pub mmio: Option<Sp<i64>>,
    pub props: Props,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Props {
    Serial {
        backend: Option<Sp<String>>,
        path: Option<Sp<PathBuf>>,
        log: Option<Sp<PathBuf>>,
    },
    Rtc {
        clock: Option<Sp<String>>,
    },
    Debugcon {
        backend: Option<Sp<String>>,
        path: Option<Sp<PathBuf>>,
    },
    FwCfg {
        files: Vec<FwCfgFile>,
    },
    Vga {
        vram: Option<Sp<u64>>,
    },
    Nic {
        model: Option<Sp<String>>,
        mac: Option<Sp<[u8; 6]>>,
        backend: Option<Sp<String>>,
        tap: Option<Sp<String>>,
        switch: Option<Sp<PathBuf>>,
        local: Option<Sp<String>>,
        remote: Option<Sp<String>>,
    },
    Disk {
        path: Option<Sp<PathBuf>>,
        readonly: Option<Sp<bool>>,
        format: Option<Sp<String>>,
        overlay: Option<Sp<bool>>,
    },
    /// Kinds without properties: i8042, pm, pit, pic, ioapic.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FwCfgFile {
    pub loc: Loc,
    pub name: Sp<String>,
    pub contents: FwCfgContents,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FwCfgContents {
    Path(Sp<PathBuf>),
    String(Sp<String>),
}

/// Reads the merged document. `default_name` names the machine when the file doesn't.
pub fn read(
    doc: &Node,
    default_name: &str,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> Option<Machine> {
    let mut top = TableReader::new(doc, "the machine file", schema::TOP, sources, diags)?;
    let anchor = Loc::new(doc.loc.src, 0..0);
    let _ = top.path("extends");
    let machine_node = top.node("machine");
    let boot_node = top.node("boot");
    let control_node = top.node("control");
    let bus_nodes = top.tables("bus");
    let device_nodes = top.tables("device");
    top.finish();

    let empty = Node {
        value: super::node::Value::Table(Default::default()),
        loc: anchor.clone(),
    };
    let mut m = TableReader::new(
        machine_node.unwrap_or(&empty),
        "[machine]",
        schema::MACHINE,
        sources,
        diags,
    )?;
    let name = m
        .str("name")
        .unwrap_or_else(|| Sp::new(default_name.to_string(), anchor.clone()));
    if name.value.is_empty() {
        m.error(
            Diagnostic::new(&name.loc, "the machine's `name` can't be empty").label("empty name"),
        );
    }
    let board = m
        .choice("board")
        .map(|b| Sp::new(BoardKind::parse(&b.value), b.loc));
    let memory = m
        .size("memory")
        .unwrap_or_else(|| Sp::new(512 << 20, anchor.clone()));
    let (cpus, sockets, cores, threads) = (
        m.int("cpus"),
        m.int("sockets"),
        m.int("cores"),
        m.int("threads"),
    );
    let _ = m.bool("defaults");
    m.finish();
    let board = match board {
        Some(Sp {
            value: Some(b),
            loc,
        }) => Sp::new(b, loc),
        Some(_) => return None,
        None => Sp::new(BoardKind::Pc, anchor.clone()),
    };

    let boot = match boot_node {
        Some(node) => read_boot(node, sources, diags).unwrap_or_default(),
        None => Boot::default(),
    };
    let qmp = control_node.and_then(|n| read_control(n, sources, diags));
    let mut buses = Vec::new();
    let mut broken_buses = Vec::new();
    for n in bus_nodes {
        match read_bus(n, sources, diags) {
            Some(b) => buses.push(b),
            None => {
                if let super::node::Value::Table(t) = &n.value {
                    broken_buses.extend(t.str("id").map(str::to_string));
                }
            }
        }
    }
    let mut disabled = Vec::new();
    let devices = device_nodes
        .into_iter()
        .filter_map(|n| read_device(n, sources, diags, &mut disabled))
        .collect();
    Some(Machine {
        origins: Origins::none(anchor.clone()),
        anchor,
        board_src_start: u32::MAX,
        name,
        board,
        memory,
        cpus,
        sockets,
        cores,
        threads,
        boot,
        qmp,
        buses,
        devices,
        broken_buses,
        disabled,
    })
}

fn read_boot(node: &Node, sources: &Sources, diags: &mut Vec<Diagnostic>) -> Option<Boot> {
    let mut t = TableReader::new(node, "[boot]", schema::BOOT, sources, diags)?;
    let boot = Boot {
        kernel: t.artifact("kernel"),
        initrd: t.artifact("initrd"),
        cmdline: t.str("cmdline"),
        firmware: t.artifact("firmware"),
        snapshot: t.artifact("snapshot"),
    };
    t.finish();
    Some(boot)
}

fn read_control(
    node: &Node,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> Option<Sp<PathBuf>> {
    let mut t = TableReader::new(node, "[control]", schema::CONTROL, sources, diags)?;
    let qmp = t.path("qmp");
    t.finish();
    qmp
}

/// `id` of a bus or device table: required, non-empty, and made of characters that
/// are safe in DOT, TOML and file names.
fn read_id(t: &mut TableReader<'_, '_>) -> Option<Sp<String>> {
    let Some(id) = t.str("id") else {
        if t.node("id").is_none() {
            let msg = format!("{} has no `id`", t.what);
            let loc = t.loc.clone();
            t.error(Diagnostic::new(&loc, msg).label("add `id = \"...\"`"));
        }
        return None;
    };
    if !schema::is_id(&id.value) {
        let msg = format!(
            "bad id \"{}\": use 1-64 letters, digits, `-`, `_` or `.`",
            id.value.escape_debug()
        );
        t.error(Diagnostic::new(&id.loc, msg).label("bad id"));
        return None;
    }
    Some(id)
}

fn read_bus(node: &Node, sources: &Sources, diags: &mut Vec<Diagnostic>) -> Option<BusCfg> {
    let mut t = TableReader::new(node, "a [[bus]]", schema::BUS, sources, diags)?;
    let id = read_id(&mut t);
    if let Some(id) = &id {
        t.what = format!("bus `{}`", id.value);
    }
    let kind = t.choice("kind");
    if kind.is_none() && t.node("kind").is_none() {
        let msg = format!("{} has no `kind`", t.what);
        let loc = t.loc.clone();
        t.error(
            Diagnostic::new(&loc, msg).label("add `kind = \"pci-bridge\"` or \"pcie-root-port\""),
        );
    }
    let parent = t.str("parent");
    let addr = t.pci_addr("addr");
    let loc = t.loc.clone();
    t.finish();
    Some(BusCfg {
        loc,
        id: id?,
        kind: kind?,
        parent,
        addr,
    })
}

fn kind_owning(key: &str) -> Option<String> {
    let kinds: Vec<&str> = schema::DEVICE_KINDS
        .iter()
        .copied()
        .filter(|k| schema::device_fields(k).iter().any(|f| f.key == key))
        .collect();
    (!kinds.is_empty()).then(|| format!("`{key}` is a property of {} devices", kinds.join(", ")))
}

fn read_device(
    node: &Node,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
    disabled: &mut Vec<DisabledCfg>,
) -> Option<DeviceCfg> {
    let mut t = TableReader::new(node, "a [[device]]", schema::DEVICE_COMMON, sources, diags)?;
    let id = read_id(&mut t);
    if let Some(id) = &id {
        t.what = format!("device `{}`", id.value);
    }
    let enabled_key = t.bool("enabled");
    let enabled = enabled_key.as_ref().is_none_or(|e| e.value);
    let kind = t.choice("kind");
    if kind.is_none() && t.node("kind").is_none() {
        let loc = id.as_ref().map_or(t.loc.clone(), |i| i.loc.clone());
        let d = if enabled {
            let msg = format!(
                "{} has no `kind` (and no board default or inherited device has that id)",
                t.what
            );
            Diagnostic::new(&loc, msg).label("add `kind = \"...\"`")
        } else {
            let msg = format!(
                "{} is switched off, but no board default or inherited device has that id",
                t.what
            );
            Diagnostic::new(&loc, msg).label("nothing to switch off")
        };
        t.error(d);
    }
    let bus = t.str("bus");
    let addr = t.pci_addr("addr");
    let io = t.int("io");
    let irq = t.int("irq");
    let mmio = t.int("mmio");
    let kind_name = kind.as_ref().map(|k| k.value.clone()).unwrap_or_default();
    let fields: &'static [Field] = schema::device_fields(&kind_name);
    t.allow(fields);
    let props = match kind_name.as_str() {
        "serial" => Props::Serial {
            backend: t.choice("backend"),
            path: t.path("path"),
            log: t.path("log"),
        },
        "rtc" => Props::Rtc {
            clock: t.choice("clock"),
        },
        "debugcon" => Props::Debugcon {
            backend: t.choice("backend"),
            path: t.path("path"),
        },
        "fw_cfg" => {
            let nodes = t.tables("files");
            let what = t.what.clone();
            let files = nodes
                .into_iter()
                .filter_map(|n| read_fw_cfg_file(n, &what, sources, &mut *t.diags))
                .collect();
            Props::FwCfg { files }
        }
        "vga" => Props::Vga {
            vram: t.size("vram"),
        },
        "nic" => Props::Nic {
            model: t.choice("model"),
            mac: t.mac("mac"),
            backend: t.choice("backend"),
            tap: t.str("tap"),
            switch: t.path("switch"),
            local: t.endpoint("local"),
            remote: t.endpoint("remote"),
        },
        "disk" => Props::Disk {
            path: t.path("path"),
            readonly: t.bool("readonly"),
            format: t.choice("format"),
            overlay: t.bool("overlay"),
        },
        _ => Props::None,
    };
    let loc = t.loc.clone();
    if kind.is_some() {
        t.finish_with(kind_owning);
    }
    if !enabled {
        if let (Some(id), Some(e)) = (&id, enabled_key) {
            disabled.push(DisabledCfg {
                id: id.value.clone(),
                kind: kind.map(|k| k.value),
                enabled: e.loc,
            });
        }
        return None;
    }
    Some(DeviceCfg {
        loc,
        id: id?,
        kind: kind?,
        bus,
        addr,
        io,
        irq,
        mmio,
        props,
    })
}

fn read_fw_cfg_file(
    node: &Node,
    owner: &str,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> Option<FwCfgFile> {
    let mut t = TableReader::new(
        node,
        format!("a file of {owner}"),
        schema::FW_CFG_FILE,
        sources,
        diags,
    )?;
    let name = t.str("name");
    let path = t.path("path");
    let string = t.str("string");
    let loc = t.loc.clone();
    let contents = match (path, string) {
        (Some(p), None) => Some(FwCfgContents::Path(p)),
        (None, Some(s)) => Some(FwCfgContents::String(s)),
        (Some(p), Some(_)) => {
            let msg = format!("{} has both `path` and `string`; give one", t.what);
            t.error(Diagnostic::new(&p.loc, msg).label("one of these"));
            None
        }
        (None, None) => {
            if t.node("path").is_none() && t.node("string").is_none() {
                let msg = format!("{} needs `path` or `string`", t.what);
                t.error(Diagnostic::new(&loc, msg).label("no contents"));
            }
            None
        }
    };
    if name.is_none() && t.node("name").is_none() {
        let msg = format!("{} needs a `name`", t.what);
        t.error(Diagnostic::new(&loc, msg).label("no name"));
    }
    t.finish();
    Some(FwCfgFile {
        loc,
        name: name?,
        contents: contents?,
    })
}
