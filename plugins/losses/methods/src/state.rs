//! Plugin state as little-endian f64 words (compact, stable across builds).

/// Encodes numbers for `state()`.
pub fn encode(words: &[f64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Decodes `n` numbers from `load_state()` input; an empty state means "start fresh".
pub fn decode(bytes: &[u8], n: usize, plugin: &str) -> retort_sdk::Result<Option<Vec<f64>>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.len() != 8 * n {
        return Err(retort_sdk::Error::state(format!(
            "{plugin}: state has {} bytes, expected {} ({n} numbers)",
            bytes.len(),
            8 * n
        )));
    }
    Ok(Some(bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()))
}
