//! Labs end to end with the example in machines/labs/ (three probes, a cable and a
//! LAN), copied to a temporary directory: `lab up` returns once every node is ready,
//! every node heard every peer on every wire, `status` shows them, a cable pull stops
//! frames, `restart` keeps the wiring, `down` stops everything; and broken lab files
//! are refused with located errors.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
mod netlab;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example lab in a fresh directory.
fn lab_dir(name: &str) -> PathBuf {
    let d = common::temp_dir("lab", name);
    for f in ["triangle.toml", "router.toml", "host.toml"] {
        std::fs::copy(root().join("machines/labs").join(f), d.join(f)).unwrap();
    }
    d
}

fn lab(dir: &Path, args: &[&str]) -> Output {
    common::vmrun()
        .current_dir(dir)
        .arg("lab")
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The MACs of `net peers` lines of a node's console: (own MAC, peers heard).
fn peers(dir: &Path, node: &str) -> Vec<(String, Vec<String>)> {
    let log = std::fs::read_to_string(dir.join(".vmrun/triangle").join(node).join("console.log"))
        .unwrap_or_default();
    let lines = vmrun::boot::probe::parse_report(&log).unwrap();
    lines
        .iter()
        .filter(|l| l.tag == "net peers")
        .map(|l| {
            let mine = l.get("mac").unwrap_or("").to_string();
            let heard = l
                .fields
                .iter()
                .filter(|(k, _)| k == "peer")
                .map(|(_, v)| v.clone())
                .collect();
            (mine, heard)
        })
        .collect()
}

fn status(dir: &Path) -> serde_json::Value {
    status_of(dir, "triangle.toml")
}

fn status_of(dir: &Path, file: &str) -> serde_json::Value {
    let out = lab(dir, &["status", "--json", file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_triangle_comes_up_passes_frames_and_goes_down() {
    if !common::kvm_usable() {
        return;
    }
    let dir = lab_dir("triangle");
    let up = lab(&dir, &["up", "triangle.toml"]);
    let ctx = || {
        let logs: Vec<String> = ["r1", "r2", "h1"]
            .iter()
            .map(|n| {
                let p = dir.join(".vmrun/triangle").join(n);
                format!(
                    "--- {n}:\n{}\n{}",
                    std::fs::read_to_string(p.join("console.log")).unwrap_or_default(),
                    std::fs::read_to_string(p.join("vmrun.log")).unwrap_or_default()
                )
            })
            .collect();
        logs.join("\n")
    };
    assert!(up.status.success(), "{}\n{}", text(&up.stderr), ctx());

    // Every node heard every other on each of its wires.
    let mac = |node: &str, nic: usize| peers(&dir, node)[nic].0.clone();
    let (r1_lan, r1_wan) = (mac("r1", 0), mac("r1", 1));
    let (r2_lan, r2_wan) = (mac("r2", 0), mac("r2", 1));
    let h1 = mac("h1", 0);
    let heard = |node: &str, nic: usize| {
        let mut v = peers(&dir, node)[nic].1.clone();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        heard("r1", 0),
        sorted(vec![r2_lan.clone(), h1.clone()]),
        "{}",
        ctx()
    );
    assert_eq!(
        heard("r2", 0),
        sorted(vec![r1_lan.clone(), h1.clone()]),
        "{}",
        ctx()
    );
    assert_eq!(heard("h1", 0), sorted(vec![r1_lan, r2_lan]), "{}", ctx());
    assert_eq!(heard("r1", 1), vec![r2_wan], "the cable; {}", ctx());
    assert_eq!(heard("r2", 1), vec![r1_wan], "the cable; {}", ctx());

    // status: every node running with its cables; the switch counted the frames.
    let s = status(&dir);
    for n in s["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "running", "{s}");
        assert!(n["pid"].as_u64().is_some(), "{s}");
    }
    let ports: Vec<&serde_json::Value> = s["switch"]["status"]["networks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["ports"].as_array().unwrap())
        .collect();
    assert_eq!(ports.len(), 5, "{s}");
    for p in &ports {
        assert!(p["counters"]["rx_frames"].as_u64().unwrap_or(0) > 0, "{p}");
    }

    // A cable pull: the port is down on the switch.
    let pulled = lab(&dir, &["link", "triangle.toml", "r1:wan", "down"]);
    assert!(pulled.status.success(), "{}", text(&pulled.stderr));
    let s = status(&dir);
    let wan = s["switch"]["status"]["networks"][0]["ports"][0].clone();
    assert_eq!(
        (wan["name"].as_str(), wan["up"].as_bool()),
        (Some("r1:wan"), Some(false)),
        "{s}"
    );

    // A node restarts; the others keep running, the wiring stays.
    let before: Vec<u64> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["pid"].as_u64().unwrap())
        .collect();
    let restarted = lab(&dir, &["restart", "triangle.toml", "h1"]);
    assert!(restarted.status.success(), "{}", text(&restarted.stderr));
    let s = status(&dir);
    let after: Vec<u64> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["pid"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        (before[0], before[1]),
        (after[0], after[1]),
        "r1 and r2 untouched"
    );
    assert_ne!(before[2], after[2], "h1 is a new process");

    // down: the power buttons, then nothing of the lab runs.
    let down = lab(&dir, &["down", "triangle.toml"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    let s = status(&dir);
    for n in s["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "stopped", "{s}");
    }
    assert!(s["switch"]["pid"].is_null(), "{s}");
    for p in after {
        // Gone, or a zombie waiting for init to reap it: it runs no more.
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
        assert!(
            state.is_none_or(|r| r.starts_with('Z')),
            "pid {p} still runs: {stat}"
        );
    }
    let r1 = std::fs::read_to_string(dir.join(".vmrun/triangle/r1/console.log")).unwrap();
    assert!(r1.contains("PROBE power button"), "a clean power-off: {r1}");
}

#[test]
fn down_works_after_the_lab_file_is_gone() {
    if !common::kvm_usable() {
        return;
    }
    let dir = lab_dir("gone");
    // One node is enough.
    let up = lab(&dir, &["up", "triangle.toml", "h1"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    std::fs::remove_file(dir.join("triangle.toml")).unwrap();
    let down = lab(&dir, &["down", "triangle.toml"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".vmrun/triangle/state.json")).unwrap(),
    )
    .unwrap();
    assert!(
        state["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["process"].is_null()),
        "{state}"
    );
}

#[test]
fn a_broken_lab_is_refused_with_located_errors() {
    let dir = lab_dir("broken");
    let text_of = std::fs::read_to_string(dir.join("triangle.toml")).unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        text_of
            .replace("\"r2:wan\"]", "\"r3:wan\"]")
            .replace("\"h1:eth0\"]", "\"h1:eth1\"]"),
    )
    .unwrap();
    let out = lab(&dir, &["check", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown node `r3`") && err.contains("bad.toml:22:24"),
        "{err}"
    );
    assert!(err.contains("has no device `eth1`"), "{err}");
    assert!(err.contains("2 errors found"), "{err}");
    // up refuses it too, before starting anything.
    let up = lab(&dir, &["up", "bad.toml"]);
    assert_eq!(up.status.code(), Some(1));
    assert!(!dir.join(".vmrun").exists());
}

#[test]
fn the_readme_documents_every_lab_key() {
    use vmrun::lab::schema::*;
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for (section, fields) in [
        ("top level", TOP),
        ("[lab]", LAB),
        ("[node.NAME]", NODE),
        ("ready", READY),
        ("[[link]]", LINK),
        ("[network.NAME]", NETWORK),
        ("impair", IMPAIR),
    ] {
        for f in fields {
            let row = format!("| {section} `{}` |", f.key);
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }
}

/// A stock QEMU joins a vmrun lab LAN through an `external` port and exchanges
/// frames with a vmrun node there.
#[test]
fn qemu_on_a_lab_lan() {
    if !common::kvm_usable() || !common::have_tool("qemu-system-x86_64", "qemu-system-x86") {
        return;
    }
    let dir = common::temp_dir("lab", "qemu");
    std::fs::write(
        dir.join("a.toml"),
        "[machine]\nboard = \"microvm\"\nmemory = \"64MiB\"\n[boot]\n\
         cmdline = \"memtest=0 timer=0 rtc=0 netsend=4 netrecv=4 netwait=30000 idle=1\"\n\
         [[device]]\nid = \"eth0\"\nkind = \"nic\"\nmac = \"52:54:00:00:aa:01\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("lab.toml"),
        "[lab]\nname = \"mixed\"\n[node.a]\nmachine = \"a.toml\"\nautostart = false\n\
         ready = { serial = \"PROBE done\" }\n\
         [network.lan]\nendpoints = [\"a:eth0\", { external = \"q\" }]\n",
    )
    .unwrap();
    // The switch alone (no autostart node), then QEMU on the port it offers.
    let up = lab(&dir, &["up", "lab.toml"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let s = status_of(&dir, "lab.toml");
    let netdev = s["switch"]["external"][0]["qemu_netdev"]
        .as_str()
        .unwrap()
        .to_string();
    let elf = dir.join("probe.elf");
    std::fs::write(&elf, vmrun::boot::probe::probe_elf()).unwrap();
    let netdev = netdev.replacen("id=q", "id=n0", 1);
    let mut q = netlab::Probe::qemu(
        &elf,
        &netdev,
        "52:54:00:00:ee:05",
        &dir.join("q.log"),
        &["netecho=4", "netwait=30000"],
    );
    q.wait_net();
    let up = lab(&dir, &["up", "lab.toml", "a"]);
    let log = std::fs::read_to_string(dir.join(".vmrun/mixed/a/console.log")).unwrap_or_default();
    assert!(up.status.success(), "{}\n{log}", text(&up.stderr));
    let q = q.finish();
    assert_eq!(q.get("net echo", "frames"), 4, "{}", q.ctx);
    assert!(
        log.contains("PROBE net rx ok frames=4 from=52:54:00:00:ee:05"),
        "{log}"
    );
    let down = lab(&dir, &["down", "lab.toml"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
}

fn qemu_img(args: &[&str]) -> Output {
    std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap()
}

/// Two nodes on one base image through per-node overlays: the base is never written,
/// the overlays hold the guests' writes and pass `qemu-img check`, and `lab reset`
/// throws them away (the disks are pristine again).
#[test]
fn overlays_share_a_base_and_reset_restores_it() {
    if !common::kvm_usable() || !common::have_tool("qemu-img", "qemu-utils") {
        return;
    }
    let dir = common::temp_dir("lab", "overlay");
    std::fs::write(dir.join("base.img"), vec![0u8; 1 << 20]).unwrap();
    let sha = |p: &Path| {
        use sha2::Digest;
        sha2::Sha256::digest(std::fs::read(p).unwrap()).to_vec()
    };
    let base_sha = sha(&dir.join("base.img"));
    std::fs::write(
        dir.join("n.toml"),
        "[machine]\nboard = \"microvm\"\nmemory = \"64MiB\"\n[boot]\n\
         cmdline = \"memtest=0 timer=0 rtc=0 idle=1\"\n\
         [[device]]\nid = \"root\"\nkind = \"disk\"\npath = \"base.img\"\noverlay = true\n",
    )
    .unwrap();
    let lab_text = "[lab]\nname = \"ov\"\n\
         [node.a]\nmachine = \"n.toml\"\nready = { serial = \"PROBE done\" }\nCMD\n\
         [node.b]\nmachine = \"n.toml\"\nready = { serial = \"PROBE done\" }\nCMD\n";
    std::fs::write(dir.join("lab.toml"), lab_text.replace("CMD", "")).unwrap();
    let up = lab(&dir, &["up", "lab.toml"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    for n in ["a", "b"] {
        let log =
            std::fs::read_to_string(dir.join(".vmrun/ov").join(n).join("console.log")).unwrap();
        assert!(log.contains("PROBE blk rw ok sectors=8"), "{n}: {log}");
    }
    let down = lab(&dir, &["down", "lab.toml"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert_eq!(
        sha(&dir.join("base.img")),
        base_sha,
        "the base is never written"
    );
    let raw = |n: &str| {
        let ov = dir.join(".vmrun/ov").join(n).join("root.qcow2");
        let check = qemu_img(&["check", ov.to_str().unwrap()]);
        assert!(check.status.success(), "{}", text(&check.stdout));
        let info = qemu_img(&["info", ov.to_str().unwrap()]);
        assert!(
            text(&info.stdout).contains("base.img"),
            "{}",
            text(&info.stdout)
        );
        let out = dir.join(format!("{n}.raw"));
        let conv = qemu_img(&[
            "convert",
            "-O",
            "raw",
            ov.to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        assert!(conv.status.success(), "{}", text(&conv.stderr));
        std::fs::read(out).unwrap()
    };
    for n in ["a", "b"] {
        common::assert_blk_pattern(&raw(n), 8, 0, n);
    }
    // reset: the overlays go; the nodes come back reading only.
    std::fs::write(
        dir.join("lab.toml"),
        lab_text.replace(
            "CMD",
            "cmdline = \"memtest=0 timer=0 rtc=0 idle=1 blkwrite=0\"",
        ),
    )
    .unwrap();
    let reset = lab(&dir, &["reset", "lab.toml"]);
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    let down = lab(&dir, &["down", "lab.toml"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    for n in ["a", "b"] {
        assert!(
            raw(n).iter().all(|&b| b == 0),
            "{n}: the disk is pristine after reset"
        );
    }
}

/// Outside a lab, `overlay = true` is a throw-away overlay: the guest writes, the
/// image stays as it was, and nothing is left behind.
#[test]
fn a_standalone_overlay_is_thrown_away() {
    if !common::kvm_usable() {
        return;
    }
    let dir = common::temp_dir("lab", "tmp-overlay");
    let base = dir.join("base.img");
    std::fs::write(&base, vec![0x5au8; 1 << 20]).unwrap();
    let b = common::boot(
        "lab",
        "tmp-overlay",
        &format!(
            "[machine]\nboard = \"microvm\"\nmemory = \"64MiB\"\n\
             [[device]]\nid = \"root\"\nkind = \"disk\"\npath = \"{}\"\noverlay = true\n",
            base.display()
        ),
        &["quick=1"],
    );
    assert_eq!(b.status, Some(0), "{}", b.ctx());
    assert!(b.log.contains("PROBE blk rw ok sectors=8"), "{}", b.ctx());
    assert!(
        std::fs::read(&base).unwrap().iter().all(|&x| x == 0x5a),
        "the image is untouched"
    );
}

/// The highest `tick n=` a node's console shows.
fn last_tick(dir: &Path, node: &str) -> u64 {
    let log = std::fs::read_to_string(dir.join(".vmrun/triangle").join(node).join("console.log"))
        .unwrap_or_default();
    (log.lines())
        .filter_map(|l| l.strip_prefix("PROBE tick n="))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

fn first_tick(dir: &Path, node: &str) -> Option<u64> {
    let log = std::fs::read_to_string(dir.join(".vmrun/triangle").join(node).join("console.log"))
        .unwrap_or_default();
    (log.lines())
        .filter_map(|l| l.strip_prefix("PROBE tick n="))
        .find_map(|r| r.split_whitespace().next()?.parse().ok())
}

#[test]
fn a_lab_checkpoint_brings_nodes_and_links_back() {
    if !common::kvm_usable() {
        return;
    }
    let dir = lab_dir("checkpoint");
    let up = lab(&dir, &["up", "triangle.toml"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let nodes = ["r1", "r2", "h1"];
    let wait_ticks = |min: u64| {
        for _ in 0..300 {
            if nodes.iter().all(|n| last_tick(&dir, n) >= min) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the nodes did not tick");
    };
    wait_ticks(3);
    let snap = lab(&dir, &["snapshot", "triangle.toml", "cp1"]);
    assert!(snap.status.success(), "{}", text(&snap.stderr));
    let at: Vec<u64> = nodes.iter().map(|n| last_tick(&dir, n)).collect();

    // The lab moves on: ticks, a cable pulled, the LAN impaired.
    wait_ticks(at.iter().max().unwrap() + 8);
    assert!(lab(&dir, &["link", "triangle.toml", "r1:wan", "down"])
        .status
        .success());
    let imp = lab(&dir, &["impair", "triangle.toml", "lan", "--loss", "50%"]);
    assert!(imp.status.success(), "{}", text(&imp.stderr));

    let restored = lab(&dir, &["restore", "triangle.toml", "cp1"]);
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    for _ in 0..200 {
        if nodes.iter().all(|n| first_tick(&dir, n).is_some()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for (n, a) in nodes.iter().zip(&at) {
        let first = first_tick(&dir, n).unwrap_or(0);
        assert!(
            first >= a.saturating_sub(1) && first <= a + 2,
            "{n}: back at tick {a}, the restored node printed tick {first} first"
        );
    }
    let s = status(&dir);
    for n in s["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "running", "{s}");
    }
    for net in s["switch"]["status"]["networks"].as_array().unwrap() {
        assert!(net["impair"].is_null(), "impairment cleared: {net}");
        for p in net["ports"].as_array().unwrap() {
            assert_eq!(p["up"], true, "cable back: {p}");
        }
    }
    let missing = lab(&dir, &["restore", "triangle.toml", "nope"]);
    assert!(text(&missing.stderr).contains("no checkpoint `nope`"));
    assert!(lab(&dir, &["down", "triangle.toml"]).status.success());
}

/// A checkpoint brings the nodes' disks back too: each node writes a sector per tick
/// and checks the one before; after running on for more ticks than it has sectors in
/// its ring (so every sector was rewritten), the restored node still reads back the
/// sector it wrote just before the checkpoint.
#[test]
fn a_lab_checkpoint_restores_disk_overlays() {
    if !common::kvm_usable() {
        return;
    }
    let dir = common::temp_dir("lab", "checkpoint-disks");
    std::fs::write(dir.join("base.img"), vec![0u8; 1 << 20]).unwrap();
    std::fs::write(
        dir.join("n.toml"),
        "[machine]\nboard = \"microvm\"\nmemory = \"64MiB\"\n[boot]\n\
         cmdline = \"memtest=0 timer=0 rtc=0 idle=1 tickms=50 work=1\"\n\
         [[device]]\nid = \"root\"\nkind = \"disk\"\npath = \"base.img\"\noverlay = true\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("lab.toml"),
        "[lab]\nname = \"cpd\"\n\
         [node.a]\nmachine = \"n.toml\"\nready = { serial = \"PROBE work n=2 \" }\n\
         [node.b]\nmachine = \"n.toml\"\nready = { serial = \"PROBE work n=2 \" }\n",
    )
    .unwrap();
    let console = |n: &str| {
        std::fs::read_to_string(dir.join(".vmrun/cpd").join(n).join("console.log"))
            .unwrap_or_default()
    };
    let works = |n: &str| -> Vec<(u64, String)> {
        (console(n).lines())
            .filter_map(|l| l.strip_prefix("PROBE work n="))
            .filter_map(|r| {
                let mut w = r.split_whitespace();
                let n = w.next()?.parse().ok()?;
                Some((n, w.next()?.to_string()))
            })
            .collect()
    };
    let up = lab(&dir, &["up", "lab.toml"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let snap = lab(&dir, &["snapshot", "lab.toml", "disks"]);
    assert!(snap.status.success(), "{}", text(&snap.stderr));
    let at: Vec<u64> = ["a", "b"]
        .iter()
        .map(|n| works(n).last().map_or(0, |w| w.0))
        .collect();
    // On for more than the 32-sector ring.
    for _ in 0..400 {
        let far = ["a", "b"]
            .iter()
            .zip(&at)
            .all(|(n, a)| works(n).last().is_some_and(|w| w.0 > a + 40));
        if far {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let restored = lab(&dir, &["restore", "lab.toml", "disks"]);
    assert!(restored.status.success(), "{}", text(&restored.stderr));
    for _ in 0..200 {
        if ["a", "b"].iter().all(|n| works(n).len() >= 3) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for (n, a) in ["a", "b"].iter().zip(&at) {
        let w = works(n);
        assert!(w.len() >= 3, "{n}: {}", console(n));
        assert!(w[0].0 <= a + 2, "{n} is back at tick {a}: {w:?}");
        assert!(
            w.iter().all(|x| x.1 == "blk=ok"),
            "{n}: its disk is as it was at the checkpoint: {w:?}"
        );
    }
    assert!(lab(&dir, &["down", "lab.toml"]).status.success());
}
