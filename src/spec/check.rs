//! The `check` stage: the typed machine file → [`MachineSpec`], with every error a
//! user can cause found here, all at once.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::ctx::Ctx;
use super::resources::Claims;
use super::{
    chipset, devices, topology, ArtifactSpec, BootSpec, ControlSpec, CpuTopology, MachineSpec,
};
use crate::board::{ADDRESS_SPACE_END, HIGH_RAM_START};
use crate::config::model::Machine;
use crate::config::reader::{Artifact, Sp};
use crate::config::source::Diagnostic;
use crate::config::units::format_size;

/// The longest kernel command line we accept (x86 Linux's COMMAND_LINE_SIZE).
pub const MAX_CMDLINE: usize = 2048;
/// The largest firmware image: it is mapped just below 4 GiB.
pub const MAX_FIRMWARE: u64 = 16 << 20;

/// Checks the machine and resolves every resource. Pure but for reading the files the
/// machine names (existence, digests).
pub fn check(m: &Machine) -> Result<MachineSpec, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let board = m.board.value.board();
    check_memory(m, &mut diags);
    let memory = chipset::memory(board, m.memory.value);
    let cpus = check_cpus(m, &mut diags);
    let boot = check_boot(m, &mut diags);
    let mut broken = m.broken_buses.clone();
    let buses = topology::resolve(m, board, &mut broken, &mut diags);
    let mut ctx = Ctx {
        m,
        board,
        io: Claims::new("I/O ports"),
        mmio: Claims::new("MMIO"),
        gsis: Claims::new("GSI"),
        pci: Default::default(),
        buses,
        broken,
        ram: (memory.below_4g, memory.above_4g),
        diags,
    };
    let devices = devices::resolve(&mut ctx, &cpus);
    if !ctx.diags.is_empty() {
        return Err(m.origins.relocate_all(ctx.diags));
    }
    Ok(MachineSpec {
        name: m.name.value.clone(),
        board: m.board.value,
        memory,
        chipset: chipset::chipset(board),
        cpus,
        boot,
        control: ControlSpec {
            qmp: m.qmp.as_ref().map(|p| p.value.clone()),
        },
        buses: topology::finish(ctx.buses),
        devices,
    })
}

fn check_memory(m: &Machine, diags: &mut Vec<Diagnostic>) {
    let board = m.board.value.board();
    let memory = m.memory.value;
    if memory < board.min_memory {
        diags.push(
            Diagnostic::new(
                &m.memory.loc,
                format!(
                    "memory {} is too small for board {}",
                    format_size(memory),
                    board.name
                ),
            )
            .label(format!("at least {}", format_size(board.min_memory))),
        );
    } else if !memory.is_multiple_of(4096) {
        diags.push(
            Diagnostic::new(
                &m.memory.loc,
                "memory must be a whole number of 4 KiB pages",
            )
            .label("not page-aligned"),
        );
    }
    let (_, above) = board.ram_split(memory);
    if above > 0 && HIGH_RAM_START.saturating_add(above) > ADDRESS_SPACE_END {
        diags.push(
            Diagnostic::new(
                &m.memory.loc,
                format!(
                    "memory {} does not fit in the guest address space",
                    format_size(memory)
                ),
            )
            .label(format!(
                "RAM above 4 GiB would end at {:#x}",
                HIGH_RAM_START.saturating_add(above)
            ))
            .note(format!(
                "vmrun places RAM below {:#x} (40-bit guest physical addresses)",
                ADDRESS_SPACE_END
            )),
        );
    }
}

