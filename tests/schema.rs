//! `vmrun schema` agrees with `check`, as real validators see it: Python's `jsonschema`
//! (the interpreter in `VMRUN_PYTHON`, else `.ci/venv`) and taplo, the TOML language
//! server behind Even Better TOML (`VMRUN_TAPLO`, else `taplo` on PATH or
//! `target/taplo`, where `npm install --prefix target/taplo @taplo/cli` puts it).
//! Every file check accepts validates — machines/, tests/golden/ and generated
//! machines — and unknown keys and bad values, which check rejects, are flagged.

mod common;
mod gen;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn temp(name: &str) -> PathBuf {
    common::temp_dir("schema", name)
}

/// `vmrun schema`, saved in `dir`.
fn schema_file(dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_vmrun"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    let p = dir.join("vmrun.schema.json");
    std::fs::write(&p, out.stdout).unwrap();
    p
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// Files `check` accepts: the examples, the golden `show` outputs, 300 generated ones.
fn valid_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = toml_files(&root().join("machines"));
    v.extend(toml_files(&root().join("tests/golden")));
    for seed in 0..300 {
        let g = gen::generate(seed, &dir.join(format!("gen{seed}")));
        if let Err(e) = gen::check(&g.path) {
            panic!("seed {seed} does not check:\n{e}\n{}", g.dump());
        }
        v.extend(g.files);
    }
    v
}

/// Broken files check rejects: (what, text, where Python's jsonschema must point).
const INVALID: &[(&str, &str, &str)] = &[
    ("unknown top-level key", "colour = 1\n", ""),
    ("unknown [machine] key", "[machine]\nmemroy = \"1GiB\"\n", "machine"),
    ("unknown board", "[machine]\nboard = \"pcc\"\n", "machine/board"),
    ("bare memory number", "[machine]\nmemory = 512\n", "machine/memory"),
    ("decimal size unit", "[machine]\nmemory = \"512MB\"\n", "machine/memory"),
    ("cpus out of range", "[machine]\ncpus = 0\n", "machine/cpus"),
    ("unknown [boot] key", "[boot]\nkernal = \"k\"\n", "boot"),
    (
        "unknown artifact key",
        "[boot]\nkernel = { path = \"k\", sha = \"00\" }\n",
        "boot/kernel",
    ),
    (
        "short sha256",
        "[boot]\nkernel = { path = \"k\", sha256 = \"00\" }\n",
        "boot/kernel",
    ),
    ("a NIC backend of a serial port", "[[device]]\nid = \"n\"\nkind = \"nic\"\nbackend = \"stdio\"\n", "device/0"),
    ("a serial backend of a NIC", "[[device]]\nid = \"s\"\nkind = \"serial\"\nbackend = \"switch\"\n", "device/0"),
    ("a debugcon backend", "[[device]]\nid = \"d\"\nkind = \"debugcon\"\nbackend = \"pty\"\n", "device/0"),
    ("another kind's key", "[[device]]\nid = \"s\"\nkind = \"serial\"\nvram = \"16MiB\"\n", "device/0"),
    ("an override with an unknown key", "[[device]]\nid = \"com1\"\ncolour = 1\n", "device/0"),
    ("an override with a bad value", "[[device]]\nid = \"com1\"\nbackend = \"telnet\"\n", "device/0"),
    ("unknown device kind", "[[device]]\nid = \"x\"\nkind = \"nicc\"\n", "device/0"),
    ("unknown bus kind", "[[bus]]\nid = \"b\"\nkind = \"pcie-bridge\"\n", "bus/0/kind"),
    ("unknown bus key", "[[bus]]\nid = \"b\"\nkind = \"pci-bridge\"\nslot = 3\n", "bus/0"),
    ("device without id", "[[device]]\nkind = \"serial\"\n", "device/0"),
    ("bad id", "[[device]]\nid = \"a b\"\nkind = \"serial\"\n", "device/0/id"),
    ("rtc clock", "[[device]]\nid = \"rtc\"\nclock = \"gmt\"\n", "device/0"),
    ("disk format", "[[device]]\nid = \"d\"\nkind = \"disk\"\npath = \"d.img\"\nformat = \"vmdk\"\n", "device/0"),
    ("multicast MAC", "[[device]]\nid = \"n\"\nkind = \"nic\"\nmac = \"01:00:00:00:00:01\"\n", "device/0"),
    ("PCI slot 0x20", "[[device]]\nid = \"n\"\nkind = \"nic\"\naddr = \"20.0\"\n", "device/0/addr"),
    ("PCI function 8", "[[device]]\nid = \"n\"\nkind = \"nic\"\naddr = \"03.8\"\n", "device/0/addr"),
    ("IRQ 24", "[[device]]\nid = \"c\"\nkind = \"serial\"\nirq = 24\n", "device/0/irq"),
    ("port 0x10000", "[[device]]\nid = \"c\"\nkind = \"serial\"\nio = 0x10000\n", "device/0/io"),
    ("string port", "[[device]]\nid = \"c\"\nkind = \"serial\"\nio = \"0x3f8\"\n", "device/0/io"),
    (
        "fw_cfg file with path and string",
        "[[device]]\nid = \"fw_cfg\"\nfiles = [{ name = \"opt/a\", path = \"a\", string = \"b\" }]\n",
        "device/0",
    ),
    (
        "fw_cfg file with an unknown key",
        "[[device]]\nid = \"fw_cfg\"\nfiles = [{ name = \"opt/a\", strng = \"b\" }]\n",
        "device/0",
    ),
    ("empty path", "[[device]]\nid = \"d\"\nkind = \"disk\"\npath = \"\"\n", "device/0"),
];

