//! The plugin package checker: any bytes must be refused with a reason or accepted, without
//! unbounded memory or time (zip bombs, entry floods, hostile paths).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = package::Limits::default();
    let _ = package::inspect(std::io::Cursor::new(data), "fuzz", &limits);
});
