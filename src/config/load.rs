//! Loading a machine file: read it, follow `extends` to the files it builds on, merge
//! them, and lay the result over the board's devices.
//!
//! Merge rules (documented in the README, tested below):
//! 1. `extends = "base.toml"` (relative to the file that says it) is loaded first,
//!    recursively; a file may extend one other file; a cycle is an error.
//! 2. The extending file is laid over its base: tables merge key by key, `[[device]]`
//!    and `[[bus]]` entries merge by `id` (same id: keys merge, the later file wins;
//!    new ids are appended), any other value is replaced whole (arrays included).
//! 3. The result is laid over the board's devices the same way: first the interrupt
//!    controllers every board has, then — unless `[machine] defaults = false` — the
//!    board's default devices. So a `[[device]]` with a default's id overrides that
//!    default, and `enabled = false` removes it.
//! 4. An override by id keeps what it overrides: giving it another `kind` is an error
//!    (at the overriding `kind`), and so is switching off an interrupt controller.
//!
//! A file that is not UTF-8 is an error at the line and column of its first bad byte.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::node::{self, merge, take_kind_clashes, KindClash, Node, Table, Value};
use super::origin::{BoardDevice, Origins};
use super::source::{Diagnostic, Loc, Sources, SrcId};
use crate::board::BoardKind;

/// Loading failed before any location in a file could be blamed.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The most `extends` levels followed.
const MAX_DEPTH: usize = 16;

/// Reads `path` and everything it extends; returns the merged document (before
/// board defaults) or the diagnostics found on the way.
pub fn load_files(
    path: &Path,
    sources: &mut Sources,
) -> Result<Result<Node, Vec<Diagnostic>>, LoadError> {
    let mut chain: Vec<PathBuf> = Vec::new();
    load_one(path, None, sources, &mut chain)
}

/// [`load_files`] for a top file given as text (its `extends` still load from disk,
/// relative to `path`'s directory).
pub fn load_text(
    name: &str,
    path: &Path,
    text: String,
    sources: &mut Sources,
) -> Result<Node, Vec<Diagnostic>> {
    let mut chain: Vec<PathBuf> = Vec::new();
    let id = sources.add(name, Some(path.to_path_buf()), text);
    match parse_and_extend(id, path.to_path_buf(), sources, &mut chain) {
        Ok(r) => r,
        Err(e) => Err(vec![Diagnostic::new(&Loc::new(id, 0..0), e.to_string())]),
    }
}

fn load_one(
    path: &Path,
    from: Option<&Loc>,
    sources: &mut Sources,
    chain: &mut Vec<PathBuf>,
) -> Result<Result<Node, Vec<Diagnostic>>, LoadError> {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let bytes = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => {
            return match from {
                None => Err(LoadError::Read {
                    path: path.to_path_buf(),
                    source: e,
                }),
                Some(loc) => Ok(Err(vec![Diagnostic::new(
                    loc,
                    format!("cannot read {}: {e}", path.display()),
                )
                .label("the file this machine extends")])),
            }
        }
    };
    if let (Some(loc), true) = (from, chain.contains(&canon)) {
        let cycle: Vec<String> = chain
            .iter()
            .chain([&canon])
            .map(|p| p.display().to_string())
            .collect();
        return Ok(Err(vec![Diagnostic::new(loc, "`extends` makes a cycle")
            .label("this file is already being loaded")
            .note(cycle.join(" extends "))]));
    }
    if let (Some(loc), true) = (from, chain.len() >= MAX_DEPTH) {
        return Ok(Err(vec![Diagnostic::new(
            loc,
            format!("`extends` is nested more than {MAX_DEPTH} levels deep"),
        )]));
    }
    let name = display_name(path);
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bad = e.as_bytes()[at];
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let id = sources.add(name, Some(path.to_path_buf()), lossy);
            let msg = format!("{} is not UTF-8 text", path.display());
            let d = Diagnostic::new(&Loc::new(id, at..at + 3), msg)
                .label(format!("byte {bad:#04x} is not valid UTF-8 here"))
                .note("machine files are TOML, which is UTF-8");
            return Ok(Err(vec![d]));
        }
    };
    let id = sources.add(name, Some(path.to_path_buf()), text);
    parse_and_extend(id, canon, sources, chain)
}

