//! The Extism guest of the peer bench: `run` takes N (u32, little-endian) and calls the
//! host function `peer_echo` N times, each with a 64-byte input, checking the 64-byte
//! output. Built for wasm32-unknown-unknown by the bench's build.rs.

use extism_pdk::*;

#[host_fn]
extern "ExtismHost" {
    fn peer_echo(input: Vec<u8>) -> Vec<u8>;
}

#[plugin_fn]
pub fn run(input: Vec<u8>) -> FnResult<Vec<u8>> {
    let n = u32::from_le_bytes(input[..4].try_into()?);
    let request = [1u8; 64];
    let mut sum = 0u32;
    for _ in 0..n {
        let response = unsafe { peer_echo(request.to_vec())? };
        if response.len() != 64 {
            return Err(Error::msg("response is not 64 bytes").into());
        }
        sum = sum.wrapping_add(u32::from(response[63]));
    }
    Ok(sum.to_le_bytes().to_vec())
}
