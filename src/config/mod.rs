//! The machine file: TOML text → a typed [`Machine`], every value with its location.
//! Errors come back all together as [`Diagnostic`]s that render like rustc's.

pub mod json_schema;
pub mod load;
pub mod model;
pub mod node;
pub mod origin;
pub mod reader;
pub mod schema;
pub mod source;
pub mod units;

use std::path::Path;

pub use load::LoadError;
pub use model::Machine;
pub use source::{Diagnostic, Sources};

/// A machine file read from disk: its sources (for rendering errors), the typed
/// machine (as much of it as could be read) and every error found so far. The machine
/// is there even when some values were bad, so `check` can report its own errors too.
pub struct Loaded {
    pub sources: Sources,
    pub machine: Option<Machine>,
    pub diags: Vec<Diagnostic>,
}

/// Reads `path`, follows `extends`, lays it over the board's devices, reads the types.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let mut sources = Sources::default();
    let doc = match load::load_files(path, &mut sources)? {
        Ok(doc) => doc,
        Err(diags) => {
            return Ok(Loaded {
                sources,
                machine: None,
                diags,
            })
        }
    };
    let (machine, diags) = read_doc(doc, path, &mut sources);
    Ok(Loaded {
        sources,
        machine,
        diags,
    })
}

/// Reads machine-file text that has no file behind it (tests, fuzzing). Relative
/// paths resolve against `dir`.
pub fn load_str(name: &str, text: &str, dir: &Path) -> Loaded {
    let mut sources = Sources::default();
    let path = dir.join(name);
    let (machine, diags) = match load::load_text(name, &path, text.to_string(), &mut sources) {
        Ok(doc) => read_doc(doc, Path::new(name), &mut sources),
        Err(diags) => (None, diags),
    };
    Loaded {
        sources,
        machine,
        diags,
    }
}

fn read_doc(
    doc: node::Node,
    path: &Path,
    sources: &mut Sources,
) -> (Option<Machine>, Vec<Diagnostic>) {
    let load::WithBoard {
        doc,
        origins,
        mut diags,
    } = load::with_board_devices(doc, sources);
    let default_name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("machine");
    let machine = model::read(&doc, default_name, sources, &mut diags).map(|m| Machine {
        board_src_start: origins.board_src_start,
        origins: origins.clone(),
        ..m
    });
    if machine.is_none() && diags.is_empty() {
        diags.push(Diagnostic::new(
            &doc.loc,
            "the machine file could not be read",
        ));
    }
    (machine, origins.relocate_all(diags))
}
