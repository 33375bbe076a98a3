//! Reads typed values out of a located TOML table, collecting every error (wrong
//! type, bad value, unknown key with a "did you mean") instead of stopping at the first.

use std::path::PathBuf;

use super::node::{Node, Table, Value};
use super::schema::{Field, Ty};
use super::source::{did_you_mean, Diagnostic, Loc, Sources};
use super::units::parse_size;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Sp<T> {
    pub fn new(value: T, loc: Loc) -> Self {
        Self { value, loc }
    }
}

/// A PCI device address on a bus: slot (0-31) and function (0-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    pub slot: u8,
    pub func: u8,
}

impl std::fmt::Display for PciAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02x}.{}", self.slot, self.func)
    }
}

impl PciAddr {
    /// Parses "3", "03", "1f.2": one or two hex digits of slot (00-1f), then
    /// optionally `.` and one digit of function (0-7).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (slot, func) = s.split_once('.').unwrap_or((s, "0"));
        let hex = |t: &str, max_len| {
            (1..=max_len).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_hexdigit())
        };
        let slot = hex(slot, 2)
            .then(|| u8::from_str_radix(slot, 16).ok())
            .flatten()
            .filter(|s| *s < 32);
        let func = (func.len() == 1)
            .then(|| func.parse::<u8>().ok())
            .flatten()
            .filter(|f| *f < 8);
        match (slot, func) {
            (Some(slot), Some(func)) => Ok(Self { slot, func }),
            _ => Err(format!(
                "`{s}` is not a PCI address: write \"SS.F\" with a hex slot 00-1f and a function 0-7, like \"03.0\""
            )),
        }
    }
}

/// `p` made absolute (against the working directory) with `.` and `..` removed
/// lexically, so the spec names every file the same way from any directory.
pub fn absolute(p: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A host file the machine uses, with its optional expected digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub path: Sp<PathBuf>,
    pub sha256: Option<Sp<String>>,
}

/// Reads one table. Call [`TableReader::finish`] when done to report unknown keys.
pub struct TableReader<'a, 'd> {
    pub table: &'a Table,
    pub loc: Loc,
    /// How messages name this table: "[machine]", "device `com1`".
    pub what: String,
    fields: Vec<&'static [Field]>,
    sources: &'a Sources,
    pub diags: &'d mut Vec<Diagnostic>,
}

impl<'a, 'd> TableReader<'a, 'd> {
    /// Reads `node` as a table with the keys in `fields`; `None` (and an error) when it
    /// is not a table.
    pub fn new(
        node: &'a Node,
        what: impl Into<String>,
        fields: &'static [Field],
        sources: &'a Sources,
        diags: &'d mut Vec<Diagnostic>,
    ) -> Option<Self> {
        let what = what.into();
        match &node.value {
            Value::Table(table) => Some(Self {
                table,
                loc: node.loc.clone(),
                what,
                fields: vec![fields],
                sources,
                diags,
            }),
            other => {
                diags.push(
                    Diagnostic::new(
                        &node.loc,
                        format!("{what} must be a table, found {}", other.type_name()),
                    )
                    .label("expected a table"),
                );
                None
            }
        }
    }

    /// Adds more known keys (a device kind's own properties).
    pub fn allow(&mut self, fields: &'static [Field]) {
        self.fields.push(fields);
    }

