//! Bytes from the network reach these two decoders first. Beyond not panicking, anything they
//! accept must re-encode to the same bytes: one encoding per message means a receiver and a
//! second implementation can never disagree about what a frame says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tiervault_wire::{decode, decode_stream, encode};

fuzz_target!(|data: &[u8]| {
    // As a stream buffer: length prefix first, possibly a partial frame.
    if let Ok(Some((req, msg, used))) = decode_stream(data) {
        let again = encode(req, &msg).expect("a decoded message re-encodes");
        assert_eq!(again.as_slice(), &data[..used], "{}", msg.type_name());
    }
    // As one frame after its prefix: reaches the body decoders without a valid prefix.
    if let Ok((req, msg)) = decode(data) {
        let again = encode(req, &msg).expect("a decoded message re-encodes");
        assert_eq!(&again[4..], data, "{}", msg.type_name());
    }
});
