//! JSON as QMP speaks it: a value type that keeps object members in order, a parser
//! for what clients send and a writer that prints what QEMU prints.
//!
//! The parser follows QEMU's JSON dialect and its error messages: single-quoted
//! strings are accepted, duplicate keys are refused, nesting is limited to
//! [`MAX_DEPTH`], an integer is kept exact when it fits `i64` or `u64` and becomes a
//! double otherwise (one beyond the double range is refused, where QEMU would
//! print `inf`). It never panics and never recurses deeper than the limit.
//!
//! The writer uses QEMU's spacing (`{"a": 1, "b": [1, 2]}`), escapes every character
//! outside printable ASCII as `\uXXXX` (upper-case hex, surrogate pairs above the
//! BMP) and prints doubles as C's `%.17g` does.

/// A JSON value; objects keep their members in insertion order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// How deep arrays and objects may nest (QEMU's limit).
pub const MAX_DEPTH: usize = 1024;

impl Json {
    /// An object from `(key, value)` pairs, in that order.
    pub fn object<K: Into<String>>(members: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Object(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The empty object `{}`.
    pub fn empty() -> Json {
        Json::Object(Vec::new())
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// QEMU's compact one-line form.
    pub fn to_qmp(&self) -> String {
        let mut s = String::new();
        write_value(&mut s, self);
        s
    }

    /// Indented, one member per line (for people).
    pub fn to_pretty(&self) -> String {
        let mut s = String::new();
        write_pretty(&mut s, self, 0);
        s
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Self {
        Json::Str(s.to_string())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Self {
        Json::Str(s)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Self {
        Json::Bool(b)
    }
}

impl From<i64> for Json {
    fn from(i: i64) -> Self {
        Json::Int(i)
    }
}

impl From<u32> for Json {
    fn from(i: u32) -> Self {
        Json::Int(i64::from(i))
    }
}

impl From<u64> for Json {
    fn from(i: u64) -> Self {
        i64::try_from(i).map_or(Json::UInt(i), Json::Int)
    }
}

impl From<Vec<Json>> for Json {
    fn from(v: Vec<Json>) -> Self {
        Json::Array(v)
    }
}

// ---------------------------------------------------------------- parser

/// Why a request could not be parsed; the Display is QEMU's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("JSON parse error, expecting value")]
    ExpectingValue,
    #[error("JSON parse error, invalid keyword '{0}'")]
    Keyword(String),
    #[error("JSON parse error, stray '{0}'")]
    Stray(String),
    #[error("JSON parse error, missing : in object pair")]
    MissingColon,
    #[error("JSON parse error, key is not a string in object")]
    KeyNotString,
    #[error("JSON parse error, duplicate key")]
    DuplicateKey,
    #[error("JSON parse error, expected separator in dict")]
    DictSeparator,
    #[error("JSON parse error, expected separator in list")]
    ListSeparator,
    #[error("JSON parse error, invalid escape sequence in string")]
    Escape,
    #[error("JSON parse error, \\u{0:04x} is not a valid Unicode character")]
    BadCodePoint(u32),
    #[error("JSON parse error, premature end of input")]
    Eof,
    #[error("JSON nesting depth limit exceeded")]
    TooDeep,
}

/// Parses every value in `input` (a line may hold several, as QEMU's stream parser
/// allows). Parsing stops at the first error, which comes last.
pub fn parse_all(input: &[u8]) -> Vec<Result<Json, ParseError>> {
    let mut p = Parser { s: input, i: 0 };
    let mut out = Vec::new();
    loop {
        p.skip_ws();
        if p.i >= p.s.len() {
            return out;
        }
        match p.value(0) {
            Ok(v) => out.push(Ok(v)),
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
    }
}

/// Parses exactly one value (trailing whitespace allowed).
pub fn parse(input: &[u8]) -> Result<Json, ParseError> {
    let mut p = Parser { s: input, i: 0 };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    match p.peek() {
        None => Ok(v),
        Some(_) => Err(ParseError::Stray(p.stray())),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// At most this many bytes of a bad token are quoted in an error.
const STRAY_MAX: usize = 32;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    /// The bad token at the cursor, for an error message.
    fn stray(&self) -> String {
        let rest = &self.s[self.i.min(self.s.len())..];
        let end = rest
            .iter()
            .position(|b| b" \t\r\n,:{}[]".contains(b))
            .unwrap_or(rest.len())
            .clamp(1, STRAY_MAX)
            .min(rest.len());
        String::from_utf8_lossy(&rest[..end]).into_owned()
    }

    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.skip_ws();
        match self.peek() {
            None => Err(ParseError::Eof),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(q @ (b'"' | b'\'')) => self.string(q).map(Json::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'a'..=b'z' | b'A'..=b'Z') => self.keyword(),
            Some(b'}' | b']' | b',' | b':') => Err(ParseError::ExpectingValue),
            Some(_) => Err(ParseError::Stray(self.stray())),
        }
    }

    fn keyword(&mut self) -> Result<Json, ParseError> {
        let start = self.i;
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_')
        ) {
            self.i += 1;
        }
        let word = &self.s[start..self.i];
        match word {
            b"true" => Ok(Json::Bool(true)),
            b"false" => Ok(Json::Bool(false)),
            b"null" => Ok(Json::Null),
            _ => {
                let shown = &word[..word.len().min(STRAY_MAX)];
                Err(ParseError::Keyword(
                    String::from_utf8_lossy(shown).into_owned(),
                ))
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        let n = self.digits();
        let bad = |p: &mut Self| {
            p.i = start;
            Err(ParseError::Stray(p.stray()))
        };
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return bad(self);
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            float = true;
            if self.digits() == 0 {
                return bad(self);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            float = true;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return bad(self);
            }
        }
        if matches!(self.peek(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'.')) {
            return bad(self);
        }
        // Only ASCII digits, signs, '.' and 'e' were consumed.
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("0");
        if !float {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Json::Int(i));
            }
            if let Ok(u) = text.parse::<u64>() {
                return Ok(Json::UInt(u));
            }
        }
        // An integer too big for u64 becomes a double, as in QEMU. One too big for a
        // double is refused: QEMU would echo it as `inf`, which is not JSON.
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Json::Float(f)),
            _ => {
                self.i = start;
                Err(ParseError::Stray(self.stray()))
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let h = self.s.get(self.i..self.i + 4).ok_or(ParseError::Escape)?;
        let mut v = 0u32;
        for &b in h {
            let d = (b as char).to_digit(16).ok_or(ParseError::Escape)?;
            v = v * 16 + d;
        }
        self.i += 4;
        Ok(v)
    }

    /// After `\u`: one code point, joining a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let hi = self.hex4()?;
        if (0xDC00..0xE000).contains(&hi) {
            return Err(ParseError::BadCodePoint(hi));
        }
        if (0xD800..0xDC00).contains(&hi) {
            if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                return Err(ParseError::BadCodePoint(hi));
            }
            self.i += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(ParseError::BadCodePoint(hi));
            }
            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            return char::from_u32(c).ok_or(ParseError::BadCodePoint(hi));
        }
        char::from_u32(hi).ok_or(ParseError::BadCodePoint(hi))
    }

    fn string(&mut self, quote: u8) -> Result<String, ParseError> {
        let start = self.i;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(ParseError::Eof);
            };
            self.i += 1;
            match b {
                _ if b == quote => break,
                b'\\' => {
                    let e = self.peek().ok_or(ParseError::Eof)?;
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\'' => '\'',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(ParseError::Escape),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1F => {
                    self.i = start;
                    return Err(ParseError::Stray(self.stray()));
                }
                _ => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| {
            self.i = start;
            ParseError::Stray(self.stray())
        })
    }

    /// After an element: `,` (more follow: true) or `close` (the end: false).
    fn more(&mut self, close: u8, bad: ParseError) -> Result<bool, ParseError> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(false)
            }
            None => Err(ParseError::Eof),
            Some(_) => Err(bad),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            if !self.more(b']', ParseError::ListSeparator)? {
                return Ok(Json::Array(items));
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        self.i += 1;
        let mut members: Vec<(String, Json)> = Vec::new();
        // Keys seen, for the duplicate check without a quadratic scan.
        let mut seen = std::collections::HashSet::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            let key = match self.peek() {
                Some(q @ (b'"' | b'\'')) => self.string(q)?,
                None => return Err(ParseError::Eof),
                Some(b'}' | b',') => return Err(ParseError::ExpectingValue),
                Some(_) => {
                    // Parse (and so validate) the bad key to report the right error.
                    self.value(depth)?;
                    return Err(ParseError::KeyNotString);
                }
            };
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(if self.peek().is_none() {
                    ParseError::Eof
                } else {
                    ParseError::MissingColon
                });
            }
            self.i += 1;
            let v = self.value(depth)?;
            if !seen.insert(key.clone()) {
                return Err(ParseError::DuplicateKey);
            }
            members.push((key, v));
            if !self.more(b'}', ParseError::DictSeparator)? {
                return Ok(Json::Object(members));
            }
        }
    }
}

mod write;
pub use write::format_g17;
use write::{write_pretty, write_value};

#[cfg(test)]
mod tests;
