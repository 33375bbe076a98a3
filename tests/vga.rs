//! The std VGA seen from the guest and from the host: the probe writes a text line
//! with its own generated font, then sets a VBE mode and draws four squares; vmrun
//! writes the screen as a PNG when the probe powers off, and the test decodes it.
//! Needs /dev/kvm; says so and skips when it is missing.

use std::path::{Path, PathBuf};

use vmrun::boot::probe::{parse_report, ProbeLine};

mod common;
use common::kvm_usable;

struct Shot {
    lines: Vec<ProbeLine>,
    log: String,
    stderr: String,
    status: Option<i32>,
    png: PathBuf,
}

fn boot(name: &str, opts: &[&str]) -> Shot {
    let dir = std::env::temp_dir().join(format!("vmrun-vga-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("com1.log");
    let file = dir.join("m.toml");
    let png = dir.join("screen.png");
    std::fs::write(
        &file,
        format!(
            "[machine]\nboard = \"pc\"\nmemory = \"64MiB\"\n[[device]]\nid = \"com1\"\n\
             backend = \"file\"\npath = \"{}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let mut args: Vec<String> = vec![
        "probe".into(),
        file.display().to_string(),
        "--timeout".into(),
        "60s".into(),
        "--screenshot-on-exit".into(),
        png.display().to_string(),
        "--".into(),
        "quick=1".into(),
    ];
    args.extend(opts.iter().map(|s| s.to_string()));
    let out = common::vmrun().args(&args).output().unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    Shot {
        lines: parse_report(&log).unwrap_or_else(|e| panic!("bad report ({e}):\n{log}")),
        log,
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        status: out.status.code(),
        png,
    }
}

struct Image {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Image {
    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

fn decode(path: &Path) -> Image {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dec = png::Decoder::new(std::io::BufReader::new(f));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    Image {
        width: info.width,
        height: info.height,
        rgb: buf,
    }
}

fn find<'a>(s: &'a Shot, tag: &str) -> Option<&'a ProbeLine> {
    s.lines
        .iter()
        .find(|l| l.tag == tag || l.tag.starts_with(&format!("{tag} ")))
}

/// The probe's generated font (firmware/vga.c, `vga_glyph_row`).
fn glyph_row(ch: u8, row: u32) -> u8 {
    match row {
        0 | 15.. => 0,
        1 | 14 => 0x7e,
        r => {
            0x42 | if (ch >> ((r - 2) % 8)) & 1 != 0 {
                0x18
            } else {
                0
            }
        }
    }
}

#[test]
fn text_mode_screenshot_shows_the_probe_font() {
    if !kvm_usable() {
        return;
    }
    let s = boot("text", &["vga=text"]);
    let ctx = format!("{}\nstderr: {}", s.log, s.stderr);
    assert_eq!(s.status, Some(0), "{ctx}");
    let l = find(&s, "vga text").unwrap_or_else(|| panic!("no vga text line: {ctx}"));
    assert!(
        l.flags.iter().any(|f| f == "ok") || l.tag.ends_with(" ok"),
        "{ctx}"
    );
    let img = decode(&s.png);
    assert_eq!(
        (img.width, img.height),
        (720, 400),
        "mode 3: 80x25 cells of 9x16"
    );
    let (row, col) = (2u32, 4u32);
    let fg = [0xff, 0xff, 0x55]; // attribute 0x1e: yellow
    let bg = [0x00, 0x00, 0xaa]; // on blue
    for (i, ch) in b"VMRUN VGA".iter().enumerate() {
        let (x0, y0) = ((col + i as u32) * 9, row * 16);
        for r in 0..16 {
            let bits = glyph_row(*ch, r);
            for x in 0..8 {
                let want = if bits & (0x80 >> x) != 0 { fg } else { bg };
                assert_eq!(
                    img.pixel(x0 + x, y0 + r),
                    want,
                    "char {i} ({}) row {r} col {x}",
                    *ch as char
                );
            }
        }
    }
    // Outside the text: black background of an empty screen.
    assert_eq!(img.pixel(700, 390), [0, 0, 0]);
}

#[test]
fn vbe_mode_screenshot_shows_the_pattern() {
    if !kvm_usable() {
        return;
    }
    let s = boot("gfx", &["vga=gfx"]);
    let ctx = format!("{}\nstderr: {}", s.log, s.stderr);
    assert_eq!(s.status, Some(0), "{ctx}");
    let l = s
        .lines
        .iter()
        .find(|l| l.tag.starts_with("vga") && l.get("mode").is_some());
    let l = l.unwrap_or_else(|| panic!("no vga mode line: {ctx}"));
    assert_eq!(l.get("mode"), Some("320x200x32"), "{ctx}");
    assert!(l.flags.iter().any(|f| f == "drawn"), "{ctx}");
    let img = decode(&s.png);
    assert_eq!((img.width, img.height), (320, 200));
    let colours = [[0xff, 0, 0], [0, 0xff, 0], [0, 0, 0xff], [0xff, 0xff, 0xff]];
    for (k, c) in colours.iter().enumerate() {
        let x = 16 + 48 * k as u32;
        for (dx, dy) in [(0, 16), (31, 16), (0, 47), (31, 47), (16, 30)] {
            assert_eq!(img.pixel(x + dx, dy), *c, "square {k} at +{dx},{dy}; {ctx}");
        }
        assert_eq!(img.pixel(x + 32, 30), [0, 0, 0], "right of square {k}");
    }
    assert_eq!(img.pixel(10, 100), [0, 0, 0]);
}
