//! The request decoder against arbitrary bytes: whatever a hostile client writes in a queue
//! slot, `decode` either refuses it or returns a request whose every length, offset and
//! index is within the limits the service set. Inputs that broke it are replayed by
//! `crates/ipc/src/tests.rs` from `crates/ipc/tests/fuzz-found/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use polytropon_ipc::{decode, fuzzing, WireAttr, WireSetattr};

fuzz_target!(|data: &[u8]| {
    let Some((d, lim)) = fuzzing::input(data) else { return };
    if let Ok(r) = decode(d, &lim) {
        assert!(fuzzing::within(&r, &lim), "{r:?} escapes {lim:?}");
    }
    // The wire records read back from any bytes without panicking.
    let rest = data.get(core::mem::size_of::<polytropon_ipc::Descriptor>() + 3..).unwrap_or(&[]);
    if let Some(b) = rest.get(..core::mem::size_of::<WireAttr>()).and_then(|b| b.try_into().ok()) {
        let a = WireAttr::from_bytes(b);
        assert_eq!(WireAttr::from_bytes(&a.to_bytes()), a);
    }
    if let Some(b) = rest.get(..core::mem::size_of::<WireSetattr>()).and_then(|b| b.try_into().ok()) {
        let s = WireSetattr::from_bytes(b);
        assert_eq!(WireSetattr::from_bytes(&s.to_bytes()), s);
    }
});
