//! What the lab-switch tests share: a private lab directory, a `vmrun switch` process
//! with its control client, probe machines with dgram NICs, and host-side nodes (plain
//! unix datagram sockets, as any program or QEMU can be).
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmrun::boot::probe::{parse_report, ProbeLine};
use vmrun::netsw::client::Client;

/// Keeps the probe quick: no memory test, SMP, timer, RTC or fw_cfg report.
pub const QUICK: &[&str] = &["memtest=0", "smp=0", "timer=0", "rtc=0", "fwcfg=0"];

/// A fresh 0700 directory for one test.
pub fn lab_dir(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmrun-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    vmrun::backends::private_dir::ensure_private_dir(&d).unwrap();
    d
}

/// A running `vmrun switch`, killed on drop.
pub struct Switch {
    pub child: Child,
    pub control: PathBuf,
    pub client: Client,
}

impl Switch {
    /// Writes `config` (JSON) to `dir/switch.json` and starts the switch, optionally
    /// under a command `prefix` (`ip netns exec NS`).
    pub fn start(dir: &Path, config: &serde_json::Value, prefix: &[&str]) -> Self {
        let file = dir.join("switch.json");
        std::fs::write(&file, serde_json::to_string_pretty(config).unwrap()).unwrap();
        let control = dir.join(config["control"].as_str().unwrap());
        let vmrun = env!("CARGO_BIN_EXE_vmrun");
        let mut args: Vec<&str> = prefix.to_vec();
        args.extend([vmrun, "switch", "--config", file.to_str().unwrap()]);
        let mut child = Command::new(args[0])
            .args(&args[1..])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let client = match Client::connect_wait(&control, Duration::from_secs(10)) {
            Ok(c) => c,
            Err(e) => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    let _ = s.read_to_string(&mut err);
                }
                panic!("switch did not start ({e}): {err}");
            }
        };
        Switch {
            child,
            control,
            client,
        }
    }

    /// Asks the switch to exit (captures flushed) and waits for it.
    pub fn stop(mut self) {
        self.client.shutdown().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "switch exited with {status}");
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unix port of the switch (`sw/<name>` in the lab) for a node bound at `<name>`.
pub fn unix_port(name: &str) -> serde_json::Value {
    serde_json::json!({ "name": name, "local": format!("sw/{name}"), "remote": name })
}

/// A microvm probe machine `name` in `dir` whose NIC binds `dir/<name>` and sends to
/// the switch port `dir/sw/<name>`.
pub fn probe_machine(dir: &Path, name: &str, mac: &str) -> PathBuf {
    let nic = format!("backend = \"dgram\"\nlocal = \"{name}\"\nremote = \"sw/{name}\"");
    machine(dir, name, mac, &nic)
}

