use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) fn tempdir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "vmrun-dg-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    private_dir::ensure_private_dir(&d).unwrap();
    d
}

fn unix(d: &Path, n: &str) -> Endpoint {
    Endpoint::Unix(d.join(n))
}

fn pair(d: &Path) -> (DgramSocket, DgramSocket) {
    let a = DgramSocket::open(&unix(d, "a"), &unix(d, "b")).unwrap();
    let b = DgramSocket::open(&unix(d, "b"), &unix(d, "a")).unwrap();
    (a, b)
}

fn drain(s: &mut DgramSocket) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(n) = s.recv(&mut buf).unwrap() {
        v.push(buf[..n].to_vec());
    }
    v
}

#[test]
fn endpoints_parse() {
    let base = Path::new("/lab");
    assert_eq!(
        Endpoint::parse("x.sock", base).unwrap(),
        Endpoint::Unix("/lab/x.sock".into())
    );
    assert_eq!(
        Endpoint::parse("/abs", base).unwrap(),
        Endpoint::Unix("/abs".into())
    );
    assert_eq!(
        Endpoint::parse("udp://[::1]:5000", base).unwrap(),
        Endpoint::Udp("[::1]:5000".into())
    );
    for bad in ["udp://host", "udp://:5", "udp://h:99999", "tcp://h:1", ""] {
        assert!(Endpoint::parse(bad, base).is_err(), "{bad}");
    }
    assert_eq!(
        Endpoint::parse("udp://h:1", base).unwrap().to_string(),
        "udp://h:1"
    );
}

#[test]
fn unix_pair_both_ways_and_sockets_0600() {
    let d = tempdir("pair");
    let (mut a, mut b) = pair(&d);
    // A was bound before B existed: it connects on its first send.
    let now = Instant::now();
    assert_eq!(a.send(b"one", now).unwrap(), Sent::Sent);
    assert_eq!(b.send(b"two", now).unwrap(), Sent::Sent);
    assert_eq!(drain(&mut b), vec![b"one".to_vec()]);
    assert_eq!(drain(&mut a), vec![b"two".to_vec()]);
    let mode = std::fs::metadata(d.join("a")).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    drop((a, b));
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
    std::fs::remove_dir(&d).unwrap();
}

#[test]
fn connected_pair_queues_more_than_max_dgram_qlen() {
    let d = tempdir("qlen");
    let (mut a, mut b) = pair(&d);
    let now = Instant::now();
    a.maintain(now + RETRY);
    let f = [0u8; 1514];
    let mut n = 0;
    while a.send(&f, now).unwrap() == Sent::Sent {
        n += 1;
    }
    assert!(n > 50, "only {n} frames queued");
    assert_eq!(drain(&mut b).len(), n);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn foreign_senders_are_not_heard() {
    let d = tempdir("foreign");
    let (mut a, _b) = pair(&d);
    // Not connected yet (A's peer came after A): a stranger's frame is ignored.
    let x = UnixDatagram::bind(d.join("x")).unwrap();
    x.send_to(b"evil", d.join("a")).unwrap();
    assert!(drain(&mut a).is_empty());
    // Connected: the kernel refuses the stranger.
    a.maintain(Instant::now() + RETRY);
    assert!(a.connected());
    assert!(x.send_to(b"evil", d.join("a")).is_err());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_restarted_peer_is_plugged_in_again() {
    let d = tempdir("restart");
    let (mut a, b) = pair(&d);
    let t = Instant::now();
    assert_eq!(a.send(b"1", t).unwrap(), Sent::Sent);
    drop(b);
    // B is gone: nothing to send to (and the kernel disconnected A).
    assert_eq!(a.send(b"2", t).unwrap(), Sent::NoPeer);
    let mut b = DgramSocket::open(&unix(&d, "b"), &unix(&d, "a")).unwrap();
    assert!(b.connected());
    assert_eq!(a.send(b"3", t + RETRY).unwrap(), Sent::Sent);
    assert_eq!(drain(&mut b), vec![b"3".to_vec()]);
    // A peer replaced while A is idle: the new B cannot connect (A is still connected
    // to the old B) until A's maintain finds the new socket.
    drop(b);
    let mut b = DgramSocket::open(&unix(&d, "b"), &unix(&d, "a")).unwrap();
    assert!(!b.connected());
    a.maintain(Instant::now() + Duration::from_secs(1));
    assert_eq!(a.send(b"4", Instant::now()).unwrap(), Sent::Sent);
    assert_eq!(drain(&mut b), vec![b"4".to_vec()]);
    b.maintain(Instant::now() + RETRY);
    assert!(b.connected());
    assert_eq!(b.send(b"5", Instant::now()).unwrap(), Sent::Sent);
    assert_eq!(drain(&mut a), vec![b"5".to_vec()]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn stale_live_and_foreign_files_at_the_local_path() {
    let d = tempdir("stale");
    drop(UnixDatagram::bind(d.join("a")).unwrap());
    let a = DgramSocket::open(&unix(&d, "a"), &unix(&d, "b")).unwrap();
    let e = DgramSocket::open(&unix(&d, "a"), &unix(&d, "b")).unwrap_err();
    assert!(matches!(e, DgramError::InUse(_)), "{e}");
    drop(a);
    std::fs::write(d.join("f"), b"data").unwrap();
    let e = DgramSocket::open(&unix(&d, "f"), &unix(&d, "b")).unwrap_err();
    assert!(matches!(e, DgramError::NotSocket(_)), "{e}");
    assert!(d.join("f").exists());
    let e = DgramSocket::open(&unix(&d, "a"), &Endpoint::Udp("127.0.0.1:1".into())).unwrap_err();
    assert!(matches!(e, DgramError::Mixed { .. }), "{e}");
    let long = Endpoint::Unix(d.join("x".repeat(120)));
    assert!(matches!(
        DgramSocket::open(&long, &unix(&d, "b")),
        Err(DgramError::PathTooLong(_))
    ));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn udp_pair_on_loopback() {
    let free = || {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (pa, pb) = (free(), free());
    let ep = |p: u16| Endpoint::Udp(format!("127.0.0.1:{p}"));
    let mut a = DgramSocket::open(&ep(pa), &ep(pb)).unwrap();
    let now = Instant::now();
    // Nobody there yet: ICMP port unreachable is not an error.
    for _ in 0..3 {
        a.send(b"lost", now).unwrap();
    }
    let mut b = DgramSocket::open(&ep(pb), &ep(pa)).unwrap();
    assert!(drain(&mut a).is_empty());
    assert_eq!(a.send(b"hi", now).unwrap(), Sent::Sent);
    assert_eq!(b.send(b"yo", now).unwrap(), Sent::Sent);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(drain(&mut b), vec![b"hi".to_vec()]);
    assert_eq!(drain(&mut a), vec![b"yo".to_vec()]);
    assert!(a.buffers().0 > 0);
}
