//! Property test: arbitrary and mutated machine files through parse + check. Whatever
//! the input, vmrun must not panic, and every rejection must carry a location inside
//! the source it names. 100,000 cases by default (VMRUN_FUZZ_CASES to change).

use std::path::PathBuf;

/// xorshift64*: deterministic, so a failure names a reproducible case number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "[machine]",
    "[boot]",
    "[[device]]",
    "[[bus]]",
    "id = \"x\"",
    "kind = \"nic\"",
    "kind = \"serial\"",
    "kind = \"pci-bridge\"",
    "kind = \"pcie-root-port\"",
    "kind = \"disk\"",
    "kind = \"vga\"",
    "board = \"q35\"",
    "board = \"microvm\"",
    "memory = \"5GiB\"",
    "memory = 0",
    "cpus = 0",
    "cpus = -1",
    "cpus = 9999999999999999999",
    "sockets = 4",
    "threads = 3",
    "io = 0xffff",
    "irq = 23",
    "irq = -7",
    "mmio = 0xfeb00000",
    "addr = \"1f.7\"",
    "addr = 31",
    "bus = \"pcie.0\"",
    "bus = \"isa\"",
    "bus = \"sysbus\"",
    "parent = \"x\"",
    "enabled = false",
    "defaults = false",
    "extends = \"m.toml\"",
    "extends = \"\"",
    "path = \"\"",
    "path = \"/dev/null\"",
    "mac = \"52:54:00:00:00:00\"",
    "backend = \"file\"",
    "backend = \"switch\"",
    "files = [{}]",
    "files = [{ name = \"opt/a\", string = \"\" }]",
    "vram = \"3MiB\"",
    "kernel = { path = \"k\", sha256 = \"zz\" }",
    "cmdline = \"\u{0}\"",
    "= =",
    "\"\"\"",
    "[[device.x]]",
    "a.b.c = 1",
    "é = 'ü'",
    "[machine.sub]",
    "x = [1, \"a\"]",
    "t = 1979-05-27T07:32:00Z",
    "f = inf",
    "\n",
    "\t",
    "#",
];

fn corpus() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<String> = std::fs::read_dir(root.join("machines"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    v.sort();
    v
}

fn mutate(rng: &mut Rng, seeds: &[String]) -> String {
    let mut s: Vec<u8> = seeds[rng.below(seeds.len())].clone().into_bytes();
    if rng.below(10) == 0 {
        // Wholly arbitrary text from tokens.
        s.clear();
        for _ in 0..rng.below(30) {
            s.extend_from_slice(TOKENS[rng.below(TOKENS.len())].as_bytes());
            s.push(if rng.below(3) == 0 { b' ' } else { b'\n' });
        }
        return String::from_utf8_lossy(&s).into_owned();
    }
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(6) {
            0 => {
                let tok = TOKENS[rng.below(TOKENS.len())];
                let tok = format!("\n{tok}\n");
                s.splice(at..at, tok.bytes());
            }
            1 if !s.is_empty() => {
                let end = (at + rng.below(40)).min(s.len());
                s.drain(at.min(end)..end);
            }
            2 if at < s.len() => s[at] = (rng.next() & 0x7f) as u8,
            3 => {
                // Duplicate a line.
                let text = String::from_utf8_lossy(&s).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let l = lines[rng.below(lines.len())].to_string();
                    s.splice(at..at, format!("\n{l}\n").bytes());
                }
            }
            4 => {
                // Splice in a piece of another seed.
                let other = seeds[rng.below(seeds.len())].as_bytes();
                let from = rng.below(other.len());
                let to = (from + rng.below(200)).min(other.len());
                s.splice(at..at, other[from..to].iter().copied());
            }
            _ => {
                let digits = format!("{}", rng.next() as i64);
                s.splice(at..at, digits.bytes());
            }
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

#[test]
fn arbitrary_and_mutated_machine_files_never_panic_and_errors_have_locations() {
    let cases: usize = std::env::var("VMRUN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seeds = corpus();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("machines");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut rejected) = (0, 0);
    for case in 0..cases {
        let text = mutate(&mut rng, &seeds);
        let (sources, result) = vmrun::check_str("fuzz.toml", &text, &dir);
        match result {
            Ok(spec) => {
                accepted += 1;
                let _ = vmrun::spec::show::to_toml(&spec);
                let _ = vmrun::spec::graph::to_dot(&spec);
            }
            Err(diags) => {
                rejected += 1;
                assert!(
                    !diags.is_empty(),
                    "case {case}: rejected without an error:\n{text}"
                );
                for d in &diags {
                    let src = sources.get(d.loc.src);
                    assert!(
                        d.loc.span.start <= src.text.len(),
                        "case {case}: location past the end of {}:\n{text}",
                        src.name
                    );
                    let _ = d.render(&sources);
                }
            }
        }
    }
    eprintln!("{cases} cases: {accepted} accepted, {rejected} rejected");
    assert!(accepted > 0 && rejected > 0);
}