/// The cases as files in `dir`; each is also rejected by check.
fn invalid_files(dir: &Path) -> Vec<(PathBuf, &'static str, &'static str)> {
    INVALID
        .iter()
        .enumerate()
        .map(|(i, (what, text, at))| {
            let (_, r) = vmrun::check_str("m.toml", text, dir);
            assert!(r.is_err(), "check accepts the case `{what}`:\n{text}");
            let p = dir.join(format!("bad{i}.toml"));
            std::fs::write(&p, text).unwrap();
            (p, *what, *at)
        })
        .collect()
}

const VALIDATE_PY: &str = r#"
import json, sys, tomllib, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
v = jsonschema.Draft7Validator(schema)
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    errs = [{"at": "/".join(map(str, e.absolute_path)), "message": e.message} for e in v.iter_errors(doc)]
    print(json.dumps({"path": path, "errors": errs}))
"#;

fn python() -> Option<PathBuf> {
    let py = std::env::var_os("VMRUN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".ci/venv/bin/python"));
    let ok = Command::new(&py)
        .args(["-c", "import jsonschema, tomllib"])
        .output()
        .is_ok_and(|o| o.status.success());
    let why = format!(
        "{} cannot import jsonschema and tomllib (python3 -m venv .ci/venv && .ci/venv/bin/pip install jsonschema; set VMRUN_PYTHON)",
        py.display()
    );
    common::require(ok, &why).then_some(py)
}

/// Python's verdict per file: the errors (path in the document, message).
fn python_errors(py: &Path, schema: &Path, files: &[PathBuf]) -> Vec<Vec<(String, String)>> {
    let out = Command::new(py)
        .arg("-c")
        .arg(VALIDATE_PY)
        .arg(schema)
        .args(files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the validator failed: {stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), files.len(), "{stderr}");
    lines
        .iter()
        .map(|l| {
            l["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    (s("at"), s("message"))
                })
                .collect()
        })
        .collect()
}

#[test]
fn python_jsonschema_accepts_what_check_accepts_and_flags_the_rest() {
    let Some(py) = python() else { return };
    let dir = temp("python");
    let schema = schema_file(&dir);
    let valid = valid_files(&dir);
    let verdicts = python_errors(&py, &schema, &valid);
    let rejected: Vec<String> = valid
        .iter()
        .zip(&verdicts)
        .filter(|(_, e)| !e.is_empty())
        .map(|(f, e)| format!("{}: {e:?}", f.display()))
        .collect();
    assert!(
        rejected.is_empty(),
        "valid files rejected:\n{}",
        rejected.join("\n")
    );

    let bad = invalid_files(&dir);
    let files: Vec<PathBuf> = bad.iter().map(|(p, ..)| p.clone()).collect();
    let verdicts = python_errors(&py, &schema, &files);
    let mut missed = Vec::new();
    for ((_, what, at), errs) in bad.iter().zip(&verdicts) {
        if !errs.iter().any(|(p, _)| p.starts_with(at)) {
            missed.push(format!("`{what}`: wanted an error at {at:?}, got {errs:?}"));
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}

fn taplo() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("VMRUN_TAPLO").map(PathBuf::from),
        Some(PathBuf::from("taplo")),
        Some(root().join("target/taplo/node_modules/.bin/taplo")),
        Some(root().join(".ci/taplo/node_modules/.bin/taplo")),
    ];
    let found = candidates.into_iter().flatten().find(|t| {
        // `taplo --version` prints "taplo 0.9.0" but exits 1.
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("taplo "))
    });
    let why = "taplo not found (npm install --prefix target/taplo @taplo/cli; or set VMRUN_TAPLO)";
    common::require(found.is_some(), why).then_some(found?)
}

fn taplo_check(taplo: &Path, schema: &Path, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(taplo)
        .arg("check")
        .arg("--schema")
        .arg(format!("file://{}", schema.display()))
        .args(files)
        .env("RUST_LOG", "error")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn taplo_accepts_what_check_accepts_and_flags_the_rest() {
    let Some(taplo) = taplo() else { return };
    let dir = temp("taplo");
    let schema = schema_file(&dir);
    let valid = valid_files(&dir);
    let (ok, text) = taplo_check(&taplo, &schema, &valid);
    assert!(ok, "taplo rejects files check accepts:\n{text}");
    // One run for every case: each broken file must be named in an error.
    let bad = invalid_files(&dir);
    let files: Vec<PathBuf> = bad.iter().map(|(p, ..)| p.clone()).collect();
    let (ok, text) = taplo_check(&taplo, &schema, &files);
    assert!(!ok, "{text}");
    let missed: Vec<String> = bad
        .iter()
        .filter(|(p, ..)| !text.contains(&format!("{}:", p.display())))
        .map(|(p, what, _)| format!("`{what}` ({}) passes taplo", p.display()))
        .collect();
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}
