//! Boots the built-in probe through `vmrun probe` on every board, with 1, 2 and 4
//! vCPUs and with 64 MiB and 5 GiB of RAM, and checks its report against the machine
//! file. Needs /dev/kvm; says so and skips when it is missing.

use std::path::PathBuf;

mod common;
use common::{kvm_usable, temp_dir, Booted};

fn boot(name: &str, machine: &str, probe_opts: &[&str]) -> Booted {
    common::boot("boot", name, machine, probe_opts)
}

fn find<'a>(b: &'a Booted, tag: &str) -> Vec<&'a vmrun::boot::probe::ProbeLine> {
    b.find(tag)
}

/// Checks what every probe report must say for a machine of `cpus` and `memory`.
fn check_report(name: &str, b: &Booted, cpus: u64, memory: u64, low_limit: u64) {
    let ctx = format!("{name}:\n{}\nstderr: {}", b.log, b.stderr);
    assert_eq!(b.status, Some(0), "poweroff must exit 0; {ctx}");
    assert!(find(b, "done").len() == 1, "{ctx}");
    let exit = find(b, "exit");
    assert_eq!(
        exit.first().and_then(|l| l.get("method")),
        Some("acpi"),
        "{ctx}"
    );

    // Memory: the RAM the map reports adds up to the machine's, split at the hole.
    let ram: Vec<(u64, u64)> = find(b, "mem")
        .iter()
        .filter(|l| l.get_u64("type") == Some(1))
        .map(|l| (l.get_u64("base").unwrap(), l.get_u64("size").unwrap()))
        .collect();
    let total: u64 = ram.iter().map(|r| r.1).sum();
    // The EBDA (1 KiB) and the BIOS area (0xa0000-0x100000: 384 KiB) are not RAM.
    assert_eq!(total, memory - 0x400 - 0x60000, "{ctx}");
    let above: u64 = ram.iter().filter(|r| r.0 >= 1 << 32).map(|r| r.1).sum();
    assert_eq!(above, memory.saturating_sub(low_limit), "{ctx}");
    for t in find(b, "memtest") {
        assert!(t.has_flag("ok"), "memtest failed: {ctx}");
    }
    if above > 0 {
        assert!(
            find(b, "memtest")
                .iter()
                .any(|t| t.get_u64("base") == Some(1 << 32)),
            "{ctx}"
        );
    }

    // CPUs: every AP checked in with its own APIC ID.
    let count = find(b, "cpus");
    assert_eq!(count[0].get_u64("count"), Some(cpus), "{ctx}");
    assert!(count[0].has_flag("ok"), "{ctx}");
    let mut ids: Vec<u64> = find(b, "cpu")
        .iter()
        .map(|l| l.get_u64("apic").unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..cpus).collect::<Vec<_>>(), "{ctx}");

    // The CMOS RTC, where the board has one, tells the host's UTC time and ticks.
    let rtc = find(b, "rtc");
    if rtc.first().is_some_and(|l| l.tag == "rtc") {
        let t = rtc[0].get("time").unwrap();
        let host = std::process::Command::new("date")
            .args(["-u", "+%s"])
            .output()
            .unwrap();
        let host: i64 = String::from_utf8_lossy(&host.stdout)
            .trim()
            .parse()
            .unwrap();
        let guest = std::process::Command::new("date")
            .args(["-u", "-d", t, "+%s"])
            .output()
            .unwrap();
        let guest: i64 = String::from_utf8_lossy(&guest.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(
            (host - guest).abs() < 120,
            "RTC time {t} is off the host's by {}s: {ctx}",
            host - guest
        );
        assert!(
            find(b, "rtc tick").iter().any(|l| l.tag == "rtc tick ok"),
            "{ctx}"
        );
        let irq = find(b, "rtc irq");
        assert_eq!(
            irq.first().map(|l| l.tag.as_str()),
            Some("rtc irq ok"),
            "periodic IRQ 8: {ctx}"
        );
        assert!(irq[0].get_u64("ticks").unwrap_or(0) >= 2, "{ctx}");
    }

    // The PIT interrupt arrived through the IOAPIC (pin 2, as the MP table says).
    let timer = find(b, "timer");
    assert_eq!(
        timer.first().map(|t| t.tag.as_str()),
        Some("timer ok"),
        "{ctx}"
    );
    assert_eq!(timer[0].get("path"), Some("ioapic"), "{ctx}");
    assert_eq!(timer[0].get_u64("pin"), Some(2), "{ctx}");
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

#[test]
fn probe_boots_on_every_board_and_size() {
    if !kvm_usable() {
        return;
    }
    let cases: &[(&str, &str, u64, u64, u64)] = &[
        ("pc-1", "pc", 1, 64 * MIB, 0xe000_0000),
        ("pc-2-5g", "pc", 2, 5 * GIB, 0xc000_0000),
        ("q35-4", "q35", 4, 64 * MIB, 0xb000_0000),
        ("q35-2-5g", "q35", 2, 5 * GIB, 0x8000_0000),
        ("microvm-1", "microvm", 1, 64 * MIB, 0xc000_0000),
        ("microvm-4-5g", "microvm", 4, 5 * GIB, 0xc000_0000),
    ];
    for &(name, board, cpus, memory, low) in cases {
        let machine = format!(
            "[machine]\nboard = \"{board}\"\nmemory = \"{}MiB\"\ncpus = {cpus}\n",
            memory / MIB
        );
        let b = boot(name, &machine, &[]);
        check_report(name, &b, cpus, memory, low);
        let rtc = find(&b, "rtc");
        let want = if board == "microvm" {
            "rtc none"
        } else {
            "rtc"
        };
        assert_eq!(
            rtc.first().map(|l| l.tag.as_str()),
            Some(want),
            "{name}: {}",
            b.log
        );
    }
}

#[test]
fn topology_gives_packed_apic_ids() {
    if !kvm_usable() {
        return;
    }
    // 2 sockets × 1 core × 2 threads: APIC IDs 0, 1, 2, 3 (thread bit, then socket bit).
    let b = boot(
        "topo",
        "[machine]\nboard = \"q35\"\nmemory = \"64MiB\"\nsockets = 2\ncores = 1\nthreads = 2\n",
        &["memtest=0"],
    );
    assert_eq!(b.status, Some(0), "{}", b.log);
    let count = find(&b, "cpus");
    assert_eq!(count[0].get_u64("count"), Some(4), "{}", b.log);
    // 1 socket × 3 cores: APIC IDs 0, 1, 2 (cores take 2 bits, so 3 is unused).
    let b = boot(
        "topo3",
        "[machine]\nboard = \"pc\"\nmemory = \"64MiB\"\ncores = 3\n",
        &["memtest=0"],
    );
    let mut ids: Vec<u64> = find(&b, "cpu")
        .iter()
        .map(|l| l.get_u64("apic").unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2], "{}", b.log);
}

