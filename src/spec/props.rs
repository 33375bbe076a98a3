//! Kind-specific properties of devices: serial and debug-console backends, fw_cfg
//! files, VGA memory, NIC models, MACs and backends, disk images.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::check::existing_file;
use super::ctx::{loc_of, Ctx, Plan};
use super::{CharBackend, DeviceKind, DiskFormat, FwCfgData, Kind, NicBackend, NicModel, RtcClock};
use crate::config::model::{DeviceCfg, FwCfgContents, Props};
use crate::config::reader::Sp;
use crate::config::source::{Diagnostic, Loc};

fn char_backend(
    backend: &Option<Sp<String>>,
    default: &str,
    path: &Option<Sp<PathBuf>>,
    what: &str,
    loc: &Loc,
    diags: &mut Vec<Diagnostic>,
) -> CharBackend {
    let name = backend.as_ref().map_or(default, |b| b.value.as_str());
    let bloc = loc_of(backend, loc);
    let needs_path = matches!(name, "file" | "socket");
    if let (Some(p), false) = (path, needs_path) {
        diags.push(
            Diagnostic::new(
                &p.loc,
                format!("`path` of {what} is only used by the file and socket backends"),
            )
            .label(format!("backend is \"{name}\"")),
        );
    }
    let path = match (path, needs_path) {
        (Some(p), true) => {
            check_parent_dir(p, what, diags);
            Some(p.value.clone())
        }
        (None, true) => {
            diags.push(
                Diagnostic::new(
                    &bloc,
                    format!("backend \"{name}\" of {what} needs a `path`"),
                )
                .label("add `path = \"...\"`"),
            );
            None
        }
        _ => None,
    };
    match (name, path) {
        ("stdio", _) => CharBackend::Stdio,
        ("stderr", _) => CharBackend::Stderr,
        ("file", Some(p)) => CharBackend::File(p),
        ("socket", Some(p)) => CharBackend::Socket(p),
        ("pty", _) => CharBackend::Pty,
        _ => CharBackend::Null,
    }
}

/// An output file's directory must exist.
fn check_parent_dir(p: &Sp<PathBuf>, what: &str, diags: &mut Vec<Diagnostic>) {
    let dir = p
        .value
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        diags.push(
            Diagnostic::new(
                &p.loc,
                format!(
                    "the directory of {} (for {what}) does not exist",
                    p.value.display()
                ),
            )
            .label("no such directory"),
        );
    }
}

