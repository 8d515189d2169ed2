//! The YAML specs against arbitrary text: an instance spec or a pool spec either parses or
//! is refused with an error, never a panic; a parsed instance spec's branch paths are all
//! absolute (relative ones anchored at the spec's directory).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use polytropon::pool::PoolSpec;
use polytropon::spec::{from_yaml, InstanceSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let origin = Path::new("/fuzz/specs/instance.yaml");
    if let Ok(spec) = InstanceSpec::parse(text, origin) {
        for b in &spec.branches {
            assert!(b.path.is_absolute(), "branch {} stayed relative", b.path.display());
        }
    }
    let _ = from_yaml::<PoolSpec>(text, origin);
});
