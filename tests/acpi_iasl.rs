//! Every machine in machines/: build its ACPI tables, disassemble each with `iasl -d`
//! (Debian's acpica-tools), and fail on any error or checksum complaint. The DSDT's
//! disassembly is compiled back with `iasl` too, which checks the AML semantically
//! (resource descriptors, names, package sizes).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

fn iasl() -> Option<PathBuf> {
    let ok = Command::new("iasl").arg("-v").output().is_ok();
    ok.then(|| PathBuf::from("iasl"))
}

fn machines() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("machines");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// Lines of iasl output that mean the table is wrong.
fn complaints(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            (l.contains("error") && !l.contains("0 errors"))
                || l.contains("checksum")
                || l.contains("warning") && !l.contains("0 warnings")
                || l.contains("invalid")
                || l.contains("mismatch")
        })
        .map(str::to_string)
        .collect()
}

fn run(iasl: &Path, dir: &Path, args: &[&str]) -> String {
    let o = Command::new(iasl)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run iasl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn iasl_accepts_every_machines_tables() {
    let Some(iasl) = iasl() else {
        common::require(false, "iasl not found (install acpica-tools)");
        return;
    };
    let tmp = std::env::temp_dir().join(format!("vmrun-acpi-iasl-{}", std::process::id()));
    let mut failures = Vec::new();
    let mut checked = 0;
    for m in machines() {
        let (_, spec) = vmrun::load_and_check(&m).expect("load machine");
        let Ok(spec) = spec else { continue };
        let acpi = vmrun::acpi::build(&spec);
        let dir = tmp.join(m.file_stem().unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        // iasl cannot read a bare RSDP (no SDT header): check it here.
        let sum = |b: &[u8]| b.iter().fold(0u8, |a, x| a.wrapping_add(*x));
        if &acpi.rsdp[..8] != b"RSD PTR " || sum(&acpi.rsdp[..20]) != 0 || sum(&acpi.rsdp) != 0 {
            failures.push(format!("{}: bad RSDP {:02x?}", m.display(), acpi.rsdp));
        }
        let mut files = Vec::new();
        for e in &acpi.entries {
            let sig = String::from_utf8_lossy(&e.sig).to_lowercase();
            files.push((sig, acpi.tables[e.offset..e.offset + e.len].to_vec()));
        }
        for (name, bytes) in &files {
            let f = format!("{name}.dat");
            std::fs::write(dir.join(&f), bytes).unwrap();
            let out = run(&iasl, &dir, &["-d", &f]);
            checked += 1;
            for c in complaints(&out) {
                failures.push(format!("{}: {name}: {c}", m.display()));
            }
            if !out.contains("Formatted output") && !out.contains("Disassembly completed") {
                failures.push(format!("{}: {name}: no disassembly:\n{out}", m.display()));
            }
        }
        // Compile the DSDT back: semantic checks of the AML.
        let out = run(&iasl, &dir, &["-p", "dsdt-recompiled", "dsdt.dsl"]);
        for c in complaints(&out) {
            failures.push(format!("{}: dsdt recompile: {c}", m.display()));
        }
    }
    if std::env::var_os("VMRUN_KEEP_ACPI").is_some() {
        eprintln!("tables and disassembly kept in {}", tmp.display());
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(checked > 0, "no machine checked");
    assert!(
        failures.is_empty(),
        "iasl complaints:\n{}",
        failures.join("\n")
    );
}
