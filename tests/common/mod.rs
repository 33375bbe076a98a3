//! What the integration tests that boot the probe share: the /dev/kvm check, a temp
//! directory per test, and booting the probe with COM1 logged to a file.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use vmrun::boot::probe::{parse_report, ProbeLine};

/// Whether /dev/kvm can be used; says so on stderr when the test is skipped.
pub fn kvm_usable() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        eprintln!("skipped: /dev/kvm is not available or not accessible");
    }
    ok
}

/// A fresh directory for test `name` of suite `suite`, unique to this process.
pub fn temp_dir(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmrun-{suite}-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One probe run: how vmrun exited and what the probe reported.
pub struct Booted {
    pub status: Option<i32>,
    pub lines: Vec<ProbeLine>,
    pub log: String,
    pub stderr: String,
}

impl Booted {
    /// The report and vmrun's stderr, for assertion messages.
    pub fn ctx(&self) -> String {
        format!("{}\nstderr: {}", self.log, self.stderr)
    }

    /// Report lines whose tag is `tag` or starts with it ("timer" finds "timer ok"):
    /// the tag is every bare word before the first key=value.
    pub fn find(&self, tag: &str) -> Vec<&ProbeLine> {
        let prefix = format!("{tag} ");
        self.lines
            .iter()
            .filter(|l| l.tag == tag || l.tag.starts_with(&prefix))
            .collect()
    }
}

/// Boots the probe on `machine` (TOML text; COM1 is sent to a log file) with the probe
/// options `opts`, under `--timeout 60s`.
pub fn boot(suite: &str, name: &str, machine: &str, opts: &[&str]) -> Booted {
    let d = temp_dir(suite, name);
    let log = d.join("com1.log");
    let file = d.join("m.toml");
    let text = format!(
        "{machine}\n[[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n",
        log.display()
    );
    std::fs::write(&file, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmrun"));
    cmd.args(["probe", file.to_str().unwrap(), "--timeout", "60s"]);
    if !opts.is_empty() {
        cmd.arg("--").args(opts);
    }
    let out = cmd.output().unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let lines = parse_report(&log).unwrap_or_else(|e| panic!("{name}: bad report ({e}):\n{log}"));
    Booted {
        status: out.status.code(),
        lines,
        log,
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}
