//! The lab file's check: one valid lab, and one broken field at a time.

use std::path::PathBuf;

use super::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmrun-labcheck-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("node.toml"),
        "[machine]\nboard = \"microvm\"\nmemory = \"64MiB\"\n\
         [[device]]\nid = \"net0\"\nkind = \"nic\"\n[[device]]\nid = \"net1\"\nkind = \"nic\"\n",
    )
    .unwrap();
    std::fs::write(d.join("bad.toml"), "memroy = 1\n").unwrap();
    d
}

const GOOD: &str = r#"[lab]
name = "tri"

[node.r1]
machine = "node.toml"
ready = { serial = "PROBE done", timeout = "30s" }

[node.r2]
machine = "node.toml"
depends_on = ["r1"]

[node.h1]
machine = "node.toml"
depends_on = ["r2"]
cmdline = "idle=1"

[[link]]
endpoints = ["r1:net0", "r2:net0"]
impair = { delay = "20ms", loss = "1%", rate = "10Mbit" }

[network.lan]
endpoints = ["r1:net1", "r2:net1", "h1:net0"]
"#;

fn check(name: &str, text: &str) -> Result<LabSpec, LabErrors> {
    let d = dir(name);
    check_text(&d.join("lab.toml"), text.to_string())
}

#[test]
fn a_valid_lab_resolves() {
    let lab = check("good", GOOD).unwrap_or_else(|e| panic!("{}", e.render()));
    assert_eq!(lab.name, "tri");
    assert_eq!(lab.nodes.len(), 3);
    assert_eq!(lab.node("r1").unwrap().machine.name, "tri-r1");
    assert_eq!(lab.node("h1").unwrap().machine.boot.cmdline, "idle=1");
    assert_eq!(lab.waves(&[]), vec![vec!["r1"], vec!["r2"], vec!["h1"]]);
    assert_eq!(lab.waves(&["r2".into()]), vec![vec!["r1"], vec!["r2"]]);
    let link = &lab.nets[0];
    assert_eq!(
        (link.name.as_str(), link.kind, link.ports.len()),
        ("link1", NetKind::Link, 2)
    );
    assert_eq!(link.impair.rate, Some(10_000_000));
    assert!((link.impair.loss - 0.01).abs() < 1e-9);
    assert_eq!(lab.nets[1].ports.len(), 3);
    assert!(lab.state_dir.ends_with(".vmrun/tri"));
    let dot = graph::to_dot(&lab);
    assert!(dot.contains("\"net:lan\"") && dot.contains("--"), "{dot}");
}

/// Breaks GOOD with one replacement and expects one error at `at` saying `msg`.
fn broken(name: &str, from: &str, to: &str, msg: &str, at: &str) {
    assert!(GOOD.contains(from), "{name}: {from}");
    let e = match check(name, &GOOD.replacen(from, to, 1)) {
        Ok(_) => panic!("{name}: accepted"),
        Err(e) => e,
    };
    let text = e.render();
    assert_eq!(e.count(), 1, "{name}: {text}");
    assert!(text.contains(msg), "{name}: {text}");
    assert!(text.contains(at), "{name}: wanted {at} in {text}");
}

#[test]
fn broken_labs_are_located() {
    broken(
        "unknown node",
        "\"r2:net0\"]",
        "\"r3:net0\"]",
        "unknown node `r3`",
        "lab.toml:18:25",
    );
    broken(
        "unknown nic",
        "\"r2:net0\"]",
        "\"r2:eth0\"]",
        "has no device `eth0`",
        "lab.toml:18:25",
    );
    broken(
        "not a nic",
        "\"r2:net0\"]",
        "\"r2:com1\"]",
        "not a nic",
        "lab.toml:18:25",
    );
    broken(
        "nic twice",
        "\"h1:net0\"]",
        "\"r1:net0\"]",
        "plugged into",
        "lab.toml:22:36",
    );
    broken(
        "cycle",
        "depends_on = [\"r1\"]",
        "depends_on = [\"h1\"]",
        "cycle",
        "lab.toml:",
    );
    broken(
        "self",
        "depends_on = [\"r1\"]",
        "depends_on = [\"r2\"]",
        "depends on itself",
        "lab.toml:10:15",
    );
    broken(
        "unknown dep",
        "depends_on = [\"r1\"]",
        "depends_on = [\"rr1\"]",
        "did you mean `r1`",
        "lab.toml:10:15",
    );
    broken(
        "three ends",
        "\"r2:net0\"]",
        "\"r2:net0\", \"h1:net1\"]",
        "has 3 endpoints",
        "lab.toml:17:1",
    );
    broken(
        "bad regex",
        "PROBE done",
        "PROBE (",
        "not a regular expression",
        "lab.toml:6:20",
    );
    broken(
        "bad rate",
        "10Mbit",
        "10 apples",
        "not a rate",
        "lab.toml:19:48",
    );
    broken(
        "bad loss",
        "\"1%\"",
        "\"150%\"",
        "not a percentage",
        "lab.toml:19:35",
    );
    broken(
        "unknown key",
        "depends_on = [\"r2\"]",
        "depend_on = [\"r2\"]",
        "did you mean `depends_on`",
        "lab.toml:14:1",
    );
    broken(
        "no machine",
        "machine = \"node.toml\"\nready",
        "ready",
        "has no `machine`",
        "lab.toml:4:7",
    );
    broken(
        "missing machine",
        "machine = \"node.toml\"\ndepends_on = [\"r1\"]",
        "machine = \"nope.toml\"\ndepends_on = [\"r1\"]",
        "nope.toml",
        "lab.toml:9:11",
    );
    broken(
        "bad machine",
        "machine = \"node.toml\"\ndepends_on = [\"r2\"]",
        "machine = \"bad.toml\"\ndepends_on = [\"r2\"]",
        "memroy",
        "bad.toml:1:1",
    );
    broken(
        "bad endpoint",
        "\"r2:net0\"]",
        "\"r2\"]",
        "is not `node:nic`",
        "lab.toml:18:25",
    );
    broken(
        "bad remote",
        "\"r2:net0\"]",
        "{ remote = \"tcp://x\" }]",
        "not udp://",
        "lab.toml:18:36",
    );
}

#[test]
fn rates_and_udp() {
    assert_eq!(
        parse_udp("udp://10.0.0.1:5000"),
        Some(("10.0.0.1".into(), 5000))
    );
    assert_eq!(parse_udp("udp://[::1]:7"), Some(("::1".into(), 7)));
    assert_eq!(parse_udp("udp://:7"), None);
}
