//! Screenshots: a rendered [`Frame`] as a PNG (or binary PPM) file, and the names
//! SIGUSR1 shots get.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::render::Frame;

#[derive(Debug, Error)]
pub enum ScreenshotError {
    #[error("cannot create {path}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write PNG {path}")]
    Encode {
        path: PathBuf,
        source: png::EncodingError,
    },
}

/// Encodes `frame` as an 8-bit RGB PNG into `w`.
pub fn write_png<W: std::io::Write>(frame: &Frame, w: W) -> Result<(), png::EncodingError> {
    let mut enc = png::Encoder::new(w, frame.width, frame.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(&frame.rgb)?;
    writer.finish()
}

/// Writes `frame` as a binary PPM (P6, maxval 255), the format QEMU's `screendump`
/// writes by default.
pub fn write_ppm<W: std::io::Write>(frame: &Frame, mut w: W) -> std::io::Result<()> {
    write!(w, "P6\n{} {}\n255\n", frame.width, frame.height)?;
    w.write_all(&frame.rgb)?;
    w.flush()
}

/// Writes `frame` to `path` (through a temporary file renamed into place, so a reader
/// never sees half a PNG).
pub fn save_png(frame: &Frame, path: &Path) -> Result<(), ScreenshotError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = std::fs::File::create(&tmp).map_err(|source| ScreenshotError::Create {
        path: tmp.clone(),
        source,
    })?;
    let out = std::io::BufWriter::new(file);
    write_png(frame, out).map_err(|source| ScreenshotError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| ScreenshotError::Create {
        path: path.to_path_buf(),
        source,
    })
}

/// The file the `n`th on-request screenshot goes to: `<base>-<n>.png`, where `base` is
/// the `--screenshot-on-exit` file without its `.png` extension, or the machine name.
pub fn numbered_path(base: &Path, n: u32) -> PathBuf {
    let stem = if base
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        base.with_extension("")
    } else {
        base.to_path_buf()
    };
    let mut s = stem.into_os_string();
    s.push(format!("-{n}.png"));
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip() {
        let frame = Frame {
            width: 2,
            height: 1,
            rgb: vec![1, 2, 3, 250, 251, 252],
        };
        let mut buf = Vec::new();
        write_png(&frame, &mut buf).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(buf));
        let mut r = dec.read_info().unwrap();
        let mut out = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut out).unwrap();
        assert_eq!((info.width, info.height), (2, 1));
        assert_eq!(&out[..6], &frame.rgb[..]);
    }

    #[test]
    fn numbered_names() {
        assert_eq!(
            numbered_path(Path::new("/tmp/shot.png"), 3),
            PathBuf::from("/tmp/shot-3.png")
        );
        assert_eq!(
            numbered_path(Path::new("web"), 1),
            PathBuf::from("web-1.png")
        );
    }
}
