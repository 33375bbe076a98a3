//! The request path under random input: framer → parser → request check →
//! dispatch (to a fake target). Nothing may panic, and whatever is printed must
//! parse back. 100,000+ cases: random bytes, mutated valid requests, deep nesting,
//! huge numbers and strings.

use super::commands::{self, Session};
use super::fake::FakeTarget;
use super::framer::{Frame, Framer};
use super::json;
use super::protocol;
use super::EventSink;
use crate::testing::Rng;

const SEEDS: &[&str] = &[
    r#"{"execute": "qmp_capabilities"}"#,
    r#"{"execute": "query-status", "id": 1}"#,
    r#"{"execute": "screendump", "arguments": {"filename": "/tmp/x", "format": "png", "head": 0}}"#,
    r#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": [1, {"a": null}]}"#,
    r#"{"execute": "query-cpus-fast", "id": "\u00e9\ud83d\ude00"}"#,
    r#"{"execute": "stop"}{"execute": "cont"}"#,
    r#"[1, 2.5e10, -0, true, false, null, 'single', "\"\\\/\b\f\n\r\t"]"#,
];

const PIECES: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"'",
    b":",
    b",",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\udc00",
    b"1e999999",
    b"-",
    b"0",
    b"123456789012345678901234567890",
    b"null",
    b"tru",
    b"\xff",
    b"\xc3",
    b"\n",
    b"\r\n",
    b" ",
    b"\"execute\"",
    b"\"arguments\"",
    b"\"id\"",
];

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = if v.is_empty() {
            0
        } else {
            rng.below(v.len() as u64 + 1) as usize
        };
        match rng.below(4) {
            0 if at < v.len() => v[at] = rng.next() as u8,
            1 if at < v.len() => {
                v.remove(at);
            }
            2 => {
                let p = PIECES[rng.below(PIECES.len() as u64) as usize];
                v.splice(at..at, p.iter().copied());
            }
            _ => v.insert(at.min(v.len()), rng.next() as u8),
        }
    }
    v
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(64) as usize;
    (0..n).map(|_| rng.next() as u8).collect()
}

fn deep(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(3000) as usize;
    let open: &[u8] = if rng.chance(50) { b"[" } else { b"{\"a\":" };
    let mut v = open.repeat(n);
    if rng.chance(50) {
        v.extend(b"]".repeat(n));
    }
    v
}

fn huge(rng: &mut Rng) -> Vec<u8> {
    let n = 1 + rng.below(200_000) as usize;
    let mut v = b"{\"execute\": \"query-name\", \"id\": ".to_vec();
    if rng.chance(50) {
        v.extend(std::iter::repeat_n(b'9', n));
    } else {
        v.push(b'"');
        v.extend(std::iter::repeat_n(b'x', n));
        v.push(b'"');
    }
    v.extend(b"}");
    v
}

/// One case through the whole path; every reply must be valid JSON.
fn run_case(framer: &mut Framer, session: &mut Session, target: &FakeTarget, input: &[u8]) {
    for frame in framer.feed(input) {
        let Frame::Message(m) = frame else { continue };
        for r in protocol::parse_message(&m) {
            let line = match r {
                Ok(req) => commands::dispatch(target, session, req),
                Err(refused) => protocol::reply_err(&refused.error, refused.id),
            };
            assert!(line.ends_with("\r\n"));
            if let Err(e) = json::parse(line.trim_end().as_bytes()) {
                panic!("reply does not parse ({e}): {line}");
            }
        }
    }
}

#[test]
fn fuzz_request_path() {
    let events = EventSink::new().unwrap();
    let target = FakeTarget::new(events.clone());
    let mut rng = Rng(0x5eed_0f9d);
    let mut session = Session::default();
    let mut framer = Framer::new();
    const CASES: u64 = 100_000;
    for case in 0..CASES {
        let input = match case % 10 {
            0..=4 => {
                let seed = SEEDS[rng.below(SEEDS.len() as u64) as usize];
                mutate(&mut rng, seed.as_bytes())
            }
            5..=6 => random_bytes(&mut rng),
            7 if case % 100 == 7 => deep(&mut rng),
            8 if case % 1000 == 8 => huge(&mut rng),
            _ => SEEDS[rng.below(SEEDS.len() as u64) as usize]
                .as_bytes()
                .to_vec(),
        };
        run_case(&mut framer, &mut session, &target, &input);
        // Parse the case on its own too, outside the stream.
        let _ = json::parse_all(&input);
        if case % 50 == 0 {
            // Resynchronise now and then, as a new connection would.
            framer = Framer::new();
            session = Session::default();
            let _ = events.drain();
        }
    }
}