#[test]
fn probe_options_reach_the_guest_and_pio_exits_are_counted() {
    if !kvm_usable() {
        return;
    }
    let b = boot(
        "pio",
        "[machine]\nboard = \"microvm\"\nmemory = \"64MiB\"\n",
        &["quick=1", "pio=1000"],
    );
    assert_eq!(b.status, Some(0), "{}", b.log);
    let pio = find(&b, "pio");
    assert_eq!(pio[0].get_u64("count"), Some(1000), "{}", b.log);
    let cmdline = find(&b, "cmdline");
    assert!(
        cmdline[0].quoted.iter().any(|q| q.contains("pio=1000")),
        "{}",
        b.log
    );
}

#[test]
fn triple_fault_and_reset_have_their_exit_codes() {
    if !kvm_usable() {
        return;
    }
    let b = boot(
        "triple",
        "[machine]\nboard = \"pc\"\nmemory = \"64MiB\"\n",
        &["quick=1", "exit=triple"],
    );
    assert_eq!(
        b.status,
        Some(4),
        "triple fault → 4: {}\n{}",
        b.log,
        b.stderr
    );
    let b = boot(
        "reset",
        "[machine]\nboard = \"pc\"\nmemory = \"64MiB\"\n",
        &["quick=1", "exit=reset"],
    );
    assert_eq!(
        b.status,
        Some(3),
        "i8042 reset → 3: {}\n{}",
        b.log,
        b.stderr
    );
}

