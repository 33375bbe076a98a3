//! The snapshot contract over generated machines (tests/gen): each machine the
//! generator makes — every board, bus topology and device kind — boots the probe,
//! is snapshotted while it idles, and restored; the restored guest goes on ticking
//! and powers off cleanly when told. 30 cases by default
//! (`VMRUN_SNAPSHOT_CASES=N`, `VMRUN_SNAPSHOT_SEED=S`).

mod common;
mod gen;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spawn(args: &[&str], dir: &Path, what: &str) -> Child {
    let err = std::fs::File::create(dir.join(format!("{what}.stderr"))).unwrap();
    common::vmrun()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap()
}

/// Waits until the COM1 log has `what`, or the process ended, or 60 s.
fn wait_log(log: &Path, what: &str, child: &mut Child) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) {
            return Ok(());
        }
        if let Ok(Some(s)) = child.try_wait() {
            return Err(format!("vmrun ended ({s}) before {what:?}:\n{text}"));
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            return Err(format!("no {what:?} in 60 s:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ctl(sock: &Path, args: &[&str]) -> Result<(), String> {
    let out = common::vmrun()
        .arg("ctl")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn finish(mut child: Child) -> Option<i32> {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code();
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn round_trip(g: &gen::Generated, dir: &Path) -> Result<(), String> {
    gen::check(&g.path).map_err(|e| format!("check rejects it: {e}"))?;
    let sock = dir.join("q.sock");
    let snap = dir.join("snap");
    let (file, s) = (g.path.to_str().unwrap(), sock.to_str().unwrap());
    let mut first = spawn(
        &[
            "probe",
            file,
            "--qmp",
            s,
            "--timeout",
            "60s",
            "--",
            "quick=1",
            "idle=1",
            "tickms=50",
        ],
        dir,
        "boot",
    );
    wait_log(&g.com1_log, "PROBE tick n=2 ", &mut first)?;
    ctl(&sock, &["snapshot", "--paused", snap.to_str().unwrap()])?;
    ctl(&sock, &["quit"])?;
    if finish(first) != Some(0) {
        return Err("the first run did not end cleanly".into());
    }
    // The restored run opens COM1's log afresh: only what it prints counts.
    let _ = std::fs::remove_file(&g.com1_log);
    let mut second = spawn(
        &[
            "run",
            "--restore",
            snap.to_str().unwrap(),
            "--qmp",
            s,
            "--timeout",
            "60s",
        ],
        dir,
        "restore",
    );
    let ticked = wait_log(&g.com1_log, "PROBE tick n=", &mut second);
    let err = || std::fs::read_to_string(dir.join("restore.stderr")).unwrap_or_default();
    if let Err(e) = ticked {
        return Err(format!("after restore: {e}\nstderr: {}", err()));
    }
    ctl(&sock, &["powerdown"]).map_err(|e| format!("{e}\nstderr: {}", err()))?;
    let code = finish(second);
    let log = std::fs::read_to_string(&g.com1_log).unwrap_or_default();
    if code != Some(0) || log.contains("PROBE fault") || !log.contains("PROBE power button") {
        return Err(format!(
            "restored run ended with {code:?}:\n{log}\nstderr: {}",
            err()
        ));
    }
    Ok(())
}

#[test]
fn every_generated_machine_restores() {
    if !common::kvm_usable() {
        return;
    }
    let first = env_u64("VMRUN_SNAPSHOT_SEED", 1000);
    let n = env_u64("VMRUN_SNAPSHOT_CASES", 30);
    let root = common::temp_dir("snapshot-contract", "gen");
    let mut failures = Vec::new();
    for seed in first..first + n {
        let dir = root.join(seed.to_string());
        let g = gen::generate(seed, &dir);
        match round_trip(&g, &dir) {
            Ok(()) => std::fs::remove_dir_all(&dir).unwrap(),
            Err(p) => failures.push(format!("seed {seed} ({}): {p}\n{}", g.board, g.dump())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} generated machines do not snapshot and restore; the first:\n{}",
        failures.len(),
        failures[0]
    );
}
