//! The two Base64 flavours Matrix uses (spec appendix "Unpadded Base64").
//! Encoding never pads; decoding accepts input with or without padding, as the
//! spec asks implementations to.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    // Python's decoder (Synapse's) ignores non-zero trailing bits; the spec's
    // own test seed has them.
    .with_decode_allow_trailing_bits(true);

const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);

/// Base64 decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid base64")]
pub struct DecodeError;

/// Unpadded standard Base64.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

/// Standard Base64, padded or not.
pub fn decode(s: &str) -> Result<Vec<u8>, DecodeError> {
    STANDARD.decode(s).map_err(|_| DecodeError)
}

/// Unpadded URL-safe Base64 (event IDs from room version 4, room IDs in v12).
pub fn encode_url_safe(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE.encode(bytes)
}

/// URL-safe Base64, padded or not.
pub fn decode_url_safe(s: &str) -> Result<Vec<u8>, DecodeError> {
    URL_SAFE.decode(s).map_err(|_| DecodeError)
}

/// Decodes exactly `N` bytes (keys, signatures, hashes).
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], DecodeError> {
    // A string of more than ceil(N/3)*4 characters cannot decode to N bytes;
    // refuse it before allocating for it.
    if s.len() > N.div_ceil(3) * 4 {
        return Err(DecodeError);
    }
    decode(s)?.try_into().map_err(|_| DecodeError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain), enc);
            assert_eq!(decode(enc).as_deref(), Ok(plain.as_bytes()));
        }
        assert_eq!(decode("Zg==").as_deref(), Ok(&b"f"[..]));
        assert_eq!(decode("Z!"), Err(DecodeError));
        assert_eq!(encode_url_safe([0xfb, 0xff]), "-_8");
        assert_eq!(decode_url_safe("-_8").as_deref(), Ok(&[0xfb, 0xff][..]));
        assert_eq!(decode_array::<2>("Zm8"), Ok(*b"fo"));
        assert_eq!(decode_array::<2>("Zm9v"), Err(DecodeError));
    }
}
