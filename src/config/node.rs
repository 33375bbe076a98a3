//! A TOML value tree in which every key and value remembers the file and byte range it
//! came from, so that files merged through `extends` (and the board's built-in
//! defaults) still point errors at the right line of the right file.

use toml::de::{DeTable, DeValue};

use super::source::{Diagnostic, Loc, SrcId};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Table),
}

impl Value {
    /// The TOML type name, for "expected a string, found an integer" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

/// A table, in the order its keys were written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub entries: Vec<(Key, Node)>,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn key(&self, key: &str) -> Option<&Key> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| k)
    }

    pub fn remove(&mut self, key: &str) -> Option<(Key, Node)> {
        let i = self.entries.iter().position(|(k, _)| k.name == key)?;
        Some(self.entries.remove(i))
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match &self.get(key)?.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Parses TOML text into a located tree. Syntax errors come back all together.
pub fn parse(src: SrcId, text: &str) -> Result<Node, Vec<Diagnostic>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| {
                let span = e.span().unwrap_or(0..0);
                let msg = e.message().trim().trim_end_matches('.').to_string();
                let msg = msg.lines().next().unwrap_or("invalid TOML").to_string();
                Diagnostic::new(&Loc::new(src, span), format!("invalid TOML: {msg}"))
            })
            .collect());
    }
    let span = doc.span();
    let mut diags = Vec::new();
    let table = convert_table(src, doc.get_ref(), &mut diags);
    if diags.is_empty() {
        Ok(Node {
            value: Value::Table(table),
            loc: Loc::new(src, span),
        })
    } else {
        Err(diags)
    }
}

fn convert_table(src: SrcId, t: &DeTable<'_>, diags: &mut Vec<Diagnostic>) -> Table {
    let entries = t
        .iter()
        .map(|(k, v)| {
            let key = Key {
                name: k.get_ref().to_string(),
                loc: Loc::new(src, k.span()),
            };
            (key, convert(src, v.get_ref(), v.span(), diags))
        })
        .collect();
    Table { entries }
}

fn convert(
    src: SrcId,
    v: &DeValue<'_>,
    span: std::ops::Range<usize>,
    diags: &mut Vec<Diagnostic>,
) -> Node {
    let loc = Loc::new(src, span);
    let value = match v {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::Int(n),
            Err(_) => {
                diags.push(
                    Diagnostic::new(&loc, "integer out of range").label("does not fit in 64 bits"),
                );
                Value::Int(0)
            }
        },
        DeValue::Float(f) => Value::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(a) => Value::Array(
            a.iter()
                .map(|e| convert(src, e.get_ref(), e.span(), diags))
                .collect(),
        ),
        DeValue::Table(t) => Value::Table(convert_table(src, t, diags)),
    };
    Node { value, loc }
}

/// Arrays of tables that merge element by element, matched by their `id` key.
pub const MERGE_BY_ID: &[&str] = &["device", "bus"];

/// Merges `over` onto `base`: tables merge key by key (recursively), arrays of tables
/// named in [`MERGE_BY_ID`] merge by `id` (same id: tables merge; new ids are appended
/// in order), every other value in `over` replaces the one in `base`.
pub fn merge(base: &mut Table, over: Table) {
    for (key, node) in over.entries {
        let existing = base.entries.iter_mut().find(|(k, _)| k.name == key.name);
        match existing {
            None => base.entries.push((key, node)),
            Some((_, old)) => match (&mut old.value, node.value) {
                (Value::Table(b), Value::Table(o)) => merge(b, o),
                (Value::Array(b), Value::Array(o)) if MERGE_BY_ID.contains(&key.name.as_str()) => {
                    merge_by_id(b, o)
                }
                (_, value) => {
                    *old = Node {
                        value,
                        loc: node.loc,
                    };
                }
            },
        }
    }
}

/// An entry of a file laid over a base that reuses the id of a base entry with another
/// `kind`: an override by id keeps the device (or bus) it overrides, so this is an
/// error, reported at the overriding `kind`.
#[derive(Debug)]
pub struct KindClash {
    /// "device" or "bus".
    pub what: &'static str,
    pub id: String,
    pub base_kind: (String, Loc),
    pub over_kind: (String, Loc),
}

