//! virtio-net end to end: probes on microvm (virtio-mmio) and on q35 (virtio-pci, one
//! NIC on bus 0, the other behind a PCIe root port) exchange frames over the lab
//! switch (two vmrun processes, both directions, broadcast and learned unicast), and
//! through a TAP device in a network namespace the test creates (root and `ip`
//! needed; skipped with a message otherwise). Needs /dev/kvm.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::kvm_usable;
use common::net::*;

#[test]
fn two_probes_on_a_lab_switch() {
    if !kvm_usable() {
        return;
    }
    let dir = tempdir("switch");
    let sw = dir.join("sw");
    let backend = format!("backend = \"switch\"\nswitch = \"{}\"", sw.display());
    let (fa, la) = machine(&dir, "a", "52:54:00:00:aa:01", &backend);
    let (fb, lb) = machine(&dir, "b", "52:54:00:00:bb:02", &backend);
    exchange(&sw, (fa, la), (fb, lb), "mmio@");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same exchange over virtio-pci on q35: A's NIC on bus 0, B's behind a PCIe root
/// port (bus 1, numbered by the probe; its BAR inside the window the probe programs).
#[test]
fn two_q35_probes_on_a_lab_switch_over_pci() {
    if !kvm_usable() {
        return;
    }
    let dir = tempdir("switch-q35");
    let sw = dir.join("sw");
    let backend = format!("backend = \"switch\"\nswitch = \"{}\"", sw.display());
    let (fa, la) = machine_on(&dir, "q35", "", "a", "52:54:00:00:aa:01", &backend);
    let rp = "\n[[bus]]\nid = \"rp0\"\nkind = \"pcie-root-port\"\naddr = \"1c.0\"\n";
    let (fb, lb) = machine_on(
        &dir,
        "q35",
        rp,
        "b",
        "52:54:00:00:bb:02",
        &format!("{backend}\nbus = \"rp0\""),
    );
    exchange(&sw, (fa, la), (fb, lb), "pci@00:");
    let b = std::fs::read_to_string(dir.join("b.log")).unwrap_or_default();
    assert!(b.contains("PROBE net dev=pci@01:00.0 "), "{b}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0xcc, 3];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];

/// A test frame as the probe builds them (firmware/virtio_net.c).
fn test_frame(counter: u32) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(b"VMRUNNET");
    f.push(0);
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&counter.to_le_bytes());
    f.resize(60, 0);
    f
}

/// In the namespace (this thread only): a packet socket on `tap0`; waits for `want`
/// test frames from the guest, then sends `send` test frames to it. Returns how many
/// guest frames it saw.
fn host_side(ns: &str, want: usize, send: u32) -> usize {
    let nsf = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: setns on an fd we own; it moves only this thread into the namespace.
    assert_eq!(
        unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&nsf), libc::CLONE_NEWNET) },
        0
    );
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(c"tap0".as_ptr()) };
    assert!(ifindex > 0);
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
    // SAFETY: binds our socket to a valid sockaddr_ll of `len` bytes.
    assert_eq!(
        unsafe { libc::bind(fd, &sll as *const _ as *const libc::sockaddr, len) },
        0
    );
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: sets a timeval option on our socket.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    let mut seen = 0;
    let t = Instant::now();
    let mut buf = [0u8; 2048];
    while seen < want && t.elapsed() < Duration::from_secs(60) {
        // SAFETY: reads into a buffer of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n >= 22
            && buf[6..12] == GUEST_MAC
            && buf[12..14] == [0x88, 0xb5]
            && &buf[14..22] == b"VMRUNNET"
        {
            seen += 1;
        }
    }
    for k in 0..send {
        let f = test_frame(k);
        // SAFETY: writes a buffer of its length to our bound socket.
        let n = unsafe { libc::send(fd, f.as_ptr() as *const libc::c_void, f.len(), 0) };
        assert_eq!(n, f.len() as isize, "{}", std::io::Error::last_os_error());
    }
    // SAFETY: we own the fd.
    unsafe { libc::close(fd) };
    seen
}

#[test]
fn tap_in_a_network_namespace() {
    if !kvm_usable() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the TAP test needs root (network namespaces)");
        return;
    }
    if !ip(&["-V"]) {
        eprintln!("skipped: the TAP test needs the `ip` command (iproute2)");
        return;
    }
    let name = format!("vmrun-test-{}", std::process::id());
    if !ip(&["netns", "add", &name]) {
        eprintln!("skipped: cannot create a network namespace");
        return;
    }
    let ns = Netns(name);
    assert!(ip(&["-n", &ns.0, "tuntap", "add", "tap0", "mode", "tap"]));
    assert!(ip(&["-n", &ns.0, "link", "set", "tap0", "up"]));
    let dir = tempdir("tap");
    let (file, log) = machine(
        &dir,
        "t",
        "52:54:00:00:cc:03",
        "backend = \"tap\"\ntap = \"tap0\"",
    );
    let nsname = ns.0.clone();
    let host = std::thread::spawn(move || host_side(&nsname, 3, 2));
    let child = spawn(
        &["ip", "netns", "exec", &ns.0],
        &file,
        &["netsend=3", "netrecv=2", "netwait=30000"],
    );
    let d = finish(child, &log);
    let seen = host.join().unwrap();
    assert_eq!(d.status, Some(0), "{}", d.ctx);
    assert_eq!(seen, 3, "frames the host saw on tap0; {}", d.ctx);
    assert_eq!(line(&d, "net").get("link"), Some("up"), "{}", d.ctx);
    let rx = line(&d, "net rx ok");
    assert_eq!(rx.get_u64("frames"), Some(2), "{}", d.ctx);
    assert_eq!(rx.get("from"), Some("02:00:00:00:00:99"), "{}", d.ctx);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_tap_device_is_a_clear_error() {
    if !kvm_usable() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("skipped: as root vmrun creates the device");
        return;
    }
    let dir = tempdir("notap");
    let (file, _) = machine(
        &dir,
        "n",
        "52:54:00:00:dd:04",
        "backend = \"tap\"\ntap = \"vmrunnotap0\"",
    );
    let out = common::vmrun()
        .args(["probe", file.to_str().unwrap(), "--timeout", "10s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ip tuntap add vmrunnotap0 mode tap user $USER"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
