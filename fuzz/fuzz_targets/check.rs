//! cargo fuzz run check: arbitrary bytes as a machine file through parse + check.
//! Nothing may panic, and every rejection must point inside the text it names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../machines");
    let (sources, result) = vmrun::check_str("fuzz.toml", text, &dir);
    match result {
        Ok(spec) => {
            let _ = vmrun::spec::show::to_toml(&spec);
        }
        Err(diags) => {
            assert!(!diags.is_empty());
            for d in &diags {
                assert!(d.loc.span.start <= sources.get(d.loc.src).text.len());
                let _ = d.render(&sources);
            }
        }
    }
});