fn entries<'a>(t: &'a Table, what: &str) -> &'a [Node] {
    match t.get(what).map(|n| &n.value) {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

fn kind_of(n: &Node) -> Option<(String, Loc)> {
    match &n.value {
        Value::Table(t) => t.get("kind").and_then(|k| match &k.value {
            Value::Str(s) => Some((s.clone(), k.loc.clone())),
            _ => None,
        }),
        _ => None,
    }
}

/// Finds the entries of `over` that would change the kind of the `base` entry with
/// their id, and takes them out of `over` (the base entry stays as it was).
pub fn take_kind_clashes(base: &Table, over: &mut Table) -> Vec<KindClash> {
    let mut clashes = Vec::new();
    for what in MERGE_BY_ID {
        let base_items = entries(base, what);
        let Some(Node {
            value: Value::Array(items),
            ..
        }) = over
            .entries
            .iter_mut()
            .find(|(k, _)| k.name == *what)
            .map(|(_, n)| n)
        else {
            continue;
        };
        items.retain(|item| {
            let Some(id) = id_of(item) else { return true };
            let base_kind = base_items
                .iter()
                .find(|b| id_of(b) == Some(id))
                .and_then(kind_of);
            match (base_kind, kind_of(item)) {
                (Some(b), Some(o)) if b.0 != o.0 => {
                    clashes.push(KindClash {
                        what,
                        id: id.to_string(),
                        base_kind: b,
                        over_kind: o,
                    });
                    false
                }
                _ => true,
            }
        });
    }
    clashes
}

fn id_of(n: &Node) -> Option<&str> {
    match &n.value {
        Value::Table(t) => t.str("id"),
        _ => None,
    }
}

fn merge_by_id(base: &mut Vec<Node>, over: Vec<Node>) {
    for node in over {
        let slot = id_of(&node).and_then(|id| base.iter().position(|b| id_of(b) == Some(id)));
        match slot {
            Some(i) => {
                if let (Value::Table(b), Value::Table(o)) = (&mut base[i].value, node.value) {
                    merge(b, o);
                }
            }
            None => base.push(node),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(src: u32, text: &str) -> Table {
        match parse(SrcId(src), text).unwrap().value {
            Value::Table(t) => t,
            _ => unreachable!(),
        }
    }

    #[test]
    fn merges_tables_and_devices_by_id() {
        let mut base = table(
            0,
            "[machine]\nname='a'\nmemory='1GiB'\n[[device]]\nid='com1'\nkind='serial'\n[[device]]\nid='vga'\nkind='vga'\n",
        );
        let over = table(1, "[machine]\nmemory='2GiB'\n[[device]]\nid='com1'\nbackend='null'\n[[device]]\nid='n0'\nkind='nic'\n");
        merge(&mut base, over);
        let m = match &base.get("machine").unwrap().value {
            Value::Table(t) => t.clone(),
            _ => unreachable!(),
        };
        assert_eq!(m.str("name"), Some("a"));
        assert_eq!(m.str("memory"), Some("2GiB"));
        assert_eq!(m.get("memory").unwrap().loc.src, SrcId(1));
        let Value::Array(devs) = &base.get("device").unwrap().value else {
            unreachable!()
        };
        let ids: Vec<_> = devs.iter().map(|d| id_of(d).unwrap()).collect();
        assert_eq!(ids, ["com1", "vga", "n0"]);
        let Value::Table(com1) = &devs[0].value else {
            unreachable!()
        };
        assert_eq!(com1.str("kind"), Some("serial"));
        assert_eq!(com1.str("backend"), Some("null"));
    }

    #[test]
    fn a_kind_clash_is_taken_out() {
        let base = table(
            0,
            "[[device]]\nid='a'\nkind='serial'\n[[device]]\nid='b'\nkind='vga'\n",
        );
        let mut over = table(1, "[[device]]\nid='a'\nkind='nic'\n[[device]]\nid='b'\nkind='vga'\n[[device]]\nid='c'\nkind='nic'\n");
        let c = take_kind_clashes(&base, &mut over);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].id.as_str(), c[0].over_kind.0.as_str()), ("a", "nic"));
        assert_eq!(c[0].over_kind.1.src, SrcId(1));
        assert_eq!(entries(&over, "device").len(), 2);
    }

    #[test]
    fn syntax_errors_have_locations() {
        let errs = parse(SrcId(0), "[machine\nname = 'x'\n").unwrap_err();
        assert!(!errs.is_empty());
        assert!(errs[0].message.starts_with("invalid TOML"));
    }

    #[test]
    fn hex_integers() {
        let t = table(0, "io = 0x3f8\nneg = -5\n");
        assert_eq!(t.get("io").unwrap().value, Value::Int(0x3f8));
        assert_eq!(t.get("neg").unwrap().value, Value::Int(-5));
    }
}
