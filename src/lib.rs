//! vmrun: a small KVM virtual machine monitor whose machines are declared in TOML.
//!
//! Data takes one path through four stages, each a function of plain types:
//! `config` (parse the TOML, spans kept) → `spec` (check: defaults expanded, every
//! resource assigned; pure, no KVM) → `vmm` (build the KVM VM) → run until an
//! [`vmm::ExitReason`].

pub mod acpi;
pub mod arch;
pub mod backends;
pub mod board;
pub mod boot;
pub mod config;
pub mod control;
pub mod devices;
pub mod lab;
pub mod netsw;
pub mod snapshot;
pub mod spec;
pub mod vmm;

#[cfg(test)]
mod testing;

use std::path::Path;

/// Loads and checks a machine file: the sources (to render diagnostics with) and the
/// resolved spec, or every error found by reading and checking it.
pub fn load_and_check(
    path: &Path,
) -> Result<
    (
        config::Sources,
        Result<spec::MachineSpec, Vec<config::Diagnostic>>,
    ),
    config::LoadError,
> {
    let loaded = config::load(path)?;
    Ok((loaded.sources, finish_check(loaded.machine, loaded.diags)))
}

/// [`load_and_check`] with the machine renamed to `name` before the check (a lab's
/// node `<lab>-<node>`, so derived MAC addresses differ between nodes of one file).
pub fn load_and_check_as(
    path: &Path,
    name: &str,
) -> Result<
    (
        config::Sources,
        Result<spec::MachineSpec, Vec<config::Diagnostic>>,
    ),
    config::LoadError,
> {
    let mut loaded = config::load(path)?;
    if let Some(m) = &mut loaded.machine {
        m.name.value = name.to_string();
    }
    Ok((loaded.sources, finish_check(loaded.machine, loaded.diags)))
}

/// [`load_and_check`] for text with no file behind it (tests, fuzzing).
pub fn check_str(
    name: &str,
    text: &str,
    dir: &Path,
) -> (
    config::Sources,
    Result<spec::MachineSpec, Vec<config::Diagnostic>>,
) {
    let loaded = config::load_str(name, text, dir);
    (loaded.sources, finish_check(loaded.machine, loaded.diags))
}

fn finish_check(
    machine: Option<config::Machine>,
    mut diags: Vec<config::Diagnostic>,
) -> Result<spec::MachineSpec, Vec<config::Diagnostic>> {
    let checked = machine.map(|m| spec::check(&m));
    match checked {
        Some(Ok(spec)) if diags.is_empty() => Ok(spec),
        Some(Err(more)) => {
            diags.extend(more);
            Err(diags)
        }
        _ => Err(diags),
    }
}

/// An error and its causes on one line, each printed once: "a: b: c". Errors here keep
/// their cause out of their own message (it is their `source()`), so code that shows an
/// error outside `main`'s `{:#}` uses this.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        // A message that already ends with its cause (an error that says `{0}` and
        // marks it `#[source]`) is not repeated.
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}