fn check_cpus(m: &Machine, diags: &mut Vec<Diagnostic>) -> CpuTopology {
    let board = m.board.value.board();
    let get = |v: &Option<Sp<i64>>| v.as_ref().map(|s| s.value as u32);
    let (cpus, sockets, threads) = (get(&m.cpus), get(&m.sockets), get(&m.threads));
    let sockets = sockets.unwrap_or(1);
    let threads = threads.unwrap_or(1);
    let cores = match (get(&m.cores), cpus) {
        (Some(c), _) => c,
        (None, Some(n)) if n % (sockets * threads) == 0 => n / (sockets * threads),
        (None, Some(n)) => {
            let loc = m.cpus.as_ref().map_or(&m.anchor, |c| &c.loc);
            diags.push(
                Diagnostic::new(
                    loc,
                    format!(
                        "cpus = {n} can't be split into {sockets} socket(s) × {threads} thread(s)"
                    ),
                )
                .label("not a multiple of sockets × threads"),
            );
            return CpuTopology {
                sockets: 1,
                cores: 1,
                threads: 1,
            };
        }
        (None, None) => 1,
    };
    let topo = CpuTopology {
        sockets,
        cores,
        threads,
    };
    let product = sockets as u64 * cores as u64 * threads as u64;
    let anchor = m
        .cpus
        .as_ref()
        .or(m.sockets.as_ref())
        .or(m.cores.as_ref())
        .or(m.threads.as_ref());
    let loc = anchor.map_or(&m.anchor, |s| &s.loc);
    if let Some(n) = cpus {
        if product != n as u64 {
            diags.push(
                Diagnostic::new(loc, format!("sockets × cores × threads = {sockets} × {cores} × {threads} = {product}, but cpus = {n}"))
                    .label("the CPU topology does not add up"),
            );
            return CpuTopology {
                sockets: 1,
                cores: 1,
                threads: 1,
            };
        }
    }
    if product > board.max_cpus as u64 {
        diags.push(
            Diagnostic::new(
                loc,
                format!("{product} CPUs are too many for board {}", board.name),
            )
            .label(format!("at most {}", board.max_cpus)),
        );
        return CpuTopology {
            sockets: 1,
            cores: 1,
            threads: 1,
        };
    }
    let last_apic = topo.apic_id(topo.count() - 1);
    if last_apic >= 254 {
        diags.push(
            Diagnostic::new(
                loc,
                format!("this CPU topology needs APIC IDs up to {last_apic}"),
            )
            .label("xAPIC IDs end at 254, and the IOAPIC takes the ID after the last CPU's")
            .note("APIC IDs pack socket, core and thread numbers in power-of-two fields"),
        );
    }
    topo
}

fn check_boot(m: &Machine, diags: &mut Vec<Diagnostic>) -> BootSpec {
    let b = &m.boot;
    let kernel = b.kernel.as_ref().and_then(|a| artifact(a, "kernel", diags));
    let initrd = b.initrd.as_ref().and_then(|a| artifact(a, "initrd", diags));
    let firmware = b
        .firmware
        .as_ref()
        .and_then(|a| artifact(a, "firmware", diags));
    if b.kernel.is_none() {
        if let Some(i) = &b.initrd {
            diags.push(
                Diagnostic::new(&i.path.loc, "an initrd needs a kernel")
                    .label("no `kernel` in [boot]"),
            );
        }
    }
    let cmdline = b
        .cmdline
        .as_ref()
        .map(|c| c.value.clone())
        .unwrap_or_default();
    if let Some(c) = &b.cmdline {
        if c.value.len() >= MAX_CMDLINE {
            diags.push(
                Diagnostic::new(
                    &c.loc,
                    format!("the kernel command line is {} bytes long", c.value.len()),
                )
                .label(format!("at most {} bytes", MAX_CMDLINE - 1)),
            );
        }
        if c.value.contains('\0') {
            diags.push(
                Diagnostic::new(&c.loc, "the kernel command line contains a NUL byte").label("NUL"),
            );
        }
    }
    if let (Some(k), Some(a)) = (&kernel, &b.kernel) {
        check_kernel_format(&k.path, a, diags);
    }
    if let (Some(fw), Some(a)) = (&firmware, &b.firmware) {
        check_firmware_size(&fw.path, a, diags);
    }
    let probe = b.kernel.is_none() && (b.firmware.is_none() || b.cmdline.is_some());
    let snapshot = b.snapshot.as_ref().and_then(|a| snapshot_dir(a, diags));
    BootSpec {
        kernel,
        initrd,
        cmdline,
        firmware,
        probe,
        snapshot,
    }
}

/// The kernel must be a bzImage, an ELF vmlinux or a PVH ELF that the boot code
/// accepts; finding out here keeps the build stage from failing on the user's file.
fn check_kernel_format(path: &Path, a: &Artifact, diags: &mut Vec<Diagnostic>) {
    use crate::boot::{bzimage, elf};
    let Ok(image) = std::fs::read(path) else {
        return;
    };
    let problem = if bzimage::is_bzimage(&image) {
        bzimage::parse_header(&image)
            .err()
            .map(|e| format!("bad bzImage: {e}"))
    } else if elf::is_elf(&image) {
        elf::parse(&image)
            .err()
            .map(|e| format!("bad ELF kernel: {e}"))
    } else {
        Some(
            "not a bzImage (no HdrS setup header at 0x202) and not an ELF (no \\x7fELF magic)"
                .to_string(),
        )
    };
    if let Some(p) = problem {
        diags.push(
            Diagnostic::new(
                &a.path.loc,
                format!("kernel {} can't be booted: {p}", path.display()),
            )
            .label("expected a bzImage, an ELF vmlinux or a PVH ELF"),
        );
    }
}