    fn field(&self, key: &str) -> Option<&'static Field> {
        let found = self
            .fields
            .iter()
            .flat_map(|f| f.iter())
            .find(|f| f.key == key);
        // Every key read must be in the tables that `finish` and the JSON Schema use.
        debug_assert!(
            found.is_some(),
            "`{key}` of {} is not in schema.rs",
            self.what
        );
        found
    }

    pub fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn wrong_type(&mut self, key: &str, node: &Node, expected: &str) {
        let msg = format!(
            "`{key}` in {} must be {expected}, found {}",
            self.what,
            node.value.type_name()
        );
        self.diags
            .push(Diagnostic::new(&node.loc, msg).label(format!("expected {expected}")));
    }

    pub fn node(&self, key: &str) -> Option<&'a Node> {
        let _ = self.field(key);
        self.table.get(key)
    }

    pub fn str(&mut self, key: &str) -> Option<Sp<String>> {
        let node = self.node(key)?;
        match &node.value {
            Value::Str(s) => Some(Sp::new(s.clone(), node.loc.clone())),
            _ => {
                self.wrong_type(key, node, "a string");
                None
            }
        }
    }

    pub fn bool(&mut self, key: &str) -> Option<Sp<bool>> {
        let node = self.node(key)?;
        match &node.value {
            Value::Bool(b) => Some(Sp::new(*b, node.loc.clone())),
            _ => {
                self.wrong_type(key, node, "true or false");
                None
            }
        }
    }

    pub fn int(&mut self, key: &str) -> Option<Sp<i64>> {
        let node = self.node(key)?;
        let (min, max) = match self.field(key).map(|f| f.ty) {
            Some(Ty::Int(min, max)) => (min, max),
            _ => (i64::MIN, i64::MAX),
        };
        match &node.value {
            Value::Int(n) if (min..=max).contains(n) => Some(Sp::new(*n, node.loc.clone())),
            Value::Int(n) => {
                let range = if max > 0xffff {
                    format!("{min:#x} to {max:#x}")
                } else {
                    format!("{min} to {max}")
                };
                let msg = format!(
                    "`{key}` in {} is out of range: {n} (allowed: {range})",
                    self.what
                );
                self.diags
                    .push(Diagnostic::new(&node.loc, msg).label("out of range"));
                None
            }
            _ => {
                self.wrong_type(key, node, "an integer");
                None
            }
        }
    }

    pub fn size(&mut self, key: &str) -> Option<Sp<u64>> {
        let node = self.node(key)?;
        match &node.value {
            Value::Str(s) => match parse_size(s) {
                Ok(n) => Some(Sp::new(n, node.loc.clone())),
                Err(e) => {
                    let msg = format!("bad size for `{key}` in {}: {e}", self.what);
                    self.diags
                        .push(Diagnostic::new(&node.loc, msg).label("not a size"));
                    None
                }
            },
            Value::Int(n) => {
                let msg = format!(
                    "`{key}` in {} needs a unit: write \"{n}MiB\" or \"{n}GiB\", not a bare number",
                    self.what
                );
                self.diags
                    .push(Diagnostic::new(&node.loc, msg).label("a bare number"));
                None
            }
            _ => {
                self.wrong_type(key, node, "a size string like \"512MiB\"");
                None
            }
        }
    }

    /// A string that must be one of the field's choices.
    pub fn choice(&mut self, key: &str) -> Option<Sp<String>> {
        let s = self.str(key)?;
        let choices = match self.field(key).map(|f| f.ty) {
            Some(Ty::Choice(c)) => c,
            _ => return Some(s),
        };
        if choices.contains(&s.value.as_str()) {
            return Some(s);
        }
        let list = choices
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut d = Diagnostic::new(
            &s.loc,
            format!("`{key}` in {} can't be \"{}\"", self.what, s.value),
        )
        .note(format!("expected one of {list}"));
        if let Some(m) = did_you_mean(&s.value, choices.iter().copied()) {
            d = d.label(format!("did you mean \"{m}\"?"));
        }
        self.diags.push(d);
        None
    }

    /// A host path, resolved against the directory of the file it was written in.
    pub fn path(&mut self, key: &str) -> Option<Sp<PathBuf>> {
        let s = self.str(key)?;
        if s.value.is_empty() || s.value.contains('\0') {
            let msg = format!("`{key}` in {} must be a file path", self.what);
            self.diags
                .push(Diagnostic::new(&s.loc, msg).label("empty path"));
            return None;
        }
        let p = absolute(&self.sources.base_dir(s.loc.src).join(&s.value));
        Some(Sp::new(p, s.loc))
    }

    /// A datagram endpoint: `udp://HOST:PORT` as written, or a socket path taken from
    /// the file's directory as [`Self::path`] does.
    pub fn endpoint(&mut self, key: &str) -> Option<Sp<String>> {
        let s = self.str(key)?;
        if s.value.contains("://") {
            return Some(s);
        }
        self.path(key)
            .map(|p| Sp::new(p.value.to_string_lossy().into_owned(), p.loc))
    }

    pub fn artifact(&mut self, key: &str) -> Option<Artifact> {
        let node = self.node(key)?;
        match &node.value {
            Value::Str(_) => Some(Artifact {
                path: self.path(key)?,
                sha256: None,
            }),
            Value::Table(_) => {
                let what = format!("`{key}` in {}", self.what);
                let mut t = TableReader::new(
                    node,
                    what,
                    super::schema::ARTIFACT,
                    self.sources,
                    &mut *self.diags,
                )?;
                let path = t.path("path");
                let sha256 = t.str("sha256");
                if path.is_none() && t.node("path").is_none() {
                    let msg = format!("{} needs a `path`", t.what);
                    t.error(Diagnostic::new(&node.loc, msg).label("no path"));
                }
                if let Some(h) = &sha256 {
                    if h.value.len() != 64 || !h.value.bytes().all(|b| b.is_ascii_hexdigit()) {
                        let msg = format!("`sha256` in {} must be 64 hex digits", t.what);
                        t.error(Diagnostic::new(&h.loc, msg).label("not a SHA-256 digest"));
                    }
                }
                t.finish();
                Some(Artifact {
                    path: path?,
                    sha256,
                })
            }
            _ => {
                self.wrong_type(key, node, "a path or a table { path, sha256 }");
                None
            }
        }
    }

    pub fn pci_addr(&mut self, key: &str) -> Option<Sp<PciAddr>> {
        let node = self.node(key)?;
        let parsed = match &node.value {
            Value::Str(s) => PciAddr::parse(s),
            Value::Int(n) if (0..32).contains(n) => Ok(PciAddr {
                slot: *n as u8,
                func: 0,
            }),
            Value::Int(n) => Err(format!("slot {n} is out of range (0-31)")),
            _ => {
                self.wrong_type(key, node, "a PCI address string like \"03.0\"");
                return None;
            }
        };
        match parsed {
            Ok(a) => Some(Sp::new(a, node.loc.clone())),
            Err(e) => {
                self.diags.push(
                    Diagnostic::new(&node.loc, format!("bad `{key}` in {}: {e}", self.what))
                        .label("not a PCI address"),
                );
                None
            }
        }
    }

    pub fn mac(&mut self, key: &str) -> Option<Sp<[u8; 6]>> {
        let s = self.str(key)?;
        let parts: Vec<_> = s.value.split(':').collect();
        let bytes: Vec<u8> = parts
            .iter()
            .filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
            .filter_map(|p| u8::from_str_radix(p, 16).ok())
            .collect();
        let Ok(mac) = <[u8; 6]>::try_from(bytes.as_slice()) else {
            let msg = format!("`{key}` in {} is not a MAC address: write six hex bytes like \"52:54:00:12:34:56\"", self.what);
            self.diags
                .push(Diagnostic::new(&s.loc, msg).label("not a MAC address"));
            return None;
        };
        if parts.len() != 6 {
            return None;
        }
        if mac[0] & 1 != 0 {
            let msg = format!(
                "`{key}` in {} is a multicast address; a NIC needs a unicast one (even first byte)",
                self.what
            );
            self.diags
                .push(Diagnostic::new(&s.loc, msg).label("multicast bit set"));
            return None;
        }
        Some(Sp::new(mac, s.loc))
    }

    /// An array of tables, as (node) list; a non-array is an error.
    pub fn tables(&mut self, key: &str) -> Vec<&'a Node> {
        let Some(node) = self.node(key) else {
            return Vec::new();
        };
        match &node.value {
            Value::Array(items) => items.iter().collect(),
            _ => {
                self.wrong_type(key, node, "an array of tables");
                Vec::new()
            }
        }
    }

    /// Reports every key not among the known fields, with a suggestion. `elsewhere`
    /// names where a key would have been valid ("it belongs to vga devices").
    pub fn finish_with(self, elsewhere: impl Fn(&str) -> Option<String>) {
        let known: Vec<&str> = self
            .fields
            .iter()
            .flat_map(|f| f.iter())
            .map(|f| f.key)
            .collect();
        for (key, _) in &self.table.entries {
            if known.contains(&key.name.as_str()) {
                continue;
            }
            let mut d = Diagnostic::new(
                &key.loc,
                format!("unknown key `{}` in {}", key.name, self.what),
            );
            if let Some(m) = did_you_mean(&key.name, known.iter().copied()) {
                d = d.label(format!("did you mean `{m}`?"));
            } else if let Some(hint) = elsewhere(&key.name) {
                d = d.label(hint);
            } else {
                d = d.label("unknown key");
            }
            let list = known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            self.diags
                .push(d.note(format!("keys allowed here: {list}")));
        }
    }

    pub fn finish(self) {
        self.finish_with(|_| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert_eq!(
            PciAddr::parse("1f.2"),
            Ok(PciAddr {
                slot: 0x1f,
                func: 2
            })
        );
        assert_eq!(PciAddr::parse("3"), Ok(PciAddr { slot: 3, func: 0 }));
        assert!(PciAddr::parse("20.0").is_err());
        assert!(PciAddr::parse("03.8").is_err());
        assert!(PciAddr::parse("").is_err());
        assert!(PciAddr::parse(".1").is_err());
        for bad in ["+1", "001", "1f.+2", "1f.02", "1f.", " 1", "g"] {
            assert!(PciAddr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(PciAddr { slot: 3, func: 1 }.to_string(), "03.1");
    }
}
