//! The valid-file generator (tests/gen) only writes machine files that `check` accepts:
//! 2000 seeds by default (`VMRUN_GEN_CASES` to change); the first failure is printed
//! with every file of its machine.

mod gen;

fn cases() -> u64 {
    std::env::var("VMRUN_GEN_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

#[test]
fn every_generated_machine_checks() {
    let root = std::env::temp_dir().join(format!("vmrun-generated-{}", std::process::id()));
    let mut boards = std::collections::BTreeMap::new();
    for seed in 0..cases() {
        let dir = root.join(seed.to_string());
        let g = gen::generate(seed, &dir);
        match gen::check(&g.path) {
            Ok(spec) => {
                assert_eq!(spec.cpus.count(), g.cpus, "seed {seed}:\n{}", g.dump());
                *boards.entry(g.board).or_insert(0) += 1;
            }
            Err(e) => panic!(
                "seed {seed}: check rejected a generated machine:\n{e}\n{}",
                g.dump()
            ),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(boards.len(), 3, "every board: {boards:?}");
    let _ = std::fs::remove_dir_all(&root);
}

/// Writes seeds 0..N into VMRUN_GEN_DIR to look at:
/// `VMRUN_GEN_DIR=/tmp/g cargo test --test generated write_some -- --ignored`.
#[test]
#[ignore]
fn write_some() {
    let dir = std::path::PathBuf::from(std::env::var("VMRUN_GEN_DIR").unwrap());
    for seed in 0..cases().min(400) {
        gen::generate(seed, &dir.join(seed.to_string()));
    }
}
