//! The lab switch process (`vmrun switch --config`) end to end: probes with dgram NICs
//! exchange frames across a link and a LAN; captures read by tcpdump and tshark (from a
//! file and streamed over the control socket); a two-VM flood arrives whole; delay,
//! loss and rate measured between probes (figures printed, loose bounds asserted);
//! a pulled cable stops frames both ways; nodes restart without the switch.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use vmrun::netsw::impair::ImpairConfig;

mod common;
mod netlab;
use netlab::*;

const A_MAC: &str = "52:54:00:00:aa:01";
const B_MAC: &str = "52:54:00:00:bb:02";
const C_MAC: &str = "52:54:00:00:cc:03";

fn link(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut n = json!({ "name": name, "kind": "link", "ports": [unix_port("a"), unix_port("b")] });
    if let (Some(n), Some(e)) = (n.as_object_mut(), extra.as_object()) {
        n.extend(e.clone());
    }
    n
}

/// A switch with the plain link `ab` (ports `a` and `b`).
fn link_switch(dir: &std::path::Path) -> Switch {
    let cfg = json!({ "control": "ctl", "networks": [link("ab", json!({}))] });
    Switch::start(dir, &cfg, &[])
}

#[test]
fn probes_across_a_link_with_captures_read_by_tcpdump_and_tshark() {
    if !common::kvm_usable()
        || !common::have_tool("tcpdump", "tcpdump")
        || !common::have_tool("tshark", "tshark")
    {
        return;
    }
    let dir = lab_dir("netsw", "link");
    let mut net = link("ab", json!({ "capture": "ab.pcap" }));
    net["ports"][0]["capture"] = json!("a.pcapng");
    let sw = Switch::start(&dir, &json!({ "control": "ctl", "networks": [net] }), &[]);
    let fa = probe_machine(&dir, "a", A_MAC);
    let fb = probe_machine(&dir, "b", B_MAC);
    let (a, b) = pair(
        &fa,
        &["netsend=4", "netrecv=4", "netwait=30000"],
        &fb,
        &["netecho=4", "netwait=30000"],
    );
    assert_eq!(a.status, Some(0), "{}", a.ctx);
    assert_eq!(a.get("net tx", "frames"), 4, "{}", a.ctx);
    assert_eq!(a.line("net rx ok").get("from"), Some(B_MAC), "{}", a.ctx);
    assert_eq!(b.line("net echo").get("from"), Some(A_MAC), "{}", b.ctx);
    sw.stop();
    // The link capture: A's 4 broadcasts and B's 4 unicast echoes, in order.
    let text = run(Command::new("tcpdump")
        .args(["-nn", "-e", "-r"])
        .arg(dir.join("ab.pcap")));
    let lines = summaries(&text);
    assert_eq!(lines.len(), 8, "{text}");
    let from_a = lines
        .iter()
        .filter(|l| l.contains(&format!("{A_MAC} > ff:ff:ff:ff:ff:ff")))
        .count();
    let from_b = lines
        .iter()
        .filter(|l| l.contains(&format!("{B_MAC} > {A_MAC}")))
        .count();
    assert_eq!((from_a, from_b), (4, 4), "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("ethertype Unknown (0x88b5)")),
        "{text}"
    );
    // A's port capture (pcapng): the same 8 frames, with directions seen from A.
    let text = run(Command::new("tshark")
        .arg("-r")
        .arg(dir.join("a.pcapng"))
        .args([
            "-T",
            "fields",
            "-e",
            "eth.src",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.packet_flags_direction",
        ]));
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 8, "{text}");
    for r in &rows {
        assert_eq!(r[1], "a", "{text}");
        // Outbound (sent by A's node) or inbound (delivered to it).
        let want = if r[0] == A_MAC { "0x2" } else { "0x1" };
        assert!(r[2].ends_with(&want[2..]), "{text}");
    }
    assert_eq!(rows.iter().filter(|r| r[0] == A_MAC).count(), 4, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_lan_of_three_probes_learns_and_floods() {
    if !common::kvm_usable() {
        return;
    }
    let dir = lab_dir("netsw", "lan");
    let ports = [unix_port("a"), unix_port("b"), unix_port("c")];
    let cfg =
        json!({ "control": "ctl", "networks": [{ "name": "lan", "kind": "lan", "ports": ports }] });
    let mut sw = Switch::start(&dir, &cfg, &[]);
    let fa = probe_machine(&dir, "a", A_MAC);
    let fb = probe_machine(&dir, "b", B_MAC);
    let fc = probe_machine(&dir, "c", C_MAC);
    // C listens; B echoes; A broadcasts 3 and gets B's 3 unicast echoes (not flooded
    // to C, which by then knows nothing but A's broadcasts).
    let mut c = Probe::vmrun(&fc, &["netrecv=6", "netwait=8000"]);
    c.wait_net();
    let (a, b) = pair(
        &fa,
        &["netsend=3", "netrecv=3", "netwait=30000"],
        &fb,
        &["netecho=3", "netwait=30000"],
    );
    let c = c.finish();
    assert_eq!(a.get("net rx ok", "frames"), 3, "{}", a.ctx);
    assert_eq!(b.get("net echo", "frames"), 3, "{}", b.ctx);
    assert_eq!(
        c.get("net rx timeout", "frames"),
        3,
        "C saw only the broadcasts; {}",
        c.ctx
    );
    let st = sw.client.status().unwrap();
    let lan = st.network("lan").unwrap();
    let learned: Vec<(&str, &str)> = lan
        .macs
        .iter()
        .map(|m| (m.mac.as_str(), m.port.as_str()))
        .collect();
    assert!(
        learned.contains(&(A_MAC, "a")) && learned.contains(&(B_MAC, "b")),
        "{learned:?}"
    );
    assert_eq!(st.port("c").unwrap().counters.tx_frames, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_two_vm_flood_arrives_whole() {
    if !common::kvm_usable() {
        return;
    }
    let dir = lab_dir("netsw", "flood");
    let mut sw = link_switch(&dir);
    let fa = probe_machine(&dir, "a", A_MAC);
    let fb = probe_machine(&dir, "b", B_MAC);
    let (a, b) = pair(
        &fa,
        &["netbench=5000"],
        &fb,
        &["netrecv=5000", "netwait=60000"],
    );
    let st = sw.client.status().unwrap();
    let (pa, pb) = (st.port("a").unwrap(), st.port("b").unwrap());
    eprintln!(
        "flood: A sent {} frames at {} frames/s; B got {}; switch: a rx {} paused {}, b tx {} queue_max {} drops {:?}",
        a.get("net bench", "frames"),
        a.get("net bench", "fps"),
        b.lines.iter().find(|l| l.tag.starts_with("net rx")).and_then(|l| l.get_u64("frames")).unwrap_or(0),
        pa.counters.rx_frames,
        pa.counters.paused,
        pb.counters.tx_frames,
        pb.counters.queue_max,
        pb.counters.tx_dropped,
    );
    assert_eq!(b.get("net rx ok", "frames"), 5000, "{}", b.ctx);
    assert_eq!(pb.counters.tx_dropped.total(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

fn impair(f: impl FnOnce(&mut ImpairConfig)) -> ImpairConfig {
    let mut c = ImpairConfig::default();
    f(&mut c);
    c
}

/// Delay, loss and rate set at run time over the control socket, each measured by a
/// fresh pair of probes on the same switch (so nodes restart while it runs).
#[test]
fn impairment_measured_between_probes() {
    if !common::kvm_usable() {
        return;
    }
    let dir = lab_dir("netsw", "impair");
    let cfg = json!({ "control": "ctl", "seed": 7, "networks": [link("ab", json!({}))] });
    let mut sw = Switch::start(&dir, &cfg, &[]);
    let fa = probe_machine(&dir, "a", A_MAC);
    let fb = probe_machine(&dir, "b", B_MAC);
    let ping = |n: &str| {
        let (a, _) = pair(
            &fa,
            &[&format!("netping={n}"), "netwait=5000"],
            &fb,
            &[&format!("netecho={n}"), "netwait=20000"],
        );
        let l = a.line("net ping").clone();
        (
            l.get_u64("got").unwrap_or(0),
            l.get_u64("min_us").unwrap_or(0),
            l.get_u64("avg_us").unwrap_or(0),
            l.get_u64("max_us").unwrap_or(0),
        )
    };
    let (got, min0, avg0, max0) = ping("20");
    assert_eq!(got, 20);
    eprintln!("figure: no impairment: rtt min/avg/max {min0}/{avg0}/{max0} us");

    // Delay: 20 ms +- 5 ms each way.
    let d = impair(|c| {
        c.delay = Some("20ms".into());
        c.jitter = Some("5ms".into());
    });
    sw.client.impair("ab", None, Some(&d)).unwrap();
    let (got, min, avg, max) = ping("20");
    eprintln!("figure: delay 20ms jitter 5ms each way: rtt min/avg/max {min}/{avg}/{max} us (configured 40 ms +- 10 ms + {avg0} us)");
    assert_eq!(got, 20);
    assert!(
        min >= 30_000 && (38_000..240_000).contains(&avg),
        "{min} {avg}"
    );

    // Loss: 20% of A's 500 frames to B.
    let l = impair(|c| c.loss = Some("20%".into()));
    sw.client.impair("ab", None, None).unwrap();
    sw.client.impair("ab", Some("b"), Some(&l)).unwrap();
    let before = sw
        .client
        .status()
        .unwrap()
        .port("b")
        .unwrap()
        .counters
        .clone();
    let (_, b) = pair(&fa, &["netsend=500"], &fb, &["netrecv=500", "netwait=3000"]);
    let got = b.get("net rx timeout", "frames");
    let after = sw
        .client
        .status()
        .unwrap()
        .port("b")
        .unwrap()
        .counters
        .clone();
    let lost = after.tx_dropped.impair_loss - before.tx_dropped.impair_loss;
    eprintln!(
        "figure: loss 20%: B got {got} of 500 ({:.1}% lost; switch counted {lost})",
        (500 - got) as f64 / 5.0
    );
    assert_eq!(got + lost, 500);
    assert!((50..150).contains(&lost), "{lost}");

    // Rate: 10 Mbit/s towards B, A sending 1514-byte frames as fast as it can.
    let r = impair(|c| c.rate = Some("10Mbit".into()));
    sw.client.impair("ab", Some("b"), Some(&r)).unwrap();
    let (a, b) = pair(
        &fa,
        &["netbench=1500"],
        &fb,
        &["netrecv=400", "netwait=20000"],
    );
    let us = b.get("net rx ok", "us");
    let mbit = 399.0 * 1514.0 * 8.0 / us as f64;
    eprintln!(
        "figure: rate 10Mbit: B received at {mbit:.2} Mbit/s (A offered {} frames/s = {:.0} Mbit/s)",
        a.get("net bench", "fps"),
        a.get("net bench", "fps") as f64 * 1514.0 * 8.0 / 1e6
    );
    assert!((7.0..11.0).contains(&mbit), "{mbit}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pulled_cable_stops_frames_both_ways_until_plugged_back() {
    let dir = lab_dir("netsw", "cable");
    let mut sw = link_switch(&dir);
    let (a, b) = (host_node(&dir, "a"), host_node(&dir, "b"));
    wait_connected(&mut sw.client, "a");
    wait_connected(&mut sw.client, "b");
    let (ma, mb) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let both = |k| {
        a.send(&frame(mb, ma, k)).unwrap();
        b.send(&frame(ma, mb, k)).unwrap();
        (drain(&b).len(), drain(&a).len())
    };
    assert_eq!(both(1), (1, 1));
    sw.client.set_link("a", false).unwrap();
    assert_eq!(both(2), (0, 0));
    let st = sw.client.status().unwrap();
    let pa = st.port("a").unwrap();
    assert!(!pa.up);
    assert_eq!(
        (
            pa.counters.rx_dropped.link_down,
            pa.counters.tx_dropped.link_down
        ),
        (1, 1)
    );
    sw.client.set_link("ab", true).unwrap();
    assert_eq!(both(3), (1, 1));
    // A node that restarts (binds its path anew) is plugged in again.
    drop(a);
    let a = host_node(&dir, "a");
    std::thread::sleep(Duration::from_millis(300));
    b.send(&frame(ma, mb, 4)).unwrap();
    assert_eq!(drain(&a).len(), 1);
    a.send(&frame(mb, ma, 5)).unwrap();
    assert_eq!(drain(&b).len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_capture_streams_over_the_control_socket_into_tcpdump() {
    if !common::have_tool("tcpdump", "tcpdump") {
        return;
    }
    let dir = lab_dir("netsw", "stream");
    let mut sw = link_switch(&dir);
    let (a, b) = (host_node(&dir, "a"), host_node(&dir, "b"));
    wait_connected(&mut sw.client, "a");
    wait_connected(&mut sw.client, "b");
    let mut tcpdump = Command::new("tcpdump")
        .args(["-nn", "-e", "-c", "6", "-r", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = tcpdump.stdin.take().unwrap();
    let ctl = sw.control.clone();
    let streamer = std::thread::spawn(move || {
        vmrun::netsw::client::Client::connect(&ctl)
            .unwrap()
            .capture_stream("a", None, &mut pipe)
            .unwrap()
    });
    // Wait until the capture runs, then 3 frames each way through port a.
    while sw.client.status().unwrap().captures.is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (ma, mb) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    for k in 0..3 {
        a.send(&frame(mb, ma, k)).unwrap();
        b.send(&frame(ma, mb, k)).unwrap();
    }
    let out = tcpdump.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(summaries(&text).len(), 6, "{text}");
    assert_eq!(
        text.matches("02:00:00:00:00:01 > 02:00:00:00:00:02")
            .count(),
        3,
        "{text}"
    );
    // tcpdump quit after 6 frames: the next frame ends the stream and its capture.
    a.send(&frame(mb, ma, 9)).unwrap();
    assert!(streamer.join().unwrap() > 24);
    std::thread::sleep(Duration::from_millis(100));
    assert!(sw.client.status().unwrap().captures.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn capture_files_and_refusals_over_the_control_socket() {
    if !common::have_tool("tcpdump", "tcpdump") {
        return;
    }
    let dir = lab_dir("netsw", "ctl");
    let mut sw = link_switch(&dir);
    let (a, b) = (host_node(&dir, "a"), host_node(&dir, "b"));
    wait_connected(&mut sw.client, "a");
    wait_connected(&mut sw.client, "b");
    let file = dir.join("b.pcapng");
    let id = sw.client.capture_start("b", &file, None).unwrap();
    let (ma, mb) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    for k in 0..5 {
        a.send(&frame(mb, ma, k)).unwrap();
    }
    assert_eq!(drain(&b).len(), 5);
    let st = sw.client.status().unwrap();
    assert_eq!((st.captures[0].id, st.captures[0].frames), (id, 5));
    sw.client.capture_stop(id).unwrap();
    let text = run(Command::new("tcpdump").args(["-nn", "-r"]).arg(&file));
    assert_eq!(summaries(&text).len(), 5, "{text}");
    // Refusals name what is wrong; the connection stays usable.
    let e = sw.client.set_link("nope", false).unwrap_err().to_string();
    assert!(e.contains("no network or port named `nope`"), "{e}");
    let bad = ImpairConfig {
        loss: Some("lots".into()),
        ..Default::default()
    };
    let e = sw
        .client
        .impair("ab", None, Some(&bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`lots` is not a percentage"), "{e}");
    let e = sw
        .client
        .impair("ab", Some("zz"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("network `ab` has no port `zz`"), "{e}");
    assert!(sw.client.capture_stop(id).is_err());
    assert!(sw.client.status().is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
