//! `extends`: tables merge key by key, devices and buses merge by id, the later file
//! wins, `enabled = false` removes, `defaults = false` drops the board's defaults.

use std::path::PathBuf;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmrun-extends-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check(dir: &std::path::Path, top: &str) -> Result<vmrun::spec::MachineSpec, String> {
    let (sources, r) = vmrun::load_and_check(&dir.join(top)).map_err(|e| e.to_string())?;
    r.map_err(|d| {
        d.iter()
            .map(|d| d.render(&sources))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[test]
fn merge_rules() {
    let d = dir("rules");
    std::fs::write(
        d.join("base.toml"),
        "[machine]\nname = \"base\"\nboard = \"q35\"\nmemory = \"1GiB\"\ncpus = 2\n\n[[device]]\nid = \"n0\"\nkind = \"nic\"\nmac = \"52:54:00:12:34:56\"\n\n[[device]]\nid = \"n1\"\nkind = \"nic\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(
        d.join("sub/top.toml"),
        "extends = \"../base.toml\"\n[machine]\nmemory = \"2GiB\"\n\n[[device]]\nid = \"n0\"\nbackend = \"none\"\n\n[[device]]\nid = \"n1\"\nenabled = false\n\n[[device]]\nid = \"vga\"\nenabled = false\n\n[[device]]\nid = \"com2\"\nkind = \"serial\"\n",
    )
    .unwrap();
    let s = check(&d, "sub/top.toml").unwrap();
    assert_eq!(s.name, "base", "the base's name is inherited");
    assert_eq!(s.memory.size, 2 << 30, "the later file wins");
    assert_eq!(s.cpus.count(), 2, "untouched keys are inherited");
    assert_eq!(s.board, vmrun::board::BoardKind::Q35);
    let n0 = s.device("n0").unwrap();
    assert!(
        matches!(&n0.kind, vmrun::spec::DeviceKind::Nic { mac, backend, .. }
            if mac == &[0x52, 0x54, 0, 0x12, 0x34, 0x56] && *backend == vmrun::spec::NicBackend::None),
        "keys merge within a device"
    );
    assert!(
        s.device("n1").is_none() && s.device("vga").is_none(),
        "enabled = false removes"
    );
    assert!(s.device("com2").is_some() && s.device("com1").is_some());
}

#[test]
fn defaults_false_keeps_only_the_interrupt_controllers() {
    let d = dir("nodefaults");
    std::fs::write(d.join("m.toml"), "[machine]\ndefaults = false\n").unwrap();
    let s = check(&d, "m.toml").unwrap();
    let ids: Vec<&str> = s.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["ioapic", "pic"]);
}

#[test]
fn cycles_are_errors() {
    let d = dir("cycle");
    std::fs::write(d.join("a.toml"), "extends = \"b.toml\"\n").unwrap();
    std::fs::write(d.join("b.toml"), "extends = \"a.toml\"\n").unwrap();
    let e = check(&d, "a.toml").unwrap_err();
    assert!(e.contains("`extends` makes a cycle"), "{e}");
    assert!(e.contains("b.toml:1:11"), "{e}");
}

#[test]
fn errors_point_into_the_file_that_has_them() {
    let d = dir("where");
    std::fs::write(
        d.join("base.toml"),
        "[machine]\nmemory = \"1GiB\"\ncpus = 999\n",
    )
    .unwrap();
    std::fs::write(
        d.join("top.toml"),
        "extends = \"base.toml\"\n[machine]\nname = \"x\"\n",
    )
    .unwrap();
    let e = check(&d, "top.toml").unwrap_err();
    assert!(e.contains("base.toml:3:8"), "{e}");
}
