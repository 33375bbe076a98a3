//! Source files, locations in them, and diagnostics rendered the way rustc renders
//! its own: `file:line:col`, the offending line, and a caret under the span.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Which source a location points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SrcId(pub u32);

/// A byte range in one source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Loc {
    pub src: SrcId,
    pub span: Range<usize>,
}

impl Loc {
    pub fn new(src: SrcId, span: Range<usize>) -> Self {
        Self { src, span }
    }
}

/// One source text: a machine file, or the built-in defaults of a board.
#[derive(Debug)]
pub struct Source {
    /// How the source is named in messages (the path as the user gave it).
    pub name: String,
    /// The file on disk, when there is one (relative paths in it resolve against its
    /// directory).
    pub path: Option<PathBuf>,
    pub text: String,
}

/// Every source read while loading one machine.
#[derive(Debug, Default)]
pub struct Sources {
    files: Vec<Source>,
}

impl Sources {
    pub fn add(&mut self, name: impl Into<String>, path: Option<PathBuf>, text: String) -> SrcId {
        self.files.push(Source {
            name: name.into(),
            path,
            text,
        });
        SrcId(self.files.len() as u32 - 1)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn get(&self, id: SrcId) -> &Source {
        &self.files[id.0 as usize]
    }

    /// The directory relative paths in `id` resolve against.
    pub fn base_dir(&self, id: SrcId) -> &Path {
        match &self.get(id).path {
            Some(p) => p.parent().unwrap_or(Path::new(".")),
            None => Path::new("."),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, loc: &Loc) -> (usize, usize) {
        let text = &self.get(loc.src).text;
        let at = loc.span.start.min(text.len());
        let before = &text[..floor_char(text, at)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// `name:line:col`.
    pub fn describe(&self, loc: &Loc) -> String {
        let (l, c) = self.line_col(loc);
        format!("{}:{l}:{c}", self.get(loc.src).name)
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A secondary message, optionally pointing somewhere too (the other party of a
/// conflict, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub message: String,
    pub loc: Option<Loc>,
}

/// One error found in a machine file. It always has a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub loc: Loc,
    /// Text under the caret.
    pub label: String,
    pub notes: Vec<Note>,
}

impl Diagnostic {
    pub fn new(loc: &Loc, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            loc: loc.clone(),
            label: String::new(),
            notes: Vec::new(),
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn note(mut self, message: impl Into<String>) -> Self {
        self.notes.push(Note {
            message: message.into(),
            loc: None,
        });
        self
    }

    pub fn note_at(mut self, loc: &Loc, message: impl Into<String>) -> Self {
        self.notes.push(Note {
            message: message.into(),
            loc: Some(loc.clone()),
        });
        self
    }

    /// Renders the diagnostic like rustc does.
    pub fn render(&self, sources: &Sources) -> String {
        let mut out = format!("error: {}\n", self.message);
        snippet(&mut out, sources, &self.loc, &self.label);
        for n in &self.notes {
            match &n.loc {
                Some(loc) => {
                    let _ = writeln!(out, "note: {}", n.message);
                    snippet(&mut out, sources, loc, "");
                }
                None => {
                    let _ = writeln!(out, "  = note: {}", n.message);
                }
            }
        }
        out
    }
}

fn snippet(out: &mut String, sources: &Sources, loc: &Loc, label: &str) {
    let src = sources.get(loc.src);
    let (line, col) = sources.line_col(loc);
    let text = src.text.lines().nth(line - 1).unwrap_or("");
    let gutter = " ".repeat(line.to_string().len());
    let _ = writeln!(out, "{gutter}--> {}:{line}:{col}", src.name);
    let _ = writeln!(out, "{gutter} |");
    let _ = writeln!(out, "{line} | {text}");
    // The caret covers the span, clipped to the first line it starts on.
    let start = floor_char(&src.text, loc.span.start.min(src.text.len()));
    let end = floor_char(&src.text, loc.span.end.clamp(start, src.text.len()));
    let spanned = src.text[start..end].split('\n').next().unwrap_or("");
    let width = spanned.chars().count().max(1);
    let pad: String = text
        .chars()
        .take(col - 1)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let label = if label.is_empty() {
        String::new()
    } else {
        format!(" {label}")
    };
    let _ = writeln!(out, "{gutter} | {pad}{}{label}", "^".repeat(width));
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word_l = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_l, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string
/// alignment), since "q53" for "q35" is one slip of the fingers.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let mut s = Sources::default();
        let id = s.add("m.toml", None, "[machine]\nmemroy = \"1GiB\"\n".into());
        let d = Diagnostic::new(&Loc::new(id, 10..16), "unknown key `memroy` in [machine]")
            .label("did you mean `memory`?");
        assert_eq!(
            d.render(&s),
            "error: unknown key `memroy` in [machine]\n --> m.toml:2:1\n  |\n2 | memroy = \"1GiB\"\n  | ^^^^^^ did you mean `memory`?\n"
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("memroy", ["name", "memory", "cpus"]),
            Some("memory")
        );
        assert_eq!(
            did_you_mean("cpu", ["name", "memory", "cpus"]),
            Some("cpus")
        );
        assert_eq!(did_you_mean("zzzzzz", ["name", "memory"]), None);
        assert_eq!(did_you_mean("q53", ["pc", "q35", "microvm"]), Some("q35"));
    }

    #[test]
    fn line_col_counts_chars() {
        let mut s = Sources::default();
        let id = s.add("m", None, "a = \"é\"\nb = 1".into());
        assert_eq!(s.line_col(&Loc::new(id, 13..14)), (2, 5));
        assert_eq!(s.line_col(&Loc::new(id, 999..1000)), (2, 6));
    }
}
