//! `vmrun run --restore DIR` and `[boot] snapshot`: which snapshot a run starts from,
//! opened and checked, and the machine it must be.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use vmrun::snapshot::manifest as mf;
use vmrun::spec::MachineSpec;
use vmrun::vmm::snapshot::{self, LoadOptions, Restore};

#[derive(clap::Args, Clone, Default)]
pub struct RestoreArgs {
    /// Start from the snapshot in DIR (written by `vmrun ctl NAME snapshot DIR`)
    /// instead of booting; without a machine file, the snapshot's own machine runs.
    #[arg(long, value_name = "DIR")]
    pub restore: Option<PathBuf>,
    /// Restore even if a writable disk changed since the snapshot was taken.
    #[arg(long)]
    pub allow_disk_change: bool,
    /// Also check memory.bin against the manifest (reads all of it).
    #[arg(long)]
    pub verify: bool,
}

/// The machine file of a run: the one given, or the snapshot's.
pub fn machine_file(file: Option<&Path>, args: &RestoreArgs) -> anyhow::Result<PathBuf> {
    match (file, &args.restore) {
        (Some(f), _) => Ok(f.to_path_buf()),
        (None, Some(dir)) => Ok(dir.join(mf::MACHINE)),
        (None, None) => anyhow::bail!("no machine file given"),
    }
}

/// The snapshot `spec` starts from (`--restore`, else `[boot] snapshot`), checked
/// and known to be of this very machine.
pub fn open(
    spec: &MachineSpec,
    args: &RestoreArgs,
    resolve: impl Fn(&Path) -> anyhow::Result<MachineSpec>,
) -> anyhow::Result<Option<Restore>> {
    let pinned = spec.boot.snapshot.as_ref();
    let (dir, sha) = match (&args.restore, pinned) {
        (Some(d), _) => (d.clone(), None),
        (None, Some(a)) => (a.path.clone(), a.sha256.clone()),
        (None, None) => return Ok(None),
    };
    let opts = LoadOptions {
        manifest_sha256: sha,
        allow_disk_change: args.allow_disk_change,
        verify_memory: args.verify,
    };
    let restore =
        snapshot::load(&dir, &opts).with_context(|| format!("snapshot {}", dir.display()))?;
    let theirs = resolve(&dir.join(mf::MACHINE))
        .with_context(|| format!("snapshot {}: its machine", dir.display()))?;
    let mut ours = spec.clone();
    ours.boot.snapshot = None;
    let (a, b) = (
        vmrun::spec::show::to_toml(&ours),
        vmrun::spec::show::to_toml(&theirs),
    );
    if a != b {
        let line = a
            .lines()
            .zip(b.lines())
            .find(|(x, y)| x != y)
            .map_or_else(String::new, |(x, y)| {
                format!(" (this machine: `{x}`, the snapshot's: `{y}`)")
            });
        anyhow::bail!(
            "snapshot {}: it is of another machine{line}; `vmrun show` both to compare",
            dir.display()
        );
    }
    Ok(Some(restore))
}