/// A microvm with one NIC (`nic` lines) and COM1 in `dir/<name>.log`.
pub fn machine(dir: &Path, name: &str, mac: &str, nic: &str) -> PathBuf {
    let file = dir.join(format!("{name}.toml"));
    // Unique among concurrent tests: a running machine's name is registered.
    let unique = format!("{}-{name}", dir.file_name().unwrap().to_string_lossy());
    let text = format!(
        "[machine]\nname = \"{unique}\"\nboard = \"microvm\"\nmemory = \"64MiB\"\ncpus = 1\n\n\
         [[device]]\nid = \"net0\"\nkind = \"nic\"\nmac = \"{mac}\"\n{nic}\n\n\
         [[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{name}.log\"\n"
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// A probe being run by vmrun (or QEMU).
pub struct Probe {
    pub child: Child,
    pub log: PathBuf,
}

/// What a probe reported.
pub struct Done {
    pub lines: Vec<ProbeLine>,
    pub ctx: String,
    pub status: Option<i32>,
}

impl Done {
    pub fn line(&self, tag: &str) -> &ProbeLine {
        self.lines
            .iter()
            .find(|l| l.tag == tag)
            .unwrap_or_else(|| panic!("no `{tag}` line; {}", self.ctx))
    }

    pub fn get(&self, tag: &str, key: &str) -> u64 {
        self.line(tag)
            .get_u64(key)
            .unwrap_or_else(|| panic!("no {key} in `{tag}`; {}", self.ctx))
    }
}

impl Probe {
    /// `vmrun probe FILE -- QUICK opts`, COM1 in the machine's log.
    pub fn vmrun(file: &Path, opts: &[&str]) -> Self {
        let log = file.with_extension("log");
        let _ = std::fs::remove_file(&log);
        let child = Command::new(env!("CARGO_BIN_EXE_vmrun"))
            .arg("probe")
            .arg(file)
            .args(["--timeout", "90s", "--"])
            .args(QUICK.iter().chain(opts))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Probe { child, log }
    }

    /// The probe under QEMU (microvm, KVM) with `netdev` as its NIC's backend, COM1 in
    /// `log`.
    pub fn qemu(elf: &Path, netdev: &str, mac: &str, log: &Path, opts: &[&str]) -> Self {
        let _ = std::fs::remove_file(log);
        // pio=20000 after the net work: QEMU sends a guest's last frames from its main
        // loop, which a guest that exits at once can beat (they would never leave).
        let mut cmdline = vec![
            "exit=triple",
            "virtio_mmio=0xfeb00000",
            "virtio_mmio_n=24",
            "pio=20000",
        ];
        cmdline.extend(QUICK.iter().chain(opts));
        let child = Command::new("timeout")
            .args(["90", "qemu-system-x86_64", "-M", "microvm", "-accel", "kvm"])
            .args(["-nodefaults", "-no-reboot", "-display", "none", "-m", "64M"])
            .args(["-global", "virtio-mmio.force-legacy=false"])
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .args(["-netdev", netdev])
            .arg("-device")
            .arg(format!("virtio-net-device,netdev=n0,mac={mac}"))
            .arg("-kernel")
            .arg(elf)
            .args(["-append", &cmdline.join(" ")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Probe {
            child,
            log: log.into(),
        }
    }

    /// Waits until the log has `PROBE net ` (NIC up, buffers posted).
    pub fn wait_net(&mut self) -> &mut Self {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if std::fs::read_to_string(&self.log).is_ok_and(|s| s.contains("PROBE net ")) {
                return self;
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "probe exited ({s}) before its NIC was up: {}\n{err}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no net line in {}", self.log.display());
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn finish(mut self) -> Done {
        let status = self.child.wait().unwrap().code();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let text = self.text();
        let lines = parse_report(&text).unwrap_or_else(|e| panic!("bad report ({e}):\n{text}"));
        Done {
            lines,
            ctx: format!("{}:\n{text}\nstderr: {err}", self.log.display()),
            status,
        }
    }
}

/// Runs `a_opts` on A against B running `b_opts` (B first, up before A starts).
pub fn pair(fa: &Path, a_opts: &[&str], fb: &Path, b_opts: &[&str]) -> (Done, Done) {
    let mut b = Probe::vmrun(fb, b_opts);
    b.wait_net();
    let a = Probe::vmrun(fa, a_opts).finish();
    (a, b.finish())
}

/// A host-side node: a datagram socket at `dir/<name>` connected to `dir/sw/<name>`.
pub fn host_node(dir: &Path, name: &str) -> UnixDatagram {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let s = UnixDatagram::bind(&path).unwrap();
    // A restarted node waits until the switch found its new socket (EPERM until then).
    let t = Instant::now();
    while let Err(e) = s.connect(dir.join("sw").join(name)) {
        assert!(t.elapsed() < Duration::from_secs(3), "{name}: {e}");
        std::thread::sleep(Duration::from_millis(10));
    }
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

/// A 60-byte frame from `src` to `dst` with `tag` in its payload.
pub fn frame(dst: [u8; 6], src: [u8; 6], tag: u32) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(&tag.to_le_bytes());
    f.resize(60, 0);
    f
}

/// Frames `s` receives within its timeout.
pub fn drain(s: &UnixDatagram) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = s.recv(&mut buf) {
        v.push(buf[..n].to_vec());
    }
    v
}

/// tcpdump's one-line summaries (without the hex dumps it adds for unknown types).
pub fn summaries(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .collect()
}

/// Waits until the switch says port `name` is connected to its node.
pub fn wait_connected(c: &mut Client, name: &str) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if c.status().unwrap().port(name).is_some_and(|p| p.connected) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("port {name} never connected");
}

/// The output of a command, with its stderr, asserting success.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
