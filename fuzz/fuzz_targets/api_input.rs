//! Every ticket API request body and query: the first byte picks which,
//! the rest goes through that handler's extractor and the ticket desk's
//! checks. Any bytes end in a value or a problem, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate::api::fuzzing::{Input, read};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let input = Input::ALL[usize::from(which) % Input::ALL.len()];
    let _ = read(input, bytes);
});
