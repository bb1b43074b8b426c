//! Edge-service imports: any bytes as CSV or JSON must give rows or a reason, and every row's
//! checks must answer without panicking.
#![no_main]

use domain::import::{self, EdgeInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rows = match import::parse_csv(data) {
        Ok(rows) => rows,
        Err(_) => serde_json::from_slice::<Vec<EdgeInput>>(data).unwrap_or_default(),
    };
    for row in &rows {
        let _ = import::check_edge(row);
    }
});
