//! The lab network with others: a stock QEMU (`-netdev dgram`) on a vmrun lab LAN and
//! straight on a vmrun dgram NIC; a LAN carried over UDP between two switches in two
//! network namespaces the test creates, and a switch UDP port facing QEMU's
//! dgram/inet; and a second user (`nobody`) who can neither send nor receive on a lab
//! network nor slip a directory of their own under a lab.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

mod common;
mod netlab;
use netlab::*;

const A_MAC: &str = "52:54:00:00:aa:01";
const Q_MAC: &str = "52:54:00:00:ee:05";

fn qemu_ok() -> bool {
    common::kvm_usable() && common::have_tool("qemu-system-x86_64", "qemu-system-x86")
}

fn probe_elf(dir: &Path) -> PathBuf {
    let p = dir.join("probe.elf");
    std::fs::write(&p, vmrun::boot::probe::probe_elf()).unwrap();
    p
}

fn unix_netdev(local: &Path, remote: &Path) -> String {
    format!(
        "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
        local.display(),
        remote.display()
    )
}

/// QEMU echoes, vmrun sends and receives; both report.
fn vmrun_against_qemu(vm: &Path, mut q: Probe) {
    q.wait_net();
    let a = Probe::vmrun(vm, &["netsend=4", "netrecv=4", "netwait=30000"]).finish();
    let q = q.finish();
    let got = a.lines.iter().find(|l| l.tag.starts_with("net rx"));
    let got = got.and_then(|l| l.get_u64("frames"));
    assert_eq!(got, Some(4), "{}\n{}", a.ctx, q.ctx);
    assert_eq!(a.line("net rx ok").get("from"), Some(Q_MAC), "{}", a.ctx);
    assert_eq!(q.get("net echo", "frames"), 4, "{}", q.ctx);
    assert_eq!(q.line("net echo").get("from"), Some(A_MAC), "{}", q.ctx);
}