fn parse_and_extend(
    id: SrcId,
    canon: PathBuf,
    sources: &mut Sources,
    chain: &mut Vec<PathBuf>,
) -> Result<Result<Node, Vec<Diagnostic>>, LoadError> {
    let doc = match node::parse(id, &sources.get(id).text) {
        Ok(d) => d,
        Err(diags) => return Ok(Err(diags)),
    };
    let Value::Table(mut table) = doc.value else {
        unreachable!("a TOML document is a table")
    };
    let Some((_, ext)) = table.remove("extends") else {
        let dups = duplicate_ids(&table);
        return Ok(if dups.is_empty() {
            Ok(Node {
                value: Value::Table(table),
                loc: doc.loc,
            })
        } else {
            Err(dups)
        });
    };
    let dups = duplicate_ids(&table);
    if !dups.is_empty() {
        return Ok(Err(dups));
    }
    let Value::Str(rel) = &ext.value else {
        let msg = format!(
            "`extends` must be a file path, found {}",
            ext.value.type_name()
        );
        return Ok(Err(vec![
            Diagnostic::new(&ext.loc, msg).label("expected a string")
        ]));
    };
    let base_path = sources.base_dir(id).join(rel);
    chain.push(canon);
    let base = load_one(&base_path, Some(&ext.loc), sources, chain)?;
    chain.pop();
    let mut base = match base {
        Ok(b) => b,
        Err(d) => return Ok(Err(d)),
    };
    if let Value::Table(bt) = &mut base.value {
        let clashes = take_kind_clashes(bt, &mut table);
        if !clashes.is_empty() {
            return Ok(Err(clashes
                .into_iter()
                .map(|c| inherited_clash(c, sources))
                .collect()));
        }
        // The base's own `extends` was consumed; the base's name default must not win
        // over the extending file's, so the name is only what a file says explicitly.
        merge(bt, table);
    }
    Ok(Ok(Node {
        value: base.value,
        loc: doc.loc,
    }))
}

/// Two `[[device]]` (or `[[bus]]`) entries of one file with the same id.
fn duplicate_ids(table: &Table) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for what in node::MERGE_BY_ID {
        let Some(Node {
            value: Value::Array(items),
            ..
        }) = table.get(what)
        else {
            continue;
        };
        let mut seen: Vec<(&str, &Loc)> = Vec::new();
        for item in items {
            let Value::Table(t) = &item.value else {
                continue;
            };
            let (Some(id), Some(n)) = (t.str("id"), t.get("id")) else {
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(s, _)| *s == id) {
                diags.push(
                    Diagnostic::new(
                        &n.loc,
                        format!("{what} id `{id}` is used twice in this file"),
                    )
                    .label("second use")
                    .note_at(first, "first used here"),
                );
            } else {
                seen.push((id, &n.loc));
            }
        }
    }
    diags
}

fn inherited_clash(c: KindClash, sources: &Sources) -> Diagnostic {
    let file = &sources.get(c.base_kind.1.src).name;
    let msg = format!(
        "{} `{}` is a {} in {file}: a [[{}]] with its id overrides it and can't change its kind to {}",
        c.what, c.id, c.base_kind.0, c.what, c.over_kind.0
    );
    Diagnostic::new(&c.over_kind.1, msg)
        .label(format!("use another id for a new {}", c.over_kind.0))
        .note_at(&c.base_kind.1, format!("`{}` is declared here", c.id))
}

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// [`with_board_devices`]'s result: the merged document, where each board device
/// came from, and the errors found while merging.
pub struct WithBoard {
    pub doc: Node,
    pub origins: Origins,
    pub diags: Vec<Diagnostic>,
}

/// Lays `doc` over the board's interrupt controllers and (unless switched off) its
/// default devices. The board is read loosely here; a bad value is reported later.
pub fn with_board_devices(doc: Node, sources: &mut Sources) -> WithBoard {
    let anchor = Loc::new(doc.loc.src, 0..0);
    let machine = match &doc.value {
        Value::Table(t) => t.get("machine"),
        _ => None,
    };
    let machine = match machine.map(|m| &m.value) {
        Some(Value::Table(m)) => Some(m),
        _ => None,
    };
    let board_key = machine.and_then(|m| m.get("board")).map(|n| n.loc.clone());
    let kind = BoardKind::parse(machine.and_then(|m| m.str("board")).unwrap_or("pc"));
    let defaults = !matches!(
        machine.and_then(|m| m.get("defaults")).map(|n| &n.value),
        Some(Value::Bool(false))
    );
    let (
        Some(kind),
        Node {
            value: Value::Table(mut user),
            loc,
        },
    ) = (kind, doc.clone())
    else {
        return WithBoard {
            doc,
            origins: Origins::none(anchor),
            diags: Vec::new(),
        };
    };
    let board = kind.board();
    let board_src_start = sources.len() as u32;
    let name = format!("<board {} devices>", board.name);
    let mut base = board_table(sources, &name, board.intrinsic);
    let mut devices = board_devices(&base, true, sources);
    if defaults {
        let name = format!("<board {} defaults>", board.name);
        let d = board_table(sources, &name, board.defaults);
        devices.extend(board_devices(&d, false, sources));
        merge(&mut base, d);
    }
    let mut diags: Vec<Diagnostic> = take_kind_clashes(&base, &mut user)
        .into_iter()
        .map(|c| default_clash(c, board.name, &devices))
        .collect();
    claim_overrides(&mut user, &mut devices, board.name, &mut diags);
    merge(&mut base, user);
    WithBoard {
        doc: Node {
            value: Value::Table(base),
            loc,
        },
        origins: Origins {
            board_src_start,
            board_name: board.name,
            devices,
            board_key,
            anchor,
        },
        diags,
    }
}

