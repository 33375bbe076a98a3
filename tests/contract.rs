//! The contract: every machine `check` accepts runs. Machines from the valid-file
//! generator (tests/gen) are checked, then booted on KVM with the probe
//! (`vmrun probe FILE -- quick=1`): each must power off (exit 0) after a complete
//! report (`PROBE done`, no fault) that shows the CPUs the machine declares.
//! 300 cases by default; `VMRUN_CONTRACT_CASES=N` to change, `VMRUN_CONTRACT_SEED=S`
//! to start elsewhere.

mod common;
mod gen;

use vmrun::boot::probe::{parse_report, ProbeLine};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What is wrong with one boot, if anything.
fn problem(g: &gen::Generated) -> Option<String> {
    if let Err(e) = gen::check(&g.path) {
        return Some(format!("check rejects it:\n{e}"));
    }
    let out = common::vmrun()
        .args(["probe", g.path.to_str().unwrap(), "--timeout", "60s"])
        .args(["--", "quick=1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(&g.com1_log).unwrap_or_default();
    let lines: Vec<ProbeLine> = match parse_report(&log) {
        Ok(l) => l,
        Err(e) => return Some(format!("bad report ({e}):\n{log}\nstderr: {stderr}")),
    };
    let has = |tag: &str| {
        lines
            .iter()
            .any(|l| l.tag == tag || l.tag.starts_with(&format!("{tag} ")))
    };
    let wrong = if out.status.code() != Some(0) {
        Some(format!("vmrun exited with {:?}", out.status.code()))
    } else if !has("done") {
        Some("no `PROBE done`".to_string())
    } else if has("fault") {
        Some("the probe faulted".to_string())
    } else {
        let madt = lines.iter().find(|l| l.tag == "acpi madt");
        match madt.and_then(|l| l.get_u64("cpus")) {
            Some(n) if n != g.cpus as u64 => {
                Some(format!("the MADT has {n} CPUs, the machine {}", g.cpus))
            }
            _ => None,
        }
    };
    wrong.map(|w| format!("{w}\nreport:\n{log}\nstderr: {stderr}"))
}

#[test]
fn every_generated_machine_boots_the_probe() {
    if !common::kvm_usable() {
        return;
    }
    let first = env_u64("VMRUN_CONTRACT_SEED", 0);
    let n = env_u64("VMRUN_CONTRACT_CASES", 300);
    let root = common::temp_dir("contract", "gen");
    let mut failures = Vec::new();
    for seed in first..first + n {
        let dir = root.join(seed.to_string());
        let g = gen::generate(seed, &dir);
        match problem(&g) {
            Some(p) => failures.push(format!("seed {seed} ({}): {p}\n{}", g.board, g.dump())),
            None => std::fs::remove_dir_all(&dir).unwrap(),
        }
    }
    let count = failures.len();
    let first_failure = failures.into_iter().next().unwrap_or_default();
    assert!(
        count == 0,
        "{count} of {n} generated machines that check accepts do not boot; the first:\n{first_failure}"
    );
}