#[test]
fn timeout_stops_a_guest_that_never_ends() {
    if !kvm_usable() {
        return;
    }
    let dir = temp_dir("boot", "halt");
    let file = dir.join("m.toml");
    std::fs::write(&file, "[machine]\nboard = \"microvm\"\nmemory = \"64MiB\"\n[[device]]\nid = \"com1\"\nbackend = \"null\"\n").unwrap();
    let out = common::vmrun()
        .args([
            "probe",
            file.to_str().unwrap(),
            "--timeout",
            "1s",
            "--",
            "quick=1",
            "exit=halt",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_example_machine_boots_the_probe() {
    if !kvm_usable() {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("machines");
    for name in ["pc.toml", "q35.toml", "microvm.toml"] {
        // Run the example as written, with COM1 to a file; relative paths still resolve
        // against machines/.
        let dir = temp_dir("boot", &format!("ex-{name}"));
        let log = dir.join("com1.log");
        let file = root.join(format!(".test-{}-{name}", std::process::id()));
        std::fs::write(&file, format!("extends = \"{name}\"\n[[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n", log.display())).unwrap();
        let out = common::vmrun()
            .args([
                "probe",
                file.to_str().unwrap(),
                "--timeout",
                "60s",
                "--",
                "memtest=0",
                // The examples' disk images are part of the repository: read only.
                "blkwrite=0",
            ])
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&file);
        let report = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(report.contains("PROBE done"), "{name}: {report}");
    }
}

#[test]
fn serial_input_reaches_the_guest() {
    if !kvm_usable() {
        return;
    }
    use std::io::Write as _;
    let dir = temp_dir("boot", "echo");
    let file = dir.join("m.toml");
    // COM1 on stdio (the board default): the probe's output is vmrun's stdout and
    // vmrun's stdin is the guest's input.
    std::fs::write(&file, "[machine]\nboard = \"pc\"\nmemory = \"64MiB\"\n").unwrap();
    let mut child = common::vmrun()
        .args([
            "probe",
            file.to_str().unwrap(),
            "--timeout",
            "60s",
            "--",
            "quick=1",
            "echo=1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Type only once the guest listens, as a person would: bytes that arrive before
    // the guest's driver resets the FIFO are lost, as on a real 16550.
    let mut stdout_pipe = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("PROBE echo ready") {
        use std::io::Read as _;
        let n = stdout_pipe.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "vmrun ended before the probe was ready: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    // More than a 16-byte FIFO's worth, so the event loop has to wait for room.
    let input = "hello from the host, through the 16550\nsecond line\nquit\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    {
        use std::io::Read as _;
        stdout_pipe.read_to_end(&mut seen).unwrap();
    }
    let stdout = String::from_utf8_lossy(&seen);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("PROBE echo \"hello from the host, through the 16550\""),
        "{stdout}"
    );
    assert!(stdout.contains("PROBE echo \"second line\""), "{stdout}");
}

#[test]
fn serial_socket_backend_carries_output_and_input_and_keeps_a_log() {
    if !kvm_usable() {
        return;
    }
    use std::io::{BufRead as _, Write as _};
    use std::os::unix::net::UnixStream;
    let dir = temp_dir("boot", "sock");
    let sock = dir.join("com2.sock");
    let log = dir.join("com2.log");
    let _ = std::fs::remove_file(&sock);
    let file = dir.join("m.toml");
    // The probe talks on COM1; put COM1 on the socket (and COM2 at its standard place
    // with a null backend, to have all of COM1-COM2 present).
    std::fs::write(
        &file,
        format!(
            "[machine]\nboard = \"q35\"\nmemory = \"64MiB\"\n[[device]]\nid = \"com1\"\nbackend = \"socket\"\npath = \"{}\"\nlog = \"{}\"\n[[device]]\nid = \"com2\"\nkind = \"serial\"\nbackend = \"null\"\n",
            sock.display(),
            log.display()
        ),
    )
    .unwrap();
    let mut child = common::vmrun()
        .args([
            "probe",
            file.to_str().unwrap(),
            "--timeout",
            "60s",
            "--",
            "quick=1",
            "echo=1",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stream = (0..500)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            UnixStream::connect(&sock).ok()
        })
        .expect("the socket backend listens");
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut seen = String::new();
    while !seen.contains("PROBE echo ready") {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "socket closed early: {seen}"
        );
        seen.push_str(&line);
    }
    (&stream).write_all(b"over the socket\nquit\n").unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
    seen.push_str(&rest);
    assert_eq!(status.code(), Some(0), "{seen}");
    assert!(seen.contains("PROBE echo \"over the socket\""), "{seen}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("PROBE echo \"over the socket\"") && logged.contains("PROBE done"),
        "{logged}"
    );
}
