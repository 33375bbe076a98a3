//! An adversarial corpus of broken machine files (tests/corpus/broken/). The first line
//! of each says where its error must be and part of its message:
//! `# expect: 7:7 cascade` (line 7, column 7 of the file itself) or
//! `# expect: base.toml:2:8 out of range` (in a file it extends). Each file is checked
//! as `m.toml` in a directory of its own that also holds what the corpus refers to
//! (images, a hard link and a symlink to one, kernels, bases to extend); check must not
//! panic, must report an error at exactly that place, and no error may point into a
//! board's built-in text.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files the corpus names, next to the machine file.
fn support(dir: &Path) {
    std::fs::create_dir_all(dir.join("dir")).unwrap();
    let w = |name: &str, data: &[u8]| std::fs::write(dir.join(name), data).unwrap();
    w("kernel.bin", vmrun::boot::probe::probe_elf());
    w("garbage.bin", b"not a kernel");
    w("disk.img", &[0u8; 4096]);
    w("data.txt", b"data");
    std::fs::hard_link(dir.join("disk.img"), dir.join("hardlink.img")).unwrap();
    std::os::unix::fs::symlink("disk.img", dir.join("symlink.img")).unwrap();
    w(
        "base.toml",
        b"[machine]\nboard = \"q35\"\n\n[[device]]\nid = \"n0\"\nkind = \"nic\"\n",
    );
    w("cycle-b.toml", b"extends = \"m.toml\"\n");
    w("broken-base.toml", b"[machine]\nname = \n");
    w("latin1-base.toml", b"[machine]\nname = \"caf\xe9\"\n");
    w("bad-cpus-base.toml", b"[machine]\ncpus = 0\n");
    for i in 1..=20 {
        w(
            &format!("deep{i}.toml"),
            format!("extends = \"deep{}.toml\"\n", i + 1).as_bytes(),
        );
    }
}

/// Files whose expected error check does not give yet (fixed later; each one listed
/// here must still fail, so the list stays true).
const PENDING: &[&str] = &[];

struct Expect {
    file: String,
    at: String,
    fragment: String,
}

fn expectation(text: &[u8]) -> Option<Expect> {
    let first = std::str::from_utf8(text.split(|b| *b == b'\n').next()?).ok()?;
    let rest = first.strip_prefix("# expect: ")?;
    let (loc, fragment) = rest.split_once(' ')?;
    let parts: Vec<&str> = loc.split(':').collect();
    let (file, at) = match parts.as_slice() {
        [l, c] => ("m.toml".to_string(), format!("{l}:{c}")),
        [f, l, c] => (f.to_string(), format!("{l}:{c}")),
        _ => return None,
    };
    Some(Expect {
        file,
        at,
        fragment: fragment.to_string(),
    })
}

/// What is wrong with one case, if anything.
fn run_case(path: &Path, dir: &Path) -> Result<(), String> {
    let text = std::fs::read(path).unwrap();
    let want = expectation(&text).ok_or("no `# expect: L:C fragment` first line")?;
    support(dir);
    let m = dir.join("m.toml");
    std::fs::write(&m, &text).unwrap();
    let result = std::panic::catch_unwind(|| vmrun::load_and_check(&m));
    let (sources, checked) = match result {
        Err(_) => return Err("check panicked".into()),
        Ok(Err(e)) => return Err(format!("no location: {}", vmrun::error_chain(&e))),
        Ok(Ok(r)) => r,
    };
    let diags = match checked {
        Ok(_) => return Err("check accepts it".into()),
        Err(d) => d,
    };
    let rendered: Vec<String> = diags.iter().map(|d| d.render(&sources)).collect();
    let all = rendered.join("\n");
    for d in &diags {
        if sources.get(d.loc.src).name.starts_with("<board") {
            return Err(format!("an error points into a board's text:\n{all}"));
        }
    }
    let suffix = format!("{}:{}", want.file, want.at);
    let found = diags.iter().any(|d| {
        let at = sources.describe(&d.loc);
        let here = at == suffix || at.ends_with(&format!("/{suffix}"));
        here && (d.message.contains(&want.fragment) || d.label.contains(&want.fragment))
    });
    if found {
        Ok(())
    } else {
        Err(format!(
            "wanted an error containing {:?} at {suffix}, got:\n{all}",
            want.fragment
        ))
    }
}

#[test]
fn every_broken_file_gives_its_error_at_its_place() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/corpus/broken"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 120, "only {} files", files.len());
    let tmp = std::env::temp_dir().join(format!("vmrun-corpus-{}", std::process::id()));
    let mut failures = Vec::new();
    let mut pending_passing = Vec::new();
    for f in &files {
        let name = f.file_stem().unwrap().to_str().unwrap();
        let dir = tmp.join(name);
        let r = run_case(f, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        match (r, PENDING.contains(&name)) {
            (Ok(()), true) => pending_passing.push(name.to_string()),
            (Err(e), false) => failures.push(format!("{name}: {e}")),
            _ => {}
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        pending_passing.is_empty(),
        "these pass now; take them off PENDING: {pending_passing:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} files:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
