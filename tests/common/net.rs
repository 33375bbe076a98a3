//! What the NIC tests share: machine files with one NIC on a lab switch, vmrun probe
//! processes started in the background, and the two-probe frame exchange.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmrun::boot::probe::{parse_report, ProbeLine};

/// Keeps the probe quick: no memory test, SMP, timer, RTC or fw_cfg report.
pub const QUICK: &[&str] = &["memtest=0", "smp=0", "timer=0", "rtc=0", "fwcfg=0"];

pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmrun-net-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A microvm with one NIC (`backend` lines given) and COM1 in `log`.
pub fn machine(dir: &Path, name: &str, mac: &str, backend: &str) -> (PathBuf, PathBuf) {
    machine_on(dir, "microvm", "", name, mac, backend)
}

/// A `board` machine with `extra` lines (buses) and one NIC (`backend` and `bus` lines
/// in `backend`), COM1 in `log`.
pub fn machine_on(
    dir: &Path,
    board: &str,
    extra: &str,
    name: &str,
    mac: &str,
    backend: &str,
) -> (PathBuf, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let file = dir.join(format!("{name}.toml"));
    let text = format!(
        "[machine]\nname = \"{name}\"\nboard = \"{board}\"\nmemory = \"64MiB\"\ncpus = 1\n{extra}\n\
         [[device]]\nid = \"net0\"\nkind = \"nic\"\nmac = \"{mac}\"\n{backend}\n\n\
         [[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n",
        log.display()
    );
    std::fs::write(&file, text).unwrap();
    (file, log)
}

pub fn spawn(prefix: &[&str], file: &Path, opts: &[&str]) -> Child {
    let vmrun = env!("CARGO_BIN_EXE_vmrun");
    let mut args: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    args.push(vmrun.into());
    args.extend([
        "probe".into(),
        file.display().to_string(),
        "--timeout".into(),
        "60s".into(),
        "--".into(),
    ]);
    args.extend(QUICK.iter().chain(opts).map(|s| s.to_string()));
    Command::new(&args[0])
        .args(&args[1..])
        .env("XDG_RUNTIME_DIR", super::runtime_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub struct Done {
    pub lines: Vec<ProbeLine>,
    pub ctx: String,
    pub status: Option<i32>,
}

pub fn finish(mut c: Child, log: &Path) -> Done {
    let status = c.wait().unwrap().code();
    let mut err = String::new();
    if let Some(mut e) = c.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines = parse_report(&text).unwrap_or_else(|e| panic!("bad report ({e}):\n{text}"));
    Done {
        lines,
        ctx: format!("{}:\n{text}\nstderr: {err}", log.display()),
        status,
    }
}

pub fn line<'a>(d: &'a Done, tag: &str) -> &'a ProbeLine {
    d.lines
        .iter()
        .find(|l| l.tag == tag)
        .unwrap_or_else(|| panic!("no `{tag}` line; {}", d.ctx))
}

/// Waits until the log has a `PROBE net ` line (the NIC is up, its buffers posted).
pub fn wait_for_net(log: &Path, child: &mut Child) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if std::fs::read_to_string(log).is_ok_and(|s| s.contains("PROBE net ")) {
            return;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!(
                "probe exited ({s}) before its NIC was up: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no net line in {}", log.display());
}

/// B echoes, A sends and receives; `a_dev` starts A's `dev=`.
pub fn exchange(
    sw: &Path,
    (fa, la): (PathBuf, PathBuf),
    (fb, lb): (PathBuf, PathBuf),
    a_dev: &str,
) {
    // B answers what it gets; A broadcasts, then waits for B's unicast answers.
    let mut b = spawn(&[], &fb, &["netecho=4", "netwait=30000"]);
    wait_for_net(&lb, &mut b);
    assert!(sw.join("52540000bb02.sock").exists());
    let a = spawn(&[], &fa, &["netsend=4", "netrecv=4", "netwait=30000"]);
    let a = finish(a, &la);
    let b = finish(b, &lb);
    for d in [&a, &b] {
        assert_eq!(d.status, Some(0), "{}", d.ctx);
        assert_eq!(line(d, "net").get("link"), Some("up"), "{}", d.ctx);
    }
    assert_eq!(line(&a, "net").get("mac"), Some("52:54:00:00:aa:01"));
    assert!(
        line(&a, "net")
            .get("dev")
            .is_some_and(|d| d.starts_with(a_dev)),
        "{}",
        a.ctx
    );
    assert_eq!(line(&a, "net tx").get_u64("frames"), Some(4), "{}", a.ctx);
    let rx = line(&a, "net rx ok");
    assert_eq!(rx.get_u64("frames"), Some(4), "{}", a.ctx);
    assert_eq!(rx.get("from"), Some("52:54:00:00:bb:02"), "{}", a.ctx);
    let echo = line(&b, "net echo");
    assert_eq!(echo.get_u64("frames"), Some(4), "{}", b.ctx);
    assert_eq!(echo.get("from"), Some("52:54:00:00:aa:01"), "{}", b.ctx);
    // Both ports are gone: the sockets were removed at exit.
    assert_eq!(std::fs::read_dir(sw).unwrap().count(), 0);
}