#[test]
fn qemu_and_vmrun_on_one_lab_lan() {
    if !qemu_ok() {
        return;
    }
    let dir = lab_dir("netsw-interop", "qemu-lan");
    let ports = [unix_port("a"), unix_port("q"), unix_port("idle")];
    let cfg =
        json!({ "control": "ctl", "networks": [{ "name": "lan", "kind": "lan", "ports": ports }] });
    let mut sw = Switch::start(&dir, &cfg, &[]);
    let elf = probe_elf(&dir);
    // The two paths of the lab port `q`: QEMU binds `q`, sends to the switch's `sw/q`.
    let netdev = unix_netdev(&dir.join("q"), &dir.join("sw/q"));
    let q = Probe::qemu(
        &elf,
        &netdev,
        Q_MAC,
        &dir.join("q.log"),
        &["netecho=4", "netwait=30000"],
    );
    vmrun_against_qemu(&probe_machine(&dir, "a", A_MAC), q);
    let st = sw.client.status().unwrap();
    assert_eq!(st.port("q").unwrap().counters.rx_frames, 4);
    assert_eq!(st.port("idle").unwrap().counters.tx_dropped.no_peer, 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn qemu_straight_on_a_vmrun_dgram_nic() {
    if !qemu_ok() {
        return;
    }
    let dir = lab_dir("netsw-interop", "qemu-direct");
    let elf = probe_elf(&dir);
    let q = Probe::qemu(
        &elf,
        &unix_netdev(&dir.join("q.sock"), &dir.join("a.sock")),
        Q_MAC,
        &dir.join("q.log"),
        &["netecho=4", "netwait=30000"],
    );
    let nic = "backend = \"dgram\"\nlocal = \"a.sock\"\nremote = \"q.sock\"";
    vmrun_against_qemu(&machine(&dir, "a", A_MAC, nic), q);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_switch_udp_port_facing_qemu_dgram_inet() {
    if !qemu_ok() {
        return;
    }
    let dir = lab_dir("netsw-interop", "qemu-udp");
    let (sw_port, q_port) = (free_udp_port(), free_udp_port());
    let udp = json!({ "name": "q", "local": format!("udp://127.0.0.1:{sw_port}"),
                      "remote": format!("udp://127.0.0.1:{q_port}") });
    let cfg = json!({ "control": "ctl", "networks": [{ "name": "lan", "kind": "lan", "ports": [unix_port("a"), udp] }] });
    let _sw = Switch::start(&dir, &cfg, &[]);
    let netdev = format!(
        "dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port={q_port},\
         remote.type=inet,remote.host=127.0.0.1,remote.port={sw_port}"
    );
    let elf = probe_elf(&dir);
    let q = Probe::qemu(
        &elf,
        &netdev,
        Q_MAC,
        &dir.join("q.log"),
        &["netecho=4", "netwait=30000"],
    );
    vmrun_against_qemu(&probe_machine(&dir, "a", A_MAC), q);
    let _ = std::fs::remove_dir_all(&dir);
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Two hosts in one: namespaces `x` and `y` joined by a veth pair (10.77.0.1 and
/// .2). Each runs a switch whose LAN has a probe and a UDP port to the other switch.
#[test]
fn a_lan_across_two_namespaces_over_udp() {
    if !common::kvm_usable()
        || !common::require(is_root(), "network namespaces need root")
        || !common::have_tool("ip", "iproute2")
    {
        return;
    }
    let pid = std::process::id();
    let (x, y) = (
        Netns(format!("vmrun-x-{pid}")),
        Netns(format!("vmrun-y-{pid}")),
    );
    ip(&["netns", "add", &x.0]);
    ip(&["netns", "add", &y.0]);
    let vx = format!("vx{}", pid % 100000);
    let vy = format!("vy{}", pid % 100000);
    ip(&[
        "link", "add", &vx, "netns", &x.0, "type", "veth", "peer", "name", &vy, "netns", &y.0,
    ]);
    for (ns, dev, addr) in [(&x.0, &vx, "10.77.0.1/24"), (&y.0, &vy, "10.77.0.2/24")] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    let dir = lab_dir("netsw-interop", "netns");
    let side = |name: &str, me: &str, other: &str| {
        let d = dir.join(name);
        vmrun::backends::private_dir::ensure_private_dir(&d).unwrap();
        let udp = json!({ "name": format!("{name}-uplink"), "local": format!("udp://{me}:7700"),
                          "remote": format!("udp://{other}:7700") });
        let cfg = json!({ "control": "ctl", "networks": [{ "name": "lan", "kind": "lan",
                          "ports": [unix_port("node"), udp] }] });
        (d, cfg)
    };
    let (dx, cx) = side("x", "10.77.0.1", "10.77.0.2");
    let (dy, cy) = side("y", "10.77.0.2", "10.77.0.1");
    let mut sx = Switch::start(&dx, &cx, &["ip", "netns", "exec", &x.0]);
    let _sy = Switch::start(&dy, &cy, &["ip", "netns", "exec", &y.0]);
    // The probes themselves need no network namespace: their cables are unix sockets.
    let fa = probe_machine(&dx, "node", A_MAC);
    let fb = probe_machine(&dy, "node", "52:54:00:00:bb:02");
    let (a, b) = pair(
        &fa,
        &["netsend=4", "netrecv=4", "netwait=30000"],
        &fb,
        &["netecho=4", "netwait=30000"],
    );
    assert_eq!(a.get("net rx ok", "frames"), 4, "{}", a.ctx);
    assert_eq!(b.get("net echo", "frames"), 4, "{}", b.ctx);
    let st = sx.client.status().unwrap();
    let up = st.port("x-uplink").unwrap();
    assert_eq!((up.counters.tx_frames, up.counters.rx_frames), (4, 4));
    assert_eq!(up.remote, "udp://10.77.0.2:7700");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `python3 -c CODE` as `nobody`; returns its output.
fn as_nobody(code: &str) -> String {
    run(Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            code,
        ])
        .stderr(Stdio::piped()))
}

#[test]
fn a_second_user_can_neither_join_nor_prepare_a_lab() {
    if !common::require(is_root(), "switching to another user needs root")
        || !common::have_tool("setpriv", "util-linux")
        || !common::have_file("/usr/bin/python3", "python3")
    {
        return;
    }
    let dir = lab_dir("netsw-interop", "nobody");
    let mut sw = Switch::start(
        &dir,
        &json!({ "control": "ctl", "networks": [{
        "name": "lan", "kind": "lan", "ports": [unix_port("a"), unix_port("b")] }] }),
        &[],
    );
    let a = host_node(&dir, "a");
    wait_connected(&mut sw.client, "a");
    // The lab directory is 0700, its sockets 0600: nobody cannot reach a port (to send
    // or to bind a socket beside it and receive floods), nor the control socket.
    let d = dir.display();
    let out = as_nobody(&format!(
        r#"
import socket
def err(f):
    try:
        f(); return "ok"
    except OSError as e:
        return e.__class__.__name__
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
print("send", err(lambda: s.sendto(b"x" * 60, "{d}/sw/a")))
print("bind", err(lambda: s.bind("{d}/sw/evil")))
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
print("control", err(lambda: c.connect("{d}/ctl")))
"#
    ));
    assert_eq!(
        out,
        "send PermissionError\nbind PermissionError\ncontrol PermissionError\n"
    );
    assert!(drain(&a).is_empty());
    // Even where nobody may reach the socket files, a connected port accepts only its
    // node: the socket itself refuses everyone else.
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    let stranger = std::os::unix::net::UnixDatagram::bind(open.join("x")).unwrap();
    let err = stranger.send_to(&[0; 60], dir.join("sw/a")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    sw.stop();

    // A directory nobody created for the lab is refused, by the switch and by the
    // standalone switch backend alike.
    let trap = std::env::temp_dir().join(format!("vmrun-trap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&trap);
    std::fs::create_dir(&trap).unwrap();
    std::os::unix::fs::chown(&trap, Some(65534), Some(65534)).unwrap();
    let cfg = json!({ "control": "ctl", "networks": [{ "name": "l", "kind": "lan", "ports": [unix_port("a")] }] });
    std::fs::write(
        dir.join("trap.json"),
        cfg.to_string()
            .replace("\"ctl\"", &format!("\"{}/ctl\"", trap.display())),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmrun"))
        .args(["switch", "--config"])
        .arg(dir.join("trap.json"))
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(msg.contains("owned by uid 65534, not by you"), "{msg}");
    let m = machine(
        &dir,
        "s",
        A_MAC,
        &format!("backend = \"switch\"\nswitch = \"{}\"", trap.display()),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vmrun"))
        .args(["probe", m.to_str().unwrap(), "--timeout", "10s"])
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(msg.contains("owned by uid 65534, not by you"), "{msg}");
    let _ = std::fs::remove_dir_all(&trap);
    let _ = std::fs::remove_dir_all(&dir);
}