/// Notes which user entry overrides each board device, and refuses `enabled = false`
/// on the interrupt controllers (the VM always has them).
fn claim_overrides(
    user: &mut Table,
    devices: &mut [BoardDevice],
    board: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(Node {
        value: Value::Array(items),
        ..
    }) = user
        .entries
        .iter_mut()
        .find(|(k, _)| k.name == "device")
        .map(|(_, n)| n)
    else {
        return;
    };
    for item in items {
        let Value::Table(t) = &mut item.value else {
            continue;
        };
        let (Some(id), Some(id_node)) = (t.str("id"), t.get("id")) else {
            continue;
        };
        let Some(dev) = devices.iter_mut().find(|d| d.id == id) else {
            continue;
        };
        dev.user = Some(id_node.loc.clone());
        let off = t.get("enabled").filter(|n| n.value == Value::Bool(false));
        if let (Some(off), true) = (off, dev.intrinsic) {
            diags.push(
                Diagnostic::new(
                    &off.loc,
                    format!(
                        "device `{id}` can't be switched off: it is one of board {board}'s interrupt controllers, which every machine has"
                    ),
                )
                .label("remove `enabled = false`"),
            );
            t.remove("enabled");
        }
    }
}

fn default_clash(c: KindClash, board: &str, devices: &[BoardDevice]) -> Diagnostic {
    let intrinsic = devices.iter().any(|d| d.id == c.id && d.intrinsic);
    let (what, whats) = if intrinsic {
        ("interrupt controller", "interrupt controllers")
    } else {
        ("default device", "default devices")
    };
    let msg = format!(
        "`{}` is board {board}'s {what} (a {}): a [[device]] with its id overrides it and can't make it a {}",
        c.id, c.base_kind.0, c.over_kind.0
    );
    Diagnostic::new(&c.over_kind.1, msg)
        .label(format!("use another id for a new {}", c.over_kind.0))
        .note_at(
            &c.base_kind.1,
            format!("`{}` is one of board {board}'s {whats}", c.id),
        )
}

fn board_table(sources: &mut Sources, name: &str, text: &str) -> Table {
    let id: SrcId = sources.add(name, None, text.to_string());
    match node::parse(id, text) {
        Ok(Node {
            value: Value::Table(t),
            ..
        }) => t,
        // The board texts are ours and parsed by a unit test; an error is a bug.
        _ => Table::default(),
    }
}

/// The devices of one board text, each with its region of the text.
fn board_devices(t: &Table, intrinsic: bool, sources: &Sources) -> Vec<BoardDevice> {
    let Some(Value::Array(items)) = t.get("device").map(|n| &n.value) else {
        return Vec::new();
    };
    let mut out: Vec<BoardDevice> = Vec::new();
    for item in items {
        let Value::Table(d) = &item.value else {
            continue;
        };
        let end = sources.get(item.loc.src).text.len();
        if let Some(prev) = out.last_mut() {
            prev.region.span.end = item.loc.span.start;
        }
        out.push(BoardDevice {
            id: d.str("id").unwrap_or_default().to_string(),
            kind: d.str("kind").unwrap_or_default().to_string(),
            region: Loc::new(item.loc.src, item.loc.span.start..end),
            intrinsic,
            user: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_texts_parse() {
        for k in [BoardKind::Pc, BoardKind::Q35, BoardKind::Microvm] {
            let b = k.board();
            for text in [b.intrinsic, b.defaults] {
                assert!(node::parse(SrcId(0), text).is_ok(), "{}", b.name);
            }
        }
    }
}
