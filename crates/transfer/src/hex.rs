//! Hex forms of hashes, for names and logs.

/// The lowercase hex form of a hash.
pub(crate) fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
