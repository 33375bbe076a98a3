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
