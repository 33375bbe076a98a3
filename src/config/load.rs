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

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::node::{self, merge, Node, Table, Value};
use super::source::{Diagnostic, Loc, Sources, SrcId};
use crate::board::BoardKind;

/// Loading failed before any location in a file could be blamed.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
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
    let text = match std::fs::read_to_string(path) {
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

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// Lays `doc` over the board's interrupt controllers and (unless switched off) its
/// default devices. The board is read loosely here; a bad value is reported later.
pub fn with_board_devices(doc: Node, sources: &mut Sources) -> Node {
    let machine = match &doc.value {
        Value::Table(t) => t.get("machine"),
        _ => None,
    };
    let machine = match machine.map(|m| &m.value) {
        Some(Value::Table(m)) => Some(m),
        _ => None,
    };
    let board_name = machine.and_then(|m| m.str("board")).unwrap_or("pc");
    let Some(kind) = BoardKind::parse(board_name) else {
        return doc;
    };
    let defaults = !matches!(
        machine.and_then(|m| m.get("defaults")).map(|n| &n.value),
        Some(Value::Bool(false))
    );
    let board = kind.board();
    let mut base = board_table(
        sources,
        &format!("<board {} devices>", board.name),
        board.intrinsic,
    );
    if defaults {
        let d = board_table(
            sources,
            &format!("<board {} defaults>", board.name),
            board.defaults,
        );
        merge(&mut base, d);
    }
    let Value::Table(user) = doc.value else {
        return Node {
            value: doc.value,
            loc: doc.loc,
        };
    };
    merge(&mut base, user);
    Node {
        value: Value::Table(base),
        loc: doc.loc,
    }
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
