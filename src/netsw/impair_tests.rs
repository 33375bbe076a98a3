use super::*;

const MS: Duration = Duration::from_millis(1);

fn spec(f: impl FnOnce(&mut ImpairConfig)) -> Impair {
    let mut c = ImpairConfig::default();
    f(&mut c);
    c.parse().unwrap()
}

fn s(v: &str) -> Option<String> {
    Some(v.into())
}

/// A frame of `len` bytes carrying `k` in its first 4 bytes.
fn frame(k: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..4].copy_from_slice(&k.to_le_bytes());
    f
}

fn tag(f: &Frame) -> u32 {
    u32::from_le_bytes(f.bytes()[..4].try_into().unwrap())
}

/// Pushes `n` frames, `gap` apart from t=0, popping as time goes; returns (departure,
/// tag) of everything that left.
fn run(
    sh: &mut Shaper,
    n: u32,
    gap: Duration,
    len: usize,
    c: &mut PortCounters,
) -> Vec<(Duration, u32)> {
    let mut pool = Pool::default();
    let mut out = Vec::new();
    let pop_until = |sh: &mut Shaper, now: Duration, out: &mut Vec<(Duration, u32)>| {
        while let Some(t) = sh.next_due().filter(|t| *t <= now) {
            if sh.due(t) {
                let f = sh.pop().unwrap();
                out.push((t, tag(&f)));
            }
        }
    };
    for k in 0..n {
        let now = gap * k;
        pop_until(sh, now, &mut out);
        sh.push(&frame(k, len), now, &mut pool, c);
    }
    pop_until(sh, Duration::from_secs(3600), &mut out);
    out
}

#[test]
fn parses_and_prints_back() {
    let i = spec(|c| {
        c.delay = s("20ms");
        c.loss = s("1%");
        c.rate = s("10Mbit");
    });
    assert_eq!(i.delay, 20 * MS);
    assert_eq!(i.loss, 0.01);
    assert_eq!(i.rate, Some(10_000_000));
    assert_eq!((i.burst, i.bucket()), (None, 1514));
    assert_eq!(ImpairConfig::parse(&i.to_config()).unwrap(), i);
    assert!(Impair::default().is_none() && !i.is_none());
    let bad = ImpairConfig {
        loss: s("lots"),
        ..Default::default()
    };
    assert!(bad.parse().is_err());
}

#[test]
fn loss_and_duplicate_rates() {
    let mut c = PortCounters::default();
    let mut sh = Shaper::new(
        spec(|c| {
            c.loss = s("10%");
            c.duplicate = s("5%");
        }),
        1,
    );
    let out = run(&mut sh, 100_000, MS, 60, &mut c);
    let lost = c.tx_dropped.impair_loss as f64 / 1e5;
    assert!((0.095..0.105).contains(&lost), "{lost}");
    let dup = c.duplicated as f64 / (1e5 - c.tx_dropped.impair_loss as f64);
    assert!((0.045..0.055).contains(&dup), "{dup}");
    assert_eq!(
        out.len() as u64,
        100_000 - c.tx_dropped.impair_loss + c.duplicated
    );
}

#[test]
fn delay_distribution_and_order() {
    let mut c = PortCounters::default();
    let mk = || {
        Shaper::new(
            spec(|c| {
                c.delay = s("20ms");
                c.jitter = s("5ms");
            }),
            2,
        )
    };
    // Frames far apart: each delay is 20 ms +- 5 ms, uniform.
    let out = run(&mut mk(), 2000, 50 * MS, 60, &mut c);
    let delays: Vec<f64> = out
        .iter()
        .map(|(t, k)| (*t - 50 * MS * *k).as_secs_f64() * 1e3)
        .collect();
    let mean = delays.iter().sum::<f64>() / delays.len() as f64;
    assert!(
        delays.iter().all(|d| (15.0..=25.0).contains(d)),
        "{delays:?}"
    );
    assert!((19.6..20.4).contains(&mean), "{mean}");
    let low = delays.iter().filter(|d| **d < 17.5).count() as f64 / 2000.0;
    assert!(
        (0.2..0.3).contains(&low),
        "uniform: a quarter below 17.5 ms, got {low}"
    );
    // Frames close together: jitter does not reorder them.
    let out = run(&mut mk(), 5000, MS / 10, 60, &mut c);
    assert!(out.windows(2).all(|w| w[0].1 < w[1].1));
    assert_eq!(out.len(), 5000);
}

#[test]
fn reorder_lets_frames_overtake() {
    let mut c = PortCounters::default();
    let mut sh = Shaper::new(
        spec(|c| {
            c.delay = s("10ms");
            c.reorder = s("25%");
        }),
        3,
    );
    let out = run(&mut sh, 4000, MS, 60, &mut c);
    let overtaking = out.windows(2).filter(|w| w[0].1 > w[1].1).count();
    assert!(overtaking > 500, "{overtaking}");
    let r = c.reordered as f64 / 4000.0;
    assert!((0.22..0.28).contains(&r), "{r}");
}

#[test]
fn token_bucket_rate() {
    let mut c = PortCounters::default();
    let mut sh = Shaper::new(
        spec(|c| {
            c.rate = s("10Mbit");
            c.limit = Some(5000);
        }),
        4,
    );
    // 2000 frames of 1250 bytes all at once: 1 ms each at 10 Mbit/s, after a one-frame
    // burst.
    let out = run(&mut sh, 2000, Duration::ZERO, 1250, &mut c);
    assert_eq!(out.len(), 2000);
    let span = (out[1999].0 - out[0].0).as_secs_f64();
    let rate = 1999.0 * 1250.0 * 8.0 / span;
    assert!((9.99e6..10.01e6).contains(&rate), "{rate}");
    assert!(out.windows(2).all(|w| w[0].1 < w[1].1));
    // A sender below the rate is not delayed.
    let mut sh = Shaper::new(spec(|c| c.rate = s("10Mbit")), 4);
    let out = run(&mut sh, 100, 2 * MS, 1250, &mut c);
    let start = out[0].0;
    assert!(out
        .iter()
        .enumerate()
        .all(|(k, (t, _))| *t - start == 2 * MS * k as u32));
}

#[test]
fn burst_lets_a_short_burst_through_at_once() {
    let mut c = PortCounters::default();
    let mut sh = Shaper::new(
        spec(|c| {
            c.rate = s("1Mbit");
            c.burst = s("10k");
        }),
        5,
    );
    let out = run(&mut sh, 20, Duration::ZERO, 1000, &mut c);
    let at_once = out.iter().filter(|(t, _)| t.is_zero()).count();
    assert_eq!(at_once, 10, "{out:?}");
}

#[test]
fn limit_and_corrupt() {
    let mut c = PortCounters::default();
    let mut sh = Shaper::new(
        spec(|c| {
            c.delay = s("1s");
            c.limit = Some(100);
            c.corrupt = s("100%");
        }),
        6,
    );
    let mut pool = Pool::default();
    for k in 0..150 {
        sh.push(&frame(k, 64), Duration::ZERO, &mut pool, &mut c);
    }
    assert_eq!(
        (sh.len(), c.tx_dropped.impair_limit, c.corrupted),
        (100, 50, 100)
    );
    assert!(!sh.due(999 * MS) && sh.due(1000 * MS));
    let f = sh.pop().unwrap();
    let flipped: u32 = f
        .bytes()
        .iter()
        .zip(frame(0, 64).iter())
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(flipped, 1);
    assert_eq!(sh.flush(&mut pool), 99);
}
