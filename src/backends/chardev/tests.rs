//! Unit tests for the parent module, kept apart to keep the device file short.

use super::*;

fn parse(p: &mut EscapeParser, s: &[u8]) -> (Vec<u8>, Vec<Escape>) {
    let mut out = Vec::new();
    let mut other = Vec::new();
    for &b in s {
        match p.feed(b) {
            Escape::Forward(c) => out.push(c),
            Escape::Swallow => {}
            e => other.push(e),
        }
    }
    (out, other)
}

#[test]
fn escapes() {
    let mut p = EscapeParser::new();
    assert_eq!(parse(&mut p, b"ls\r"), (b"ls\r".to_vec(), vec![]));
    assert_eq!(parse(&mut p, b"a\x01\x01b"), (b"a\x01b".to_vec(), vec![]));
    assert_eq!(
        parse(&mut p, b"\x01zq"),
        (b"q".to_vec(), vec![]),
        "unknown escape dropped"
    );
    assert_eq!(parse(&mut p, b"\x01h"), (vec![], vec![Escape::Help]));
    // Split across reads.
    assert_eq!(parse(&mut p, b"c\x01"), (b"c".to_vec(), vec![]));
    assert_eq!(parse(&mut p, b"x"), (vec![], vec![Escape::Quit]));
    assert_eq!(parse(&mut p, b"x"), (b"x".to_vec(), vec![]), "state resets");
}

#[test]
fn file_and_null() {
    let dir = std::env::temp_dir().join(format!("vmrun-chardev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.log");
    std::fs::write(&path, b"old\n").unwrap();
    let mut c = open(&ChardevKind::File {
        path: path.clone(),
        append: true,
    })
    .unwrap();
    assert!(c.input.is_none());
    c.output.write_all(b"new\n").unwrap();
    drop(c);
    assert_eq!(std::fs::read(&path).unwrap(), b"old\nnew\n");
    let mut c = open(&ChardevKind::File {
        path: path.clone(),
        append: false,
    })
    .unwrap();
    c.output.write_all(b"x").unwrap();
    drop(c);
    assert_eq!(std::fs::read(&path).unwrap(), b"x");
    let bad = ChardevKind::File {
        path: dir.join("no/such/dir"),
        append: false,
    };
    assert!(matches!(open(&bad), Err(ChardevError::File { .. })));
    let mut n = open(&ChardevKind::Null).unwrap();
    n.output.write_all(b"gone").unwrap();
    assert!(n.input.is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn wait_readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 2000) == 1 }
}

#[test]
fn socket_serves_several_clients() {
    let dir = std::env::temp_dir().join(format!("vmrun-sock2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serial.sock");
    let mut c = open(&ChardevKind::Socket { path: path.clone() }).unwrap();
    let mut input = c.input.take().unwrap();
    let fd = input.fd();
    let mut buf = [0u8; 16];
    let mut a = UnixStream::connect(&path).unwrap();
    let mut b = UnixStream::connect(&path).unwrap();
    assert!(wait_readable(fd));
    assert_eq!(
        input.read_input(&mut buf).unwrap(),
        Input::Data(0),
        "both accepted"
    );
    c.output.write_all(b"out").unwrap();
    for peer in [&mut a, &mut b] {
        let mut got = [0u8; 3];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"out", "every viewer sees the output");
    }
    b.write_all(b"hi").unwrap();
    assert!(wait_readable(fd));
    assert_eq!(
        input.read_input(&mut buf).unwrap(),
        Input::Data(2),
        "any viewer types"
    );
    drop(a);
    c.output.write_all(b"x").unwrap();
    let mut got = [0u8; 1];
    b.read_exact(&mut got).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn socket_reconnects() {
    let dir = std::env::temp_dir().join(format!("vmrun-sock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serial.sock");
    let mut c = open(&ChardevKind::Socket { path: path.clone() }).unwrap();
    c.output.write_all(b"nobody listens").unwrap();
    let mut input = c.input.take().unwrap();
    let fd = input.fd();
    let mut buf = [0u8; 16];
    for round in 0..2 {
        let mut peer = UnixStream::connect(&path).unwrap();
        assert!(wait_readable(fd));
        assert_eq!(
            input.read_input(&mut buf).unwrap(),
            Input::Data(0),
            "accepted"
        );
        assert_eq!(input.fd(), fd, "same fd to poll");
        peer.write_all(b"hi").unwrap();
        assert!(wait_readable(fd));
        assert_eq!(input.read_input(&mut buf).unwrap(), Input::Data(2));
        assert_eq!(&buf[..2], b"hi");
        c.output.write_all(b"out").unwrap();
        let mut got = [0u8; 3];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"out", "round {round}");
        drop(peer);
        assert!(wait_readable(fd));
        assert_eq!(
            input.read_input(&mut buf).unwrap(),
            Input::Data(0),
            "client left"
        );
    }
    // Binding again over the stale socket works.
    drop(c);
    drop(input);
    assert!(open(&ChardevKind::Socket { path: path.clone() }).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pty_round_trip() {
    let Ok(mut c) = open(&ChardevKind::Pty) else {
        return;
    };
    let path = c.pty_path.clone().unwrap();
    let mut far = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    c.output.write_all(b"ping\n").unwrap();
    let mut got = [0u8; 5];
    far.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping\n", "raw: no CR added");
    far.write_all(b"k").unwrap();
    let mut input = c.input.take().unwrap();
    assert!(wait_readable(input.fd()));
    let mut buf = [0u8; 4];
    assert_eq!(input.read_input(&mut buf).unwrap(), Input::Data(1));
    assert_eq!(buf[0], b'k');
}
