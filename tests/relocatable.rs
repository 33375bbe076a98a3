//! `vmrun show` prints a complete, relocatable machine: for every file in machines/,
//! the probe's report on the file and on its `show` output saved in another directory
//! (and checked from yet another working directory) are the same, timing fields aside.

use std::path::{Path, PathBuf};

use vmrun::boot::probe::{parse_report, ProbeLine};

mod common;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fields whose values depend on when and how fast the run was.
const TIMING: &[&str] = &["time", "khz", "us", "ms", "ticks", "cycles", "source"];

/// The report without timing fields, one string per line.
fn normalized(lines: &[ProbeLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let fields: Vec<String> = l
                .fields
                .iter()
                .filter(|(k, _)| !TIMING.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{} {} {}", l.tag, fields.join(" "), l.flags.join(" "))
        })
        .collect()
}

/// Boots the probe on `machine` (a path) with COM1 in a log file, from working
/// directory `cwd`; the report lines.
fn boot(machine: &Path, cwd: &Path, dir: &Path, name: &str) -> Vec<String> {
    let log = dir.join(format!("{name}.log"));
    let wrapper = dir.join(format!("{name}-run.toml"));
    let text = format!(
        "extends = {:?}\n[[device]]\nid = \"com1\"\nbackend = \"file\"\npath = {:?}\n",
        machine.display().to_string(),
        log.display().to_string()
    );
    std::fs::write(&wrapper, text).unwrap();
    let out = common::vmrun()
        .current_dir(cwd)
        .args(["probe", wrapper.to_str().unwrap(), "--timeout", "60s", "--"])
        .args(["blkwrite=0"])
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name}: {}\n{report}",
        String::from_utf8_lossy(&out.stderr)
    );
    normalized(&parse_report(&report).unwrap())
}

#[test]
fn show_output_boots_the_same_machine_from_anywhere() {
    if !common::kvm_usable() {
        return;
    }
    let dir = common::temp_dir("relocatable", "show");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut machines: Vec<PathBuf> = std::fs::read_dir(root().join("machines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    machines.sort();
    for m in machines {
        let name = m.file_stem().unwrap().to_string_lossy().to_string();
        // `show` run from the repository's parent, saved in another directory.
        let shown = common::vmrun()
            .current_dir(root().parent().unwrap())
            .args(["show", m.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(shown.status.success(), "{name}: show failed");
        let saved = elsewhere.join(format!("{name}.toml"));
        std::fs::write(&saved, &shown.stdout).unwrap();
        let original = boot(&m, &root(), &dir, &format!("{name}-original"));
        let resolved = boot(&saved, &elsewhere, &dir, &format!("{name}-shown"));
        assert_eq!(original, resolved, "{name}: the shown machine differs");
    }
}