fn check_firmware_size(path: &Path, a: &Artifact, diags: &mut Vec<Diagnostic>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let size = meta.len();
    if size == 0 || size > MAX_FIRMWARE || size % 4096 != 0 {
        diags.push(
            Diagnostic::new(
                &a.path.loc,
                format!("firmware image {} is {size} bytes", path.display()),
            )
            .label("must be a non-empty whole number of 4 KiB pages, at most 16 MiB"),
        );
    }
}

/// Resolves an artifact: it must be a readable regular file whose digest matches.
fn artifact(a: &Artifact, what: &str, diags: &mut Vec<Diagnostic>) -> Option<ArtifactSpec> {
    let path = existing_file(&a.path, what, diags)?;
    if let Some(want) = &a.sha256 {
        match sha256_file(&path) {
            Ok(got) if got.eq_ignore_ascii_case(&want.value) => {}
            Ok(got) => {
                diags.push(
                    Diagnostic::new(
                        &want.loc,
                        format!("{what} {} does not match its sha256", path.display()),
                    )
                    .label("expected this digest")
                    .note(format!("the file's sha256 is {got}")),
                );
                return None;
            }
            Err(e) => {
                diags.push(
                    Diagnostic::new(
                        &a.path.loc,
                        format!("cannot read {what} {}: {e}", path.display()),
                    )
                    .label("unreadable"),
                );
                return None;
            }
        }
    }
    Some(ArtifactSpec {
        path,
        sha256: a.sha256.as_ref().map(|h| h.value.to_ascii_lowercase()),
    })
}

/// `[boot] snapshot`: a directory holding a snapshot manifest this vmrun reads, whose
/// sha256 is the one pinned.
fn snapshot_dir(a: &Artifact, diags: &mut Vec<Diagnostic>) -> Option<ArtifactSpec> {
    use crate::snapshot::manifest as mf;
    let dir = crate::config::reader::absolute(&a.path.value);
    let manifest = dir.join(mf::MANIFEST);
    let bad = |diags: &mut Vec<Diagnostic>, msg: String, label: &str| {
        diags.push(Diagnostic::new(&a.path.loc, msg).label(label.to_string()));
        None
    };
    let bytes = match std::fs::read(&manifest) {
        Ok(b) => b,
        Err(e) => {
            let msg = format!(
                "snapshot {}: cannot read {}: {e}",
                dir.display(),
                mf::MANIFEST
            );
            return bad(diags, msg, "not a snapshot directory");
        }
    };
    let head: Result<serde_json::Value, _> = serde_json::from_slice(&bytes);
    let format = head.as_ref().ok().and_then(|v| {
        Some((
            v.get("format")?.as_str()?.to_string(),
            v.get("version")?.as_u64()?,
        ))
    });
    if format != Some((mf::FORMAT.to_string(), u64::from(mf::VERSION))) {
        let msg = format!(
            "snapshot {}: not a vmrun snapshot this version reads",
            dir.display()
        );
        let label = format!("expected format {:?} version {}", mf::FORMAT, mf::VERSION);
        return bad(diags, msg, &label);
    }
    if let Some(want) = &a.sha256 {
        let got = mf::sha256(&bytes);
        if !got.eq_ignore_ascii_case(&want.value) {
            diags.push(
                Diagnostic::new(
                    &want.loc,
                    format!("snapshot {} does not match its sha256", dir.display()),
                )
                .label("expected this digest")
                .note(format!("its manifest.json's sha256 is {got}")),
            );
            return None;
        }
    }
    Some(ArtifactSpec {
        path: dir,
        sha256: a.sha256.as_ref().map(|h| h.value.to_ascii_lowercase()),
    })
}

/// The absolute path of a file that must exist.
pub(super) fn existing_file(
    p: &Sp<std::path::PathBuf>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<std::path::PathBuf> {
    match std::fs::metadata(&p.value) {
        Ok(meta) if meta.is_dir() => {
            diags.push(
                Diagnostic::new(
                    &p.loc,
                    format!("{what} {} is a directory", p.value.display()),
                )
                .label("not a file"),
            );
            None
        }
        Ok(_) => Some(std::fs::canonicalize(&p.value).unwrap_or_else(|_| p.value.clone())),
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "no such file".to_string()
            } else {
                e.to_string()
            };
            diags.push(
                Diagnostic::new(&p.loc, format!("{what} {} not found", p.value.display()))
                    .label(why),
            );
            None
        }
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
