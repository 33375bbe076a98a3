//! The `vmrun` command line as a user runs it: check / show / graph / schema, exit
//! codes, and `show` output compared with golden files.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

fn vmrun(args: &[&str]) -> Output {
    common::vmrun().args(args).output().expect("run vmrun")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn machines() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("machines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_machine_file_checks() {
    let files = machines();
    assert!(files.len() >= 4);
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let out = vmrun(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `show` output, with this checkout's path replaced so golden files are portable.
fn show(path: &Path) -> String {
    let out = vmrun(&["show", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        text(&out.stderr)
    );
    let dir = std::fs::canonicalize(root()).unwrap();
    text(&out.stdout).replace(dir.to_str().unwrap(), "$ROOT")
}

#[test]
fn show_matches_golden_files() {
    let bless = std::env::var_os("VMRUN_BLESS").is_some();
    let mut diffs = Vec::new();
    for m in machines() {
        let got = show(&m);
        let golden = root().join("tests/golden").join(m.file_name().unwrap());
        if bless {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            diffs.push(format!(
                "{} differs from {} (run with VMRUN_BLESS=1 to update):\n{got}",
                m.display(),
                golden.display()
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn show_output_is_a_machine_file_that_resolves_to_the_same_machine() {
    let tmp = std::env::temp_dir().join(format!("vmrun-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for m in machines() {
        let first = vmrun(&["show", m.to_str().unwrap()]);
        let again_path = tmp.join(m.file_name().unwrap());
        std::fs::write(&again_path, &first.stdout).unwrap();
        let second = vmrun(&["show", again_path.to_str().unwrap()]);
        assert!(
            second.status.success(),
            "{}: {}",
            m.display(),
            text(&second.stderr)
        );
        assert_eq!(text(&first.stdout), text(&second.stdout), "{}", m.display());
    }
}

#[test]
fn check_reports_every_error_and_exits_1() {
    let tmp = std::env::temp_dir().join(format!("vmrun-cli-bad-{}.toml", std::process::id()));
    std::fs::write(&tmp, "[machine]\nmemroy = \"1GiB\"\nboard = \"q53\"\n").unwrap();
    let out = vmrun(&["check", tmp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("did you mean `memory`?"), "{err}");
    assert!(err.contains("did you mean \"q35\"?"), "{err}");
    assert!(err.contains(":2:1"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    for args in [
        &["check", "/nonexistent/m.toml"][..],
        &["show", "/nonexistent/m.toml"],
        &["/nonexistent/m.toml"],
    ] {
        let out = vmrun(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("cannot read /nonexistent/m.toml"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn graph_is_dot_with_every_device() {
    let m = root().join("machines/full.toml");
    let out = vmrun(&["graph", m.to_str().unwrap()]);
    assert!(out.status.success());
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph \"full\" {") && dot.trim_end().ends_with('}'));
    for id in [
        "net0", "net1", "net2", "data", "root", "com1", "vga", "ioapic",
    ] {
        assert!(
            dot.contains(&format!("\"dev:{id}\"")),
            "{id} missing:\n{dot}"
        );
    }
    assert!(dot.contains("\"bus:rp1\" -> \"bus:br0\""), "{dot}");
}

#[test]
fn schema_is_json_schema() {
    let out = vmrun(&["schema"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["$schema"], "http://json-schema.org/draft-07/schema#");
    assert!(v["properties"]["device"]["items"]["properties"]["backend"].is_object());
}

#[test]
fn help_everywhere() {
    for args in [
        &["--help"][..],
        &["check", "--help"],
        &["show", "--help"],
        &["graph", "--help"],
        &["run", "--help"],
        &["schema", "--help"],
    ] {
        let out = vmrun(args);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn readme_documents_every_key() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for (section, fields) in vmrun::config::schema::sections() {
        for f in fields {
            assert!(
                readme.contains(&format!("`{}`", f.key)),
                "README lacks `{}` of {section}",
                f.key
            );
        }
    }
}

/// Prints the machine-file reference as Markdown (used to write the README):
/// `cargo test --test cli print_reference -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_reference() {
    for (section, fields) in vmrun::config::schema::sections() {
        println!("\n#### {section}\n\n| key | type | default | meaning |\n|---|---|---|---|");
        for f in fields {
            let ty = f.ty.readme_name();
            let def = if f.default.is_empty() {
                "—".to_string()
            } else {
                f.default.replace('|', "\\|")
            };
            println!("| `{}` | {ty} | {def} | {} |", f.key, f.doc);
        }
    }
}
