//! Disk overlays of lab nodes: a disk with `overlay = true` writes to a qcow2 overlay
//! in the node's state directory whose backing file is the machine's image, so the base
//! is never written and nodes can share one; `lab reset` throws the overlays away.

use std::path::Path;

/// Removes the node's overlays (`*.qcow2` in its state directory).
pub fn discard(node_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(node_dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "qcow2") {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Points every `overlay = true` disk of a node's machine at its overlay in the node's
/// state directory (`<disk id>.qcow2`, backed by the machine's image), creating the
/// overlays that do not exist yet: the node keeps its disk contents across restarts
/// until `lab reset`.
pub fn persistent(
    node_dir: &Path,
    machine: &mut crate::spec::MachineSpec,
) -> Result<(), crate::backends::disk::DiskError> {
    use crate::backends::disk::Format;
    use crate::spec::{DeviceKind, DiskFormat};
    for d in &mut machine.devices {
        let DeviceKind::Disk {
            path,
            readonly,
            format,
            overlay,
        } = &mut d.kind
        else {
            continue;
        };
        if !*overlay {
            continue;
        }
        let ov = node_dir.join(format!("{}.qcow2", d.id));
        if !ov.exists() {
            let fmt = match format {
                DiskFormat::Raw => Format::Raw,
                DiskFormat::Qcow2 => Format::Qcow2,
            };
            crate::backends::qcow2::create_overlay(&ov, path, fmt)?;
        }
        *path = ov;
        *format = DiskFormat::Qcow2;
        *readonly = false;
        *overlay = false;
    }
    Ok(())
}
