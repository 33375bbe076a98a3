//! The server end to end over a real unix socket, with [`FakeTarget`] behind it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::fake::FakeTarget;
use super::json::{self, Json};
use super::{ControlServer, ControlTarget, EventSink};

struct Setup {
    server: Option<ControlServer>,
    target: Arc<FakeTarget>,
    path: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        drop(self.server.take());
        let _ = std::fs::remove_file(&self.path);
    }
}

fn setup(name: &str, tweak: impl FnOnce(&mut FakeTarget)) -> Setup {
    let path = std::env::temp_dir().join(format!("vmrun-qmp-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let events = EventSink::new().unwrap();
    let mut fake = FakeTarget::new(events.clone());
    tweak(&mut fake);
    let target = Arc::new(fake);
    let server = ControlServer::start(listener, target.clone(), events).unwrap();
    Setup {
        server: Some(server),
        target,
        path,
    }
}

struct Client {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Client {
    /// Connects and reads the greeting.
    fn connect(s: &Setup) -> (Client, Json) {
        let w = UnixStream::connect(&s.path).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Client {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        };
        let g = c.recv_raw();
        (c, json::parse(g.as_bytes()).unwrap())
    }

    fn negotiated(s: &Setup) -> Client {
        let (mut c, _) = Client::connect(s);
        assert_eq!(
            c.cmd(r#"{"execute": "qmp_capabilities"}"#),
            "{\"return\": {}}"
        );
        c
    }

    fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).unwrap();
    }

    /// One line as sent, `\r\n` checked and stripped.
    fn recv_raw(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        assert!(l.ends_with("\r\n"), "{l:?}");
        l.truncate(l.len() - 2);
        l
    }

    /// Sends one request (no newline, as qemu.qmp does) and returns the next line.
    fn cmd(&mut self, text: &str) -> String {
        self.send(text);
        self.recv_raw()
    }

    fn recv(&mut self) -> Json {
        json::parse(self.recv_raw().as_bytes()).unwrap()
    }

    fn desc(&mut self, text: &str) -> String {
        self.send(text);
        let v = self.recv();
        let e = v.get("error").unwrap_or_else(|| panic!("{text}: {v:?}"));
        e.get("desc").and_then(Json::as_str).unwrap().to_string()
    }
}

fn event_name(v: &Json) -> &str {
    v.get("event").and_then(Json::as_str).unwrap_or("")
}

#[test]
fn greeting_and_negotiation() {
    let s = setup("nego", |_| {});
    let (mut c, g) = Client::connect(&s);
    let qmp = g.get("QMP").unwrap();
    assert_eq!(qmp.get("capabilities"), Some(&Json::Array(vec![])));
    let v = qmp.get("version").unwrap();
    assert_eq!(v.get("qemu").unwrap().get("major"), Some(&Json::Int(7)));
    assert!(v
        .get("package")
        .and_then(Json::as_str)
        .unwrap()
        .starts_with("vmrun "));
    assert_eq!(
        c.cmd(r#"{"execute": "query-status", "id": 5}"#),
        r#"{"id": 5, "error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}"#
    );
    assert_eq!(
        c.cmd(r#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#),
        r#"{"error": {"class": "GenericError", "desc": "Capability 'oob' not available"}}"#
    );
    assert_eq!(
        c.cmd(r#"{"execute": "qmp_capabilities", "id": {"k": [1, "x"]}}"#),
        r#"{"return": {}, "id": {"k": [1, "x"]}}"#
    );
    assert_eq!(
        c.cmd(r#"{"execute": "qmp_capabilities"}"#),
        r#"{"error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete, command ignored"}}"#
    );
    assert_eq!(
        c.cmd(r#"{"execute": "query-status"}"#),
        r#"{"return": {"status": "running", "singlestep": false, "running": true}}"#
    );
}

#[test]
fn every_command_answers() {
    let s = setup("all", |_| {});
    let mut c = Client::negotiated(&s);
    c.send(r#"{"execute": "query-commands"}"#);
    let names: Vec<String> = match c.recv().get("return") {
        Some(Json::Array(a)) => a
            .iter()
            .map(|e| e.get("name").and_then(Json::as_str).unwrap().to_string())
            .collect(),
        other => panic!("{other:?}"),
    };
    for want in [
        "query-version",
        "query-cpus-fast",
        "screendump",
        "query-chardev",
        "quit",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let cpus = c.cmd(r#"{"execute": "query-cpus-fast"}"#);
    assert!(cpus.starts_with(r#"{"return": [{"thread-id": 1000, "props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "qom-path": "#), "{cpus}");
    assert_eq!(
        c.cmd(r#"{"execute": "query-chardev"}"#),
        r#"{"return": [{"frontend-open": true, "filename": "pty:/dev/pts/9", "label": "com1"}]}"#
    );
    assert_eq!(
        c.cmd(r#"{"execute": "query-name"}"#),
        r#"{"return": {"name": "fake"}}"#
    );
    assert_eq!(
        c.cmd(r#"{"execute": "query-memory-size-summary"}"#),
        r#"{"return": {"base-memory": 67108864, "plugged-memory": 0}}"#
    );
    // Every command in the table, with no arguments: a reply, never silence.
    for n in names.iter().filter(|n| *n != "quit") {
        c.send(&format!(r#"{{"execute": "{n}", "id": "{n}"}}"#));
        loop {
            let v = c.recv();
            if v.get("event").is_none() {
                assert_eq!(v.get("id"), Some(&Json::from(n.as_str())), "{v:?}");
                break;
            }
        }
    }
}

#[test]
fn argument_errors_as_qemu_words_them() {
    let s = setup("args", |_| {});
    let mut c = Client::negotiated(&s);
    for (req, want) in [
        (
            r#"{"execute": "screendump"}"#,
            "Parameter 'filename' is missing",
        ),
        (
            r#"{"execute": "screendump", "arguments": {"filename": 1}}"#,
            "Invalid parameter type for 'filename', expected: string",
        ),
        (
            r#"{"execute": "screendump", "arguments": {"filename": "a", "format": "gif"}}"#,
            "Parameter 'format' does not accept value 'gif'",
        ),
        (
            r#"{"execute": "screendump", "arguments": {"filename": "a", "head": 1.5}}"#,
            "Invalid parameter type for 'head', expected: integer",
        ),
        (
            r#"{"execute": "stop", "arguments": {"x": 1}}"#,
            "Parameter 'x' is unexpected",
        ),
        (
            r#"{"execute": "nope"}"#,
            "The command nope has not been found",
        ),
        (
            r#"{"execute": "stop", "bogus": 1}"#,
            "QMP input member 'bogus' is unexpected",
        ),
        (r#"[1, 2]"#, "QMP input must be a JSON object"),
        (r#"{"execute": x}"#, "JSON parse error, invalid keyword 'x'"),
        (r#"{"a": 1, "a": 2}"#, "JSON parse error, duplicate key"),
        ("}", "JSON parse error, expecting value"),
    ] {
        assert_eq!(c.desc(req), want, "{req}");
    }
    assert_eq!(
        c.cmd(r#"{"execute": "screendump", "arguments": {"filename": "/x", "device": "nodev"}}"#),
        r#"{"error": {"class": "DeviceNotFound", "desc": "Device 'nodev' not found"}}"#
    );
    assert_eq!(
        c.cmd(r#"{"execute": "screendump", "arguments": {"filename": "/x.png", "format": "png"}}"#),
        r#"{"return": {}}"#
    );
    assert!(s
        .target
        .calls
        .lock()
        .unwrap()
        .contains(&"screendump /x.png png".to_string()));
}

#[test]
fn missing_devices_are_clear_errors() {
    let s = setup("nodev", |t| {
        t.vga = false;
        t.pm = false;
    });
    let mut c = Client::negotiated(&s);
    assert_eq!(
        c.desc(r#"{"execute": "screendump", "arguments": {"filename": "/x"}}"#),
        "There is no console to take a screendump from"
    );
    assert!(c
        .desc(r#"{"execute": "system_powerdown"}"#)
        .contains("no ACPI power button"));
}

#[test]
fn events_come_before_the_reply_to_every_negotiated_client() {
    let s = setup("events", |_| {});
    let mut a = Client::negotiated(&s);
    let (mut b, _) = Client::connect(&s);
    a.send(r#"{"execute": "stop", "id": 1}"#);
    assert_eq!(event_name(&a.recv()), "STOP");
    assert_eq!(a.recv_raw(), r#"{"return": {}, "id": 1}"#);
    // Already paused: no second STOP.
    assert_eq!(a.cmd(r#"{"execute": "stop"}"#), r#"{"return": {}}"#);
    assert_eq!(
        a.cmd(r#"{"execute": "query-status"}"#),
        r#"{"return": {"status": "paused", "singlestep": false, "running": false}}"#
    );
    // b negotiates now, and sees the events from here on.
    assert_eq!(
        b.cmd(r#"{"execute": "qmp_capabilities"}"#),
        r#"{"return": {}}"#
    );
    a.send(r#"{"execute": "cont"}"#);
    assert_eq!(event_name(&a.recv()), "RESUME");
    assert_eq!(a.recv_raw(), r#"{"return": {}}"#);
    assert_eq!(event_name(&b.recv()), "RESUME");
    for (cmd, ev) in [("system_powerdown", "POWERDOWN"), ("system_reset", "RESET")] {
        a.send(&format!(r#"{{"execute": "{cmd}"}}"#));
        let e = a.recv();
        assert_eq!(event_name(&e), ev);
        assert!(matches!(
            e.get("timestamp").and_then(|t| t.get("microseconds")),
            Some(Json::Int(0..=999_999))
        ));
        assert_eq!(a.recv_raw(), r#"{"return": {}}"#);
        assert_eq!(event_name(&b.recv()), ev);
    }
    a.send(r#"{"execute": "quit"}"#);
    let e = a.recv();
    assert_eq!(event_name(&e), "SHUTDOWN");
    assert_eq!(
        e.get("data").unwrap().to_qmp(),
        r#"{"guest": false, "reason": "host-qmp-quit"}"#
    );
    assert_eq!(a.recv_raw(), r#"{"return": {}}"#);
    assert_eq!(event_name(&b.recv()), "SHUTDOWN");
}

#[test]
fn stream_framing_several_per_line_and_split() {
    let s = setup("framing", |_| {});
    let mut c = Client::negotiated(&s);
    c.send(
        "{\"execute\": \"query-name\", \"id\": 1}{\"execute\": \"query-kvm\", \"id\": 2}\n{\"exe",
    );
    assert_eq!(c.recv_raw(), r#"{"return": {"name": "fake"}, "id": 1}"#);
    assert_eq!(
        c.recv_raw(),
        r#"{"return": {"enabled": true, "present": true}, "id": 2}"#
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        c.cmd("cute\": \"query-target\"}\r\n"),
        r#"{"return": {"arch": "x86_64"}}"#
    );
}

#[test]
fn a_huge_message_gets_an_error_and_the_connection_goes_on() {
    let s = setup("huge", |_| {});
    let mut c = Client::negotiated(&s);
    let writer = c.w.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        let mut w = writer;
        w.write_all(b"{\"execute\": \"query-name\", \"arguments\": {\"x\": \"")
            .unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..4 {
            w.write_all(&chunk).unwrap();
        }
        w.write_all(b"\"}}\n").unwrap();
    });
    assert_eq!(
        c.recv_raw(),
        r#"{"error": {"class": "GenericError", "desc": "JSON token size limit exceeded"}}"#
    );
    t.join().unwrap();
    assert_eq!(
        c.cmd(r#"{"execute": "query-name"}"#),
        r#"{"return": {"name": "fake"}}"#
    );
    let deep = "[".repeat(2000) + &"]".repeat(2000);
    assert_eq!(c.desc(&deep), "JSON nesting depth limit exceeded");
    assert_eq!(
        c.cmd(r#"{"execute": "query-name"}"#),
        r#"{"return": {"name": "fake"}}"#
    );
}

#[test]
fn a_client_that_vanishes_mid_reply_is_dropped() {
    let s = setup("vanish", |_| {});
    {
        let mut c = Client::negotiated(&s);
        // Many replies it will never read, then gone.
        let burst = r#"{"execute": "query-commands"}"#.repeat(2000);
        c.send(&burst);
    }
    {
        // One that stops reading and keeps sending.
        let (c, _) = Client::connect(&s);
        let mut w = c.w.try_clone().unwrap();
        w.set_nonblocking(true).unwrap();
        let burst = r#"{"execute": "qmp_capabilities"}"#.repeat(1000);
        let _ = w.write_all(burst.as_bytes());
    }
    let mut d = Client::negotiated(&s);
    assert_eq!(
        d.cmd(r#"{"execute": "query-name"}"#),
        r#"{"return": {"name": "fake"}}"#
    );
}

#[test]
fn shutdown_sends_what_is_queued() {
    let mut s = setup("flush", |_| {});
    let mut c = Client::negotiated(&s);
    s.target.quit();
    drop(s.server.take());
    assert_eq!(event_name(&c.recv()), "SHUTDOWN");
    let mut rest = String::new();
    assert_eq!(
        c.r.read_line(&mut rest).unwrap(),
        0,
        "closed after the flush"
    );
}

#[test]
fn the_ctl_client() {
    use super::ctl::{self, CtlCommand};
    let s = setup("ctl", |_| {});
    let target = s.path.to_str().unwrap().to_string();
    let run = |cmd: CtlCommand, json: bool| {
        let mut out = Vec::new();
        let code = ctl::run(&target, &cmd, json, &mut out);
        (
            code.map_err(|e| e.to_string()),
            String::from_utf8(out).unwrap(),
        )
    };
    assert_eq!(run(CtlCommand::Status, false), (Ok(0), "running\n".into()));
    assert_eq!(run(CtlCommand::Pause, false), (Ok(0), String::new()));
    assert_eq!(
        run(CtlCommand::Status, true),
        (
            Ok(0),
            "{\"status\": \"paused\", \"singlestep\": false, \"running\": false}\n".into()
        )
    );
    assert_eq!(run(CtlCommand::Resume, false).0, Ok(0));
    let (code, out) = run(CtlCommand::Qmp("query-name".into(), None), false);
    assert_eq!(
        (code, out.as_str()),
        (Ok(0), "{\n  \"name\": \"fake\"\n}\n")
    );
    let raw = r#"{"execute": "query-kvm"}"#.to_string();
    assert_eq!(
        run(CtlCommand::Qmp(raw, None), true).1,
        "{\"enabled\": true, \"present\": true}\n"
    );
    let (code, _) = run(CtlCommand::Qmp("nope".into(), None), false);
    assert_eq!(
        code,
        Err("CommandNotFound: The command nope has not been found".into())
    );
    let shot = CtlCommand::Screenshot("rel/shot.ppm".into());
    assert_eq!(run(shot, false).0, Ok(0));
    let cwd = std::env::current_dir().unwrap();
    let want = format!("screendump {}/rel/shot.ppm ppm", cwd.display());
    assert!(s.target.calls.lock().unwrap().contains(&want));
    // The fake never shuts down: the wait times out.
    let wait = CtlCommand::Powerdown(Some(Duration::from_millis(200)));
    assert_eq!(run(wait, false).0, Ok(ctl::EXIT_TIMEOUT));
    let mut c = ctl::Client::connect(&s.path).unwrap();
    assert_eq!(run(CtlCommand::Quit, false).0, Ok(0));
    let ev = c.next_event(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(event_name(&ev), "SHUTDOWN");
}