/// Backend "dgram": both endpoints, of one kind; a unix `local`'s directory exists.
fn dgram_backend(
    local: &Option<Sp<String>>,
    remote: &Option<Sp<String>>,
    bloc: &crate::config::source::Loc,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> NicBackend {
    use crate::backends::dgram_sock::Endpoint;
    let (Some(l), Some(r)) = (local, remote) else {
        diags.push(
            Diagnostic::new(
                bloc,
                format!("backend \"dgram\" of {what} needs `local` and `remote`"),
            )
            .label("add `local = \"a.sock\"` and `remote = \"b.sock\"` (or udp://)"),
        );
        return NicBackend::None;
    };
    let mut parse = |s: &Sp<String>| match Endpoint::parse(&s.value, std::path::Path::new("/")) {
        Ok(Endpoint::Unix(p))
            if p.as_os_str().len() > crate::backends::dgram_sock::SUN_PATH_MAX =>
        {
            diags.push(
                Diagnostic::new(
                    &s.loc,
                    format!("the socket path of {what} is longer than 107 bytes"),
                )
                .label("too long"),
            );
            None
        }
        Ok(e) => Some(e),
        Err(e) => {
            diags.push(Diagnostic::new(&s.loc, format!("{e} (for {what})")).label("bad endpoint"));
            None
        }
    };
    let (Some(le), Some(re)) = (parse(l), parse(r)) else {
        return NicBackend::None;
    };
    if matches!(le, Endpoint::Unix(_)) != matches!(re, Endpoint::Unix(_)) {
        diags.push(
            Diagnostic::new(
                &r.loc,
                format!("`local` and `remote` of {what} must both be socket paths or both udp://"),
            )
            .label("a different kind than `local`"),
        );
        return NicBackend::None;
    }
    if le == re {
        diags.push(
            Diagnostic::new(&r.loc, format!("`remote` of {what} is its `local`"))
                .label("same endpoint"),
        );
    }
    if let Endpoint::Unix(p) = &le {
        check_parent_dir(&Sp::new(p.clone(), l.loc.clone()), what, diags);
    }
    NicBackend::Dgram {
        local: le,
        remote: re,
    }
}

/// What the property arms remember across devices: MACs, who reads stdin, which images
/// are open (by file identity, so a hard link or symlink is the same image).
#[derive(Default)]
pub(super) struct Seen {
    macs: Vec<([u8; 6], String, Loc)>,
    stdio: Option<(String, Loc)>,
    disks: Vec<(FileId, bool, String, Loc)>,
}

/// A file's identity: device and inode.
type FileId = (u64, u64);

/// The typed kind of a planned device, with every property checked.
pub(super) fn device_kind(
    ctx: &mut Ctx<'_>,
    p: &Plan<'_>,
    seen: &mut Seen,
    ioapic_id: u8,
) -> Option<DeviceKind> {
    let d = p.cfg;
    let what = &p.what;
    let m = ctx.m;
    let board = ctx.board;
    let diags = &mut ctx.diags;
    let (macs, stdio_user, disks) = (&mut seen.macs, &mut seen.stdio, &mut seen.disks);
    Some(match (p.kind, &d.props) {
        (Kind::Serial, Props::Serial { backend, path, log }) => {
            let default = if d.id.value == "com1" {
                "stdio"
            } else {
                "null"
            };
            let backend_v = char_backend(backend, default, path, what, &d.loc, diags);
            if backend_v == CharBackend::Stdio {
                let loc = loc_of(backend, &d.loc);
                match stdio_user {
                    Some((other, oloc)) => diags.push(
                        Diagnostic::new(
                            &loc,
                            format!("{what} and {other} both read standard input"),
                        )
                        .label("only one device can have the stdio backend")
                        .note_at(oloc, format!("{other} is here")),
                    ),
                    None => *stdio_user = Some((what.clone(), loc)),
                }
            }
            if let Some(l) = log {
                check_parent_dir(l, what, diags);
            }
            DeviceKind::Serial {
                backend: backend_v,
                log: log.as_ref().map(|l| l.value.clone()),
            }
        }
        (Kind::Rtc, Props::Rtc { clock }) => DeviceKind::Rtc {
            clock: match clock.as_ref().map(|c| c.value.as_str()) {
                Some("localtime") => RtcClock::Localtime,
                _ => RtcClock::Utc,
            },
        },
        (Kind::Debugcon, Props::Debugcon { backend, path }) => DeviceKind::Debugcon {
            backend: char_backend(backend, "stderr", path, what, &d.loc, diags),
        },
        (Kind::FwCfg, Props::FwCfg { files }) => {
            let mut out: Vec<(String, FwCfgData)> = Vec::new();
            for f in files {
                let name = &f.name.value;
                if name.is_empty() || name.len() > 55 {
                    diags.push(
                        Diagnostic::new(
                            &f.name.loc,
                            format!("fw_cfg file name \"{name}\" must be 1-55 bytes"),
                        )
                        .label("bad length"),
                    );
                    continue;
                }
                if out.iter().any(|(n, _)| n == name) {
                    diags.push(
                        Diagnostic::new(
                            &f.name.loc,
                            format!("fw_cfg file \"{name}\" is given twice"),
                        )
                        .label("duplicate name"),
                    );
                    continue;
                }
                if !name.starts_with("opt/") {
                    diags.push(
                        Diagnostic::new(&f.name.loc, format!("fw_cfg file \"{name}\" must be under \"opt/\""))
                            .label("user files live in opt/ so they can't shadow the firmware's own (etc/e820, bootorder, ...)"),
                    );
                    continue;
                }
                let data = match &f.contents {
                    FwCfgContents::Path(p) => match existing_file(p, "fw_cfg file", diags) {
                        Some(path) => FwCfgData::File(path),
                        None => continue,
                    },
                    FwCfgContents::String(s) => FwCfgData::Inline(s.value.clone()),
                };
                out.push((name.clone(), data));
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            DeviceKind::FwCfg { files: out }
        }
        (Kind::Vga, Props::Vga { vram }) => {
            let v = vram.as_ref().map_or(16 << 20, |v| v.value);
            if let Some(vr) = vram {
                if !v.is_power_of_two() || !(1 << 20..=256 << 20).contains(&v) {
                    diags.push(
                        Diagnostic::new(
                            &vr.loc,
                            format!("`vram` of {what} must be a power of two from 1MiB to 256MiB"),
                        )
                        .label("bad size"),
                    );
                }
            }
            DeviceKind::Vga { vram: v }
        }
        (
            Kind::Nic,
            Props::Nic {
                model,
                mac,
                backend,
                tap,
                switch,
                local,
                remote,
            },
        ) => {
            // (The schema allows only these; on a board without PCI the plan pass
            // already refused an e1000.)
            let model = match model {
                Some(mo) if mo.value == "e1000" && p.on_pci() => NicModel::E1000,
                _ => NicModel::VirtioNet,
            };
            let mac = match mac {
                Some(mac) => {
                    if let Some((_, other, oloc)) = macs.iter().find(|(x, _, _)| *x == mac.value) {
                        diags.push(
                            Diagnostic::new(
                                &mac.loc,
                                format!("{what} has the same MAC address as {other}"),
                            )
                            .label("duplicate MAC")
                            .note_at(oloc, format!("{other} is here")),
                        );
                    }
                    mac.value
                }
                None => derive_mac(&m.name.value, &d.id.value, macs),
            };
            macs.push((mac, what.clone(), d.mac_loc()));
            let bname = backend.as_ref().map_or("none", |b| b.value.as_str());
            let bloc = loc_of(backend, &d.loc);
            if let (Some(t), false) = (tap, bname == "tap") {
                diags.push(
                    Diagnostic::new(
                        &t.loc,
                        format!("`tap` of {what} is only used by backend \"tap\""),
                    )
                    .label(format!("backend is \"{bname}\"")),
                );
            }
            if let (Some(s), false) = (switch, bname == "switch") {
                diags.push(
                    Diagnostic::new(
                        &s.loc,
                        format!("`switch` of {what} is only used by backend \"switch\""),
                    )
                    .label(format!("backend is \"{bname}\"")),
                );
            }
            if let Some(t) = tap {
                if t.value.is_empty() || t.value.len() > 15 || t.value.contains(['/', ' ', '\0']) {
                    diags.push(
                        Diagnostic::new(
                            &t.loc,
                            format!("`tap` of {what} is not an interface name"),
                        )
                        .label("1-15 characters, no '/' or spaces"),
                    );
                }
            }
            let backend = match bname {
                "tap" => NicBackend::Tap(tap.as_ref().map(|t| t.value.clone())),
                "switch" => match switch {
                    Some(s) => {
                        check_parent_dir(s, what, diags);
                        NicBackend::Switch(s.value.clone())
                    }
                    None => {
                        diags.push(Diagnostic::new(&bloc, format!("backend \"switch\" of {what} needs `switch`, the switch's socket path")).label("add `switch = \"...\"`"));
                        NicBackend::None
                    }
                },
                "dgram" => dgram_backend(local, remote, &bloc, what, diags),
                _ => NicBackend::None,
            };
            if bname != "dgram" {
                for s in [local, remote].into_iter().flatten() {
                    diags.push(
                        Diagnostic::new(
                            &s.loc,
                            format!(
                                "`local` and `remote` of {what} are only used by backend \"dgram\""
                            ),
                        )
                        .label(format!("backend is \"{bname}\"")),
                    );
                }
            }
            DeviceKind::Nic {
                model,
                mac,
                backend,
            }
        }
        (
            Kind::Disk,
            Props::Disk {
                path,
                readonly,
                format,
                overlay,
            },
        ) => {
            let overlay_v = overlay.as_ref().is_some_and(|o| o.value);
            if let (true, Some(r)) = (overlay_v, readonly.as_ref().filter(|r| r.value)) {
                diags.push(
                    Diagnostic::new(
                        &r.loc,
                        format!(
                            "{what} has an overlay, so it is written: `readonly` can't be true"
                        ),
                    )
                    .label("drop `readonly` or `overlay`"),
                );
            }
            // An overlay's image (and its chain) is only read.
            let readonly = readonly.as_ref().is_some_and(|r| r.value) || overlay_v;
            let Some(p) = path else {
                diags.push(
                    Diagnostic::new(&d.kind.loc, format!("{what} needs a `path` to its image"))
                        .label("add `path = \"disk.img\"`"),
                );
                return None;
            };
            let abs = existing_file(p, "disk image", diags)?;
            let fmt = match format.as_ref().map(|f| f.value.as_str()) {
                Some("qcow2") => DiskFormat::Qcow2,
                _ => DiskFormat::Raw,
            };
            // The whole backing chain opens now (so nothing fails after check), and
            // its files count as read-only users of their images.
            let backing = match crate::backends::disk::inspect(&abs, readonly, fmt.name()) {
                Ok(i) => i.backing,
                Err(e) => {
                    diags.push(
                        Diagnostic::new(&p.loc, format!("{what}: {}", crate::error_chain(&e)))
                            .label(format!("format is \"{}\"", fmt.name())),
                    );
                    return None;
                }
            };
            let users = std::iter::once((&abs, readonly)).chain(backing.iter().map(|b| (b, true)));
            for (file, ro) in users {
                let id = file_id(file);
                if let Some((_, other_ro, other, oloc)) = disks.iter().find(|(q, ..)| *q == id) {
                    if !ro || !other_ro {
                        diags.push(
                            Diagnostic::new(
                                &p.loc,
                                format!("{what} and {other} use the same image {}", file.display()),
                            )
                            .label("an image written by one device can't be shared")
                            .note_at(oloc, format!("{other} is here")),
                        );
                    }
                }
                disks.push((id, ro, what.clone(), p.loc.clone()));
            }
            DeviceKind::Disk {
                path: abs,
                readonly: readonly && !overlay_v,
                format: fmt,
                overlay: overlay_v,
            }
        }
        (Kind::I8042, _) => DeviceKind::I8042,
        (Kind::Pm, _) => DeviceKind::Pm(board.pm),
        (Kind::Pit, _) => DeviceKind::Pit,
        (Kind::Pic, _) => DeviceKind::Pic,
        (Kind::Ioapic, _) => DeviceKind::Ioapic { apic_id: ioapic_id },
        _ => return None,
    })
}

impl DeviceCfg {
    fn mac_loc(&self) -> Loc {
        match &self.props {
            Props::Nic { mac: Some(m), .. } => m.loc.clone(),
            _ => self.id.loc.clone(),
        }
    }
}

/// The device and inode of an existing file (the path itself when metadata fails, which
/// can't happen for a file `existing_file` accepted but keeps this total).
fn file_id(path: &std::path::Path) -> FileId {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => (m.dev(), m.ino()),
        Err(_) => (u64::MAX, 0),
    }
}

/// A locally administered MAC (QEMU's 52:54:00 prefix) from the machine name and the
/// device id, re-hashed past any collision.
fn derive_mac(machine: &str, id: &str, macs: &[([u8; 6], String, Loc)]) -> [u8; 6] {
    for n in 0u32.. {
        let mut h = Sha256::new();
        h.update(machine.as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        if n > 0 {
            h.update(n.to_le_bytes());
        }
        let d = h.finalize();
        let mac = [0x52, 0x54, 0x00, d[0], d[1], d[2]];
        if !macs.iter().any(|(x, _, _)| *x == mac) {
            return mac;
        }
    }
    unreachable!("2^32 collisions")
}
