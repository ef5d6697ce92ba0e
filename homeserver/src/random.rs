//! Random identifiers and secrets: access and refresh tokens, device IDs,
//! generated localparts, UIA session IDs and nonces.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bytes from the operating system's CSPRNG.
///
/// A failing OS RNG leaves the server unable to issue any credential
/// safely, so it is treated as fatal rather than as a request error.
fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    buf
}

/// An opaque bearer secret: `prefix` then 32 random bytes (256 bits),
/// base64url. The prefix tells token kinds apart in logs and leak scanners.
pub fn token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes::<32>()))
}

/// `len` characters drawn from `alphabet`, without modulo bias.
fn from_alphabet(alphabet: &[u8], len: usize) -> String {
    debug_assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    // Reject bytes at or above the largest multiple of the alphabet size so
    // every character is equally likely.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in bytes::<32>() {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
    }
    out
}

/// A device ID as Synapse makes them: ten upper-case letters.
pub fn device_id() -> String {
    from_alphabet(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)
}

/// A lower-case alphanumeric string, for session IDs, nonces and generated
/// localparts.
pub fn lower_alnum(len: usize) -> String {
    from_alphabet(b"abcdefghijklmnopqrstuvwxyz0123456789", len)
}

/// A number in `[0, 1)`, for jitter.
pub fn unit() -> f64 {
    f64::from(u32::from_le_bytes(bytes::<4>())) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let t = token("mat_");
        assert!(t.starts_with("mat_"));
        assert_eq!(t.len(), 4 + 43);
        assert_ne!(token("x"), token("x"));
        let d = device_id();
        assert_eq!(d.len(), 10);
        assert!(d.bytes().all(|b| b.is_ascii_uppercase()));
        let s = lower_alnum(24);
        assert_eq!(s.len(), 24);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }
}
