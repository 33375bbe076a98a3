//! Splits a client's byte stream into JSON messages, as QEMU's stream parser does:
//! a message ends when its braces and brackets balance (or, for a bare scalar, at
//! the next delimiter), newline or not. `qemu.qmp` sends its requests with no
//! newline, so a line-based reader would wait for ever.
//!
//! The framer only tracks strings and nesting; the message is parsed afterwards.
//! It holds at most [`MAX_MESSAGE`] bytes: a longer message is reported once, the
//! moment it crosses the limit, and the rest of it is skipped without being kept.
//! Nesting deeper than [`json::MAX_DEPTH`] is reported the same way.

use super::json;

/// The longest message kept, in bytes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// What the stream produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message's bytes.
    Message(Vec<u8>),
    /// A message grew past [`MAX_MESSAGE`]; its remainder is skipped.
    TooLong,
    /// Nesting went past [`json::MAX_DEPTH`]; the rest of that message is skipped.
    TooDeep,
    /// A `}` or `]` with nothing open.
    Unbalanced,
}

#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    depth: usize,
    /// Inside a string: its quote character.
    quote: Option<u8>,
    escape: bool,
    /// A bare scalar (number, keyword, stray bytes) at depth 0 is in `buf`.
    scalar: bool,
    /// The current message was reported (too long or too deep) and is being skipped.
    skipping: bool,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of the message in progress (kept, or skipped).
    pub fn pending(&self) -> bool {
        !self.buf.is_empty() || self.depth > 0 || self.quote.is_some() || self.skipping
    }

    /// Feeds bytes; returns the frames they complete, in order.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        for &b in data {
            self.byte(b, &mut out);
        }
        out
    }

    fn keep(&mut self, b: u8, out: &mut Vec<Frame>) {
        if self.skipping {
            return;
        }
        if self.buf.len() >= MAX_MESSAGE {
            self.buf = Vec::new();
            self.skipping = true;
            out.push(Frame::TooLong);
            return;
        }
        self.buf.push(b);
    }

    /// The message in `buf` is complete.
    fn finish(&mut self, out: &mut Vec<Frame>) {
        let msg = std::mem::take(&mut self.buf);
        if !self.skipping {
            out.push(Frame::Message(msg));
        }
        self.skipping = false;
        self.scalar = false;
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Frame>) {
        if let Some(q) = self.quote {
            self.keep(b, out);
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == q {
                self.quote = None;
                if self.depth == 0 {
                    self.finish(out);
                }
            }
            return;
        }
        let structural = matches!(b, b'{' | b'[' | b'}' | b']' | b'"' | b'\'');
        let space = matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        if self.depth == 0 && self.scalar && (structural || space) {
            self.finish(out);
        }
        match b {
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth > json::MAX_DEPTH && !self.skipping {
                    self.buf = Vec::new();
                    self.skipping = true;
                    out.push(Frame::TooDeep);
                }
                self.keep(b, out);
            }
            b'}' | b']' => {
                if self.depth == 0 {
                    out.push(Frame::Unbalanced);
                    return;
                }
                self.depth -= 1;
                self.keep(b, out);
                if self.depth == 0 {
                    self.finish(out);
                }
            }
            b'"' | b'\'' => {
                self.quote = Some(b);
                self.keep(b, out);
            }
            _ if space => {
                if self.depth > 0 {
                    self.keep(b, out);
                }
            }
            _ => {
                if self.depth == 0 {
                    self.scalar = true;
                }
                self.keep(b, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Message(m) => String::from_utf8_lossy(m).into_owned(),
                other => format!("<{other:?}>"),
            })
            .collect()
    }

    #[test]
    fn splits_on_balance_not_newlines() {
        let mut f = Framer::new();
        assert!(f.feed(br#"{"execute": "a", "x": "}{"#).is_empty());
        assert!(f.pending());
        let got = f.feed(br#"\"'" }{"execute":"b"}  [1]] 12 "s" tru"#);
        assert_eq!(
            msgs(&got),
            vec![
                r#"{"execute": "a", "x": "}{\"'" }"#,
                r#"{"execute":"b"}"#,
                "[1]",
                "<Unbalanced>",
                "12",
                r#""s""#
            ]
        );
        assert_eq!(msgs(&f.feed(b"\n")), vec!["tru"]);
        assert!(!f.pending());
        assert_eq!(msgs(&f.feed(b"7{}")), vec!["7", "{}"]);
    }

    #[test]
    fn limits() {
        let mut f = Framer::new();
        let mut big = b"{\"a\": \"".to_vec();
        big.resize(MAX_MESSAGE + 10, b'x');
        assert_eq!(f.feed(&big), vec![Frame::TooLong]);
        assert!(f.feed(&vec![b'y'; 3 * MAX_MESSAGE]).is_empty());
        assert_eq!(msgs(&f.feed(b"\"} {}")), vec!["{}"]);
        let deep = "[".repeat(json::MAX_DEPTH + 1) + &"]".repeat(json::MAX_DEPTH + 1);
        assert_eq!(f.feed(deep.as_bytes()), vec![Frame::TooDeep]);
        let ok = "[".repeat(json::MAX_DEPTH) + &"]".repeat(json::MAX_DEPTH);
        assert_eq!(f.feed(ok.as_bytes()), vec![Frame::Message(ok.into_bytes())]);
    }
}
