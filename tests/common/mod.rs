//! What the integration tests that boot the probe share: the /dev/kvm check, a temp
//! directory per test, and booting the probe with COM1 logged to a file.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use vmrun::boot::probe::{parse_report, ProbeLine};

pub mod guest;
pub mod net;

/// A prerequisite of a test (`/dev/kvm`, a tool, a package's file). Present: true.
/// Missing: under `CI=true` the test fails with `why` (CI must not pass tests that did
/// not run); elsewhere it says `skipped: why` on stderr and returns false.
pub fn require(present: bool, why: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("prerequisite missing under CI=true: {why}");
    }
    eprintln!("skipped: {why}");
    false
}

/// Whether /dev/kvm can be used (see [`require`]).
pub fn kvm_usable() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    require(ok, "/dev/kvm is not available or not accessible")
}

/// Whether `cmd` runs (`cmd --version` or `-V` answers); `package` names what installs it.
pub fn have_tool(cmd: &str, package: &str) -> bool {
    let runs = |arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok()
    };
    require(
        runs("--version") || runs("-V"),
        &format!("{cmd} not found (install {package})"),
    )
}

/// Whether the file `path` exists; `package` names what installs it.
pub fn have_file(path: &str, package: &str) -> bool {
    require(
        std::path::Path::new(path).exists(),
        &format!("{path} is missing (install {package})"),
    )
}

/// The `XDG_RUNTIME_DIR` of the vmrun processes this test thread starts: one per
/// test, so machines of parallel tests never share a runtime directory (every run
/// registers its name there, and a second machine with a name in use is refused).
pub fn runtime_dir() -> PathBuf {
    let t = std::thread::current();
    let name: String = (t.name().unwrap_or("main").chars())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let d = std::env::temp_dir().join(format!("vmrun-rt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `vmrun` with this test's own runtime directory (see [`runtime_dir`]).
pub fn vmrun() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmrun"));
    c.env("XDG_RUNTIME_DIR", runtime_dir());
    c
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
    let mut cmd = vmrun();
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

/// The probe's virtio-blk pattern (`blksectors=N`): byte `i` of sector `s`.
pub fn blk_pattern(s: usize, i: usize) -> u8 {
    (s * 31 + i * 7 + 1) as u8
}

/// `disk` (the guest's bytes of image `what`) holds the probe's pattern in its first
/// `sectors` sectors, then only `rest` bytes.
pub fn assert_blk_pattern(disk: &[u8], sectors: usize, rest: u8, what: &str) {
    for s in 0..sectors {
        for i in 0..512 {
            assert_eq!(
                disk[s * 512 + i],
                blk_pattern(s, i),
                "{what}: sector {s} byte {i}"
            );
        }
    }
    assert!(
        disk[sectors * 512..].iter().all(|&b| b == rest),
        "{what}: bytes past the written sectors changed"
    );
}
