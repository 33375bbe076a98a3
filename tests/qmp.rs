//! The QMP control socket of a running vmrun, driven by the QEMU project's client
//! (`qemu.qmp`, through tests/qmp/session.py) and by raw JSON: greeting, negotiation,
//! every command, events, two clients, bad input, the power button ending the run on
//! every board, pause/resume against the probe's tick counter, one machine per name,
//! and the same session against QEMU compared by shape (tests/qmp/shapes.py).
//!
//! Needs /dev/kvm, and for the Python tests an interpreter with qemu.qmp:
//! `VMRUN_PYTHON`, else `.ci/venv/bin/python` (`.ci/run` makes it).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmrun::control::ctl::Client;
use vmrun::control::json::{self, Json};

mod common;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with qemu.qmp, or None (see `common::require`).
fn python() -> Option<PathBuf> {
    let p = std::env::var_os("VMRUN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".ci/venv/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import qemu.qmp"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let why = "a Python with qemu.qmp (set VMRUN_PYTHON, or: python3 -m venv .ci/venv && \
               .ci/venv/bin/pip install qemu.qmp)";
    common::require(ok, why).then_some(p)
}

/// A vmrun running the probe with `idle=1`.
struct Vm {
    child: Option<Child>,
    dir: PathBuf,
    sock: PathBuf,
    log: PathBuf,
}

/// Machine `name` on `board` whose probe options are `opts` (after `quick=1 idle=1`);
/// `qmp`: pass `--qmp <dir>/q.sock` (else the runtime directory's socket).
fn start(name: &str, board: &str, opts: &str, qmp: bool) -> Vm {
    let dir = common::temp_dir("qmp", name);
    let log = dir.join("com1.log");
    let _ = std::fs::remove_file(&log);
    let cpus = if board == "microvm" { 1 } else { 2 };
    let text = format!(
        "[machine]\nname = \"{name}\"\nboard = \"{board}\"\nmemory = \"128MiB\"\ncpus = {cpus}\n\
         [boot]\ncmdline = \"quick=1 idle=1 {opts}\"\n\
         [[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n",
        log.display()
    );
    let file = dir.join("m.toml");
    std::fs::write(&file, text).unwrap();
    let sock = if qmp {
        dir.join("q.sock")
    } else {
        common::runtime_dir()
            .join("vmrun")
            .join(name)
            .join("qmp.sock")
    };
    let mut cmd = common::vmrun();
    cmd.args(["run", file.to_str().unwrap(), "--timeout", "120s"]);
    if qmp {
        cmd.arg("--qmp").arg(&sock);
    }
    let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
    let child = cmd.stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
    let vm = Vm {
        child: Some(child),
        dir,
        sock,
        log,
    };
    vm.wait_log("PROBE idle ready", 1);
    vm
}

impl Vm {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Waits until the COM1 log has `n` lines containing `what`.
    fn wait_log(&self, what: &str, n: usize) {
        let t0 = Instant::now();
        while self.log().matches(what).count() < n {
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "no {n} × {what:?} in the log:\n{}\nstderr: {}",
                self.log(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.sock).unwrap()
    }

    /// Waits for vmrun to end (at most a minute) and returns its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let t0 = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s.code();
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("vmrun did not end; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn event(c: &mut Client, name: &str) -> Json {
    loop {
        let e = c
            .next_event(Duration::from_secs(60))
            .unwrap()
            .unwrap_or_else(|| panic!("no {name} event"));
        if e.get("event").and_then(Json::as_str) == Some(name) {
            return e;
        }
    }
}

fn data(e: &Json) -> String {
    e.get("data").map(Json::to_qmp).unwrap_or_default()
}

#[test]
fn qemu_qmp_session_on_vmrun() {
    let Some(py) = python() else { return };
    if !common::kvm_usable() {
        return;
    }
    let mut vm = start("session", "q35", "", true);
    let out = vm.dir.join("vmrun.json");
    let script = root().join("tests/qmp/session.py");
    let st = Command::new(&py)
        .arg(&script)
        .args([&vm.sock, &out, &vm.dir])
        .arg("powerdown")
        .status()
        .unwrap();
    assert!(st.success(), "session.py failed; log:\n{}", vm.log());
    assert_eq!(vm.exit_code(), Some(0), "{}", vm.stderr());
    assert!(vm.log().contains("PROBE power button"), "{}", vm.log());
    let rec = json::parse(&std::fs::read(&out).unwrap()).unwrap();
    let r = |label: &str| rec.get("replies").unwrap().get(label).unwrap().to_qmp();
    assert_eq!(
        r("query-status-paused"),
        r#"{"return": {"status": "paused", "singlestep": false, "running": false}}"#
    );
    assert_eq!(r("query-name"), r#"{"return": {"name": "session"}}"#);
    assert!(r("query-cpus-fast").contains(r#""cpu-index": 1"#));
    let events: Vec<String> = match rec.get("events") {
        Some(Json::Array(a)) => a
            .iter()
            .map(|e| format!("{} {}", e.get("event").unwrap().to_qmp(), data(e)))
            .collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        events,
        [
            "\"STOP\" ",
            "\"RESUME\" ",
            "\"POWERDOWN\" ",
            r#""SHUTDOWN" {"guest": true, "reason": "guest-shutdown"}"#
        ]
    );
    let ppm = std::fs::read(vm.dir.join("shot.ppm")).unwrap();
    assert!(ppm.starts_with(b"P6\n"), "PPM header");
    let png = std::fs::read(vm.dir.join("shot.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "PNG signature");
}

#[test]
fn powerdown_ends_the_run_on_every_board() {
    if !common::kvm_usable() {
        return;
    }
    for board in ["pc", "q35", "microvm"] {
        let mut vm = start(&format!("pwr-{board}"), board, "", true);
        let mut c = vm.client();
        assert_eq!(c.execute("system_powerdown", None).unwrap(), Json::empty());
        event(&mut c, "POWERDOWN");
        let e = event(&mut c, "SHUTDOWN");
        assert_eq!(data(&e), r#"{"guest": true, "reason": "guest-shutdown"}"#);
        assert_eq!(vm.exit_code(), Some(0), "{board}: {}", vm.stderr());
        assert!(vm.log().contains("PROBE power button"), "{board}");
    }
}

/// The `n=` of every tick line.
fn ticks(log: &str) -> Vec<u64> {
    let lines = vmrun::boot::probe::parse_report(log).unwrap_or_default();
    (lines.iter())
        .filter(|l| l.tag == "tick")
        .filter_map(|l| l.get_u64("n"))
        .collect()
}

#[test]
fn pause_stops_the_probe_and_resume_goes_on() {
    if !common::kvm_usable() {
        return;
    }
    let mut vm = start("pause", "q35", "tickms=50", true);
    vm.wait_log("PROBE tick", 3);
    let mut c = vm.client();
    c.execute("stop", None).unwrap();
    event(&mut c, "STOP");
    let at_pause = ticks(&vm.log());
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(ticks(&vm.log()), at_pause, "the guest ran while paused");
    let st = c.execute("query-status", None).unwrap();
    assert_eq!(st.get("status"), Some(&Json::from("paused")));
    c.execute("cont", None).unwrap();
    event(&mut c, "RESUME");
    vm.wait_log("PROBE tick", at_pause.len() + 5);
    let after = ticks(&vm.log());
    let want: Vec<u64> = (1..=after.len() as u64).collect();
    assert_eq!(after, want, "ticks go on one by one, no burst, none lost");
    c.execute("quit", None).unwrap();
    assert_eq!(vm.exit_code(), Some(0));
}

/// A raw connection: lines as sent.
struct Raw {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Raw {
    fn connect(path: &Path) -> Raw {
        let w = UnixStream::connect(path).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut raw = Raw {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        };
        assert!(raw.line().starts_with(r#"{"QMP": {"version": {"qemu": "#));
        raw
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }

    fn cmd(&mut self, text: &str) -> String {
        self.w.write_all(text.as_bytes()).unwrap();
        self.line()
    }
}

fn error_desc(reply: &str) -> String {
    let v = json::parse(reply.as_bytes()).unwrap();
    let e = v
        .get("error")
        .unwrap_or_else(|| panic!("not an error: {reply}"));
    e.get("desc").and_then(Json::as_str).unwrap().to_string()
}

#[test]
fn raw_json_two_clients_and_bad_input() {
    if !common::kvm_usable() {
        return;
    }
    let mut vm = start("raw", "pc", "", true);
    let mut a = Raw::connect(&vm.sock);
    let mut b = Raw::connect(&vm.sock);
    let caps = r#"{"execute": "qmp_capabilities"}"#;
    assert_eq!(a.cmd(caps), r#"{"return": {}}"#);
    assert!(b
        .cmd(r#"{"execute": "query-status"}"#)
        .contains("CommandNotFound"));
    for (req, want) in [
        ("{\"execute\": }\n", "JSON parse error, expecting value"),
        (
            r#"{"execute": "nope", "id": 7}"#,
            "The command nope has not been found",
        ),
        (
            r#"{"execute": "screendump", "arguments": {"filename": true}}"#,
            "Invalid parameter type for 'filename', expected: string",
        ),
        (
            r#"{"execute": "cont", "arguments": {"x": 1}}"#,
            "Parameter 'x' is unexpected",
        ),
    ] {
        assert_eq!(error_desc(&a.cmd(req)), want, "{req}");
    }
    // A message of megabytes: an error, then the connection goes on.
    let mut huge = br#"{"execute": "query-name", "id": ""#.to_vec();
    huge.resize(3 << 20, b'x');
    huge.extend(b"\"}\n");
    let w = a.w.try_clone().unwrap();
    let t = std::thread::spawn(move || (&w).write_all(&huge).unwrap());
    assert_eq!(error_desc(&a.line()), "JSON token size limit exceeded");
    t.join().unwrap();
    assert_eq!(
        a.cmd(r#"{"execute": "query-name"}"#),
        r#"{"return": {"name": "raw"}}"#
    );
    // A client that asks for much and vanishes without reading.
    {
        let mut gone = Raw::connect(&vm.sock);
        let burst = format!("{caps}{}", r#"{"execute": "query-commands"}"#.repeat(500));
        gone.w.write_all(burst.as_bytes()).unwrap();
    }
    // Events go to negotiated clients only: b sees RESUME, not STOP.
    assert!(a
        .cmd(r#"{"execute": "stop"}"#)
        .contains(r#""event": "STOP""#));
    assert_eq!(a.line(), r#"{"return": {}}"#);
    assert_eq!(b.cmd(caps), r#"{"return": {}}"#);
    assert!(a
        .cmd(r#"{"execute": "cont"}"#)
        .contains(r#""event": "RESUME""#));
    assert_eq!(a.line(), r#"{"return": {}}"#);
    assert!(b.line().contains(r#""event": "RESUME""#));
    let shutdown = a.cmd(r#"{"execute": "quit", "id": "q"}"#);
    assert!(
        shutdown.ends_with(
            r#""event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}"#
        ),
        "{shutdown}"
    );
    assert_eq!(a.line(), r#"{"return": {}, "id": "q"}"#);
    assert!(b.line().contains("host-qmp-quit"));
    assert_eq!(vm.exit_code(), Some(0));
}

#[test]
fn system_reset_ends_the_run_like_the_reset_register() {
    if !common::kvm_usable() {
        return;
    }
    let mut vm = start("reset", "q35", "", true);
    let mut c = vm.client();
    c.execute("system_reset", None).unwrap();
    let e = event(&mut c, "SHUTDOWN");
    assert_eq!(
        data(&e),
        r#"{"guest": false, "reason": "host-qmp-system-reset"}"#
    );
    assert_eq!(vm.exit_code(), Some(3));
}

#[test]
fn one_machine_per_name_ctl_and_ps() {
    if !common::kvm_usable() {
        return;
    }
    let mut vm = start("named", "microvm", "", false);
    let pid = vm.child.as_ref().unwrap().id();
    let second = common::vmrun()
        .args(["run", vm.dir.join("m.toml").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`named` is already running") && err.contains(&format!("pid {pid}")),
        "{err}"
    );
    let ctl = |args: &[&str]| {
        let out = common::vmrun().args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(
        ctl(&["ctl", "named", "status"]),
        (Some(0), "running\n".into())
    );
    let (code, ps) = ctl(&["ps", "--json"]);
    assert_eq!(code, Some(0));
    let list = json::parse(ps.as_bytes()).unwrap();
    let Json::Array(list) = list else {
        panic!("{ps}")
    };
    assert_eq!(list.len(), 1, "{ps}");
    assert_eq!(list[0].get("pid"), Some(&Json::from(pid)));
    assert_eq!(list[0].get("status"), Some(&Json::from("running")));
    assert!(ctl(&["ps"]).1.contains("named"));
    assert_eq!(ctl(&["ctl", "named", "pause"]).0, Some(0));
    assert_eq!(ctl(&["ctl", "named", "status"]).1, "paused\n");
    assert_eq!(ctl(&["ctl", "named", "resume"]).0, Some(0));
    assert_eq!(
        ctl(&["ctl", "named", "powerdown", "--wait", "60"]).0,
        Some(0)
    );
    assert_eq!(vm.exit_code(), Some(0));
    assert!(!vm.sock.exists(), "the socket is removed at exit");
    assert_eq!(ctl(&["ps", "--json"]).1, "[]\n");
}

/// QEMU (q35, KVM) booting the probe with `idle=1` and a QMP socket.
fn start_qemu(dir: &Path) -> (Child, PathBuf, PathBuf) {
    let elf = dir.join("probe.elf");
    std::fs::write(&elf, vmrun::boot::probe::probe_elf()).unwrap();
    let (sock, log) = (dir.join("qemu.sock"), dir.join("qemu.log"));
    let _ = std::fs::remove_file(&log);
    let child = Command::new("qemu-system-x86_64")
        .args(["-M", "q35", "-accel", "kvm", "-nodefaults", "-no-reboot"])
        .args(["-display", "none", "-vga", "std", "-name", "session"])
        .args(["-smp", "2", "-m", "128M"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(&elf)
        .args(["-append", "quick=1 idle=1"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, sock, log)
}

#[test]
fn the_same_session_against_qemu_has_the_same_shapes() {
    let Some(py) = python() else { return };
    if !common::kvm_usable() || !common::have_tool("qemu-system-x86_64", "qemu-system-x86") {
        return;
    }
    let dir = common::temp_dir("qmp", "qemu");
    let (mut qemu, qsock, qlog) = start_qemu(&dir);
    let t0 = Instant::now();
    while !std::fs::read_to_string(&qlog)
        .unwrap_or_default()
        .contains("PROBE idle ready")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "QEMU's probe did not get idle"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let script = root().join("tests/qmp/session.py");
    let session = |sock: &Path, out: &Path| {
        let st = Command::new(&py)
            .arg(&script)
            .args([sock, out, &dir])
            .arg("powerdown")
            .status()
            .unwrap();
        assert!(st.success(), "session.py on {}", sock.display());
    };
    session(&qsock, &dir.join("qemu.json"));
    assert_eq!(qemu.wait().unwrap().code(), Some(0), "QEMU powered off");
    let mut vm = start("session-qemu", "q35", "", true);
    session(&vm.sock, &dir.join("vmrun.json"));
    assert_eq!(vm.exit_code(), Some(0));
    let out = Command::new(&py)
        .arg(root().join("tests/qmp/shapes.py"))
        .args([dir.join("vmrun.json"), dir.join("qemu.json")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replies differ from QEMU's:\n{text}");
    assert!(text.contains(" 0 differ"), "{text}");
}

#[test]
fn a_signal_ends_the_run_with_a_shutdown_event() {
    if !common::kvm_usable() {
        return;
    }
    let mut vm = start("signal", "pc", "", true);
    let mut c = vm.client();
    let pid = vm.child.as_ref().unwrap().id() as libc::pid_t;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let e = event(&mut c, "SHUTDOWN");
    assert_eq!(data(&e), r#"{"guest": false, "reason": "host-signal"}"#);
    assert_eq!(vm.exit_code(), Some(128 + libc::SIGTERM));
}

#[test]
fn snapshot_save_through_qemu_qmp() {
    let Some(py) = python() else { return };
    if !common::kvm_usable() {
        return;
    }
    let vm = start("qmpsnap", "pc", "tickms=100", true);
    let snap = vm.dir.join("snap");
    let out = vm.dir.join("snap.json");
    let st = Command::new(&py)
        .arg(root().join("tests/qmp/snapshot.py"))
        .args([&vm.sock, &snap, &out])
        .status()
        .unwrap();
    assert!(st.success(), "snapshot.py failed; {}", vm.stderr());
    let rec = json::parse(&std::fs::read(&out).unwrap()).unwrap();
    let r = |label: &str| rec.get("replies").unwrap().get(label).unwrap().to_qmp();
    let saved = r("save-paused");
    assert!(
        saved.contains("\"sha256\"") && saved.contains("\"paused-ms\""),
        "{saved}"
    );
    assert!(r("status-after").contains("\"paused\""), "stayed paused");
    assert!(
        r("save-again").contains("\"return\""),
        "{}",
        r("save-again")
    );
    assert!(
        r("status-running").contains("\"running\""),
        "resumed after the save"
    );
    assert!(
        r("save-nowhere").contains("GenericError"),
        "{}",
        r("save-nowhere")
    );
    assert!(
        r("save-bad-type").contains("Invalid parameter type for 'path', expected: string"),
        "{}",
        r("save-bad-type")
    );
    assert!(r("save-no-path").contains("Parameter 'path' is missing"));
    let events = rec.get("events").unwrap().to_qmp();
    assert_eq!(
        events, r#"["STOP", "RESUME", "STOP", "RESUME"]"#,
        "paused for each save, resumed as asked"
    );
    let manifest = snap.join("manifest.json");
    assert!(manifest.exists());
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    assert_eq!(m["format"], "vmrun-snapshot");
    assert_eq!(m["vcpus"], 2);
}
