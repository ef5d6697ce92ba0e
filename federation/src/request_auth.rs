//! Request authentication (server-server API "Request Authentication"): every federation
//! request carries `Authorization: X-Matrix origin=..,destination=..,key=..,sig=..`, where
//! `sig` signs the canonical JSON of `{method, uri, origin, destination, content}`.
//!
//! The header is parsed here as leniently as Synapse does (values quoted or not, even where
//! RFC 7235 would want quotes, as in an unquoted `key=ed25519:abc`; unknown parameters
//! ignored; duplicates refused) into ruma's [`XMatrix`], which also renders the header we
//! send. The signed object is built and checked with our own canonical JSON and keys, so
//! inbound bodies go through the same strict parser as everything else we verify.

use http::HeaderValue;
use myelin_proto::canonical_json::{self, Object, Value};
use myelin_proto::signing::{KeyPair, PublicKey};
use ruma::api::federation::authentication::XMatrix;
use ruma::serde::Base64;
use ruma::{OwnedServerName, OwnedServerSigningKeyId, ServerName};

/// Why an inbound request's `X-Matrix` authentication was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error("malformed X-Matrix Authorization header: {0}")]
    Malformed(String),
    #[error("the request is for {0}, not for this server")]
    WrongDestination(String),
    #[error("the request body is not canonical JSON: {0}")]
    Body(String),
    #[error("the origin's key {0} is not known")]
    UnknownKey(String),
    #[error("the request signature does not match")]
    BadSignature,
}

/// The parts of a request that `X-Matrix` signs.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// Path and query exactly as sent on the request line (`/_matrix/...?a=b`).
    pub uri: &'a str,
    /// The raw JSON body; empty for requests without one.
    pub body: &'a [u8],
}

/// The canonical bytes of the object the signature covers. `content` is present only when
/// the request has a body, as Synapse and ruma do.
pub fn signing_bytes(
    request: SignedRequest<'_>,
    origin: &str,
    destination: &str,
) -> Result<Vec<u8>, AuthError> {
    let mut obj = Object::new();
    obj.insert("method".to_owned(), Value::from(request.method));
    obj.insert("uri".to_owned(), Value::from(request.uri));
    obj.insert("origin".to_owned(), Value::from(origin));
    obj.insert("destination".to_owned(), Value::from(destination));
    if !request.body.is_empty() {
        let content =
            canonical_json::parse(request.body).map_err(|e| AuthError::Body(e.to_string()))?;
        obj.insert("content".to_owned(), content);
    }
    Ok(Value::Object(obj).to_canonical_bytes())
}

/// Signs an outbound request: the `Authorization` header value to send.
pub fn sign_request(
    key: &KeyPair,
    origin: &ServerName,
    destination: &ServerName,
    request: SignedRequest<'_>,
) -> Result<HeaderValue, AuthError> {
    let message = signing_bytes(request, origin.as_str(), destination.as_str())?;
    let signature = myelin_proto::base64::decode(&key.sign_bytes(&message))
        .map_err(|e| AuthError::Malformed(e.to_string()))?;
    let key_id = OwnedServerSigningKeyId::try_from(key.key_id())
        .map_err(|e| AuthError::Malformed(e.to_string()))?;
    let header = XMatrix::new(
        origin.to_owned(),
        destination.to_owned(),
        key_id,
        Base64::new(signature),
    );
    Ok(HeaderValue::from(&header))
}

/// Parses the `Authorization` header of an inbound request.
pub fn parse_header(value: Option<&HeaderValue>) -> Result<XMatrix, AuthError> {
    let value = value.ok_or(AuthError::Missing)?;
    let text = value
        .to_str()
        .map_err(|_| AuthError::Malformed("not ASCII".to_owned()))?;
    parse_x_matrix(text)
}

fn malformed(what: impl Into<String>) -> AuthError {
    AuthError::Malformed(what.into())
}

/// `X-Matrix name=value, name="quoted \"value\"", ...`
fn parse_x_matrix(text: &str) -> Result<XMatrix, AuthError> {
    let text = text.trim();
    let (scheme, params) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case(XMatrix::AUTH_SCHEME) {
        return Err(malformed("not an X-Matrix header"));
    }
    let mut origin = None;
    let mut destination = None;
    let mut key = None;
    let mut sig = None;
    for (name, value) in split_params(params)? {
        let slot = match name.to_ascii_lowercase().as_str() {
            "origin" => &mut origin,
            "destination" => &mut destination,
            "key" => &mut key,
            "sig" => &mut sig,
            // Parameters from future versions of the spec.
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(malformed(format!("duplicate parameter {name}")));
        }
    }
    let missing = |name: &str| malformed(format!("missing parameter {name}"));
    let origin = OwnedServerName::try_from(origin.ok_or_else(|| missing("origin"))?)
        .map_err(|e| malformed(format!("origin: {e}")))?;
    let destination = destination
        .map(OwnedServerName::try_from)
        .transpose()
        .map_err(|e| malformed(format!("destination: {e}")))?;
    let key = OwnedServerSigningKeyId::try_from(key.ok_or_else(|| missing("key"))?)
        .map_err(|e| malformed(format!("key: {e}")))?;
    let sig = Base64::parse(sig.ok_or_else(|| missing("sig"))?)
        .map_err(|e| malformed(format!("sig: {e}")))?;
    let mut header = XMatrix::new(origin.clone(), origin, key, sig);
    header.destination = destination;
    Ok(header)
}

/// Splits `a=b, c="d,e"` into name/value pairs, unquoting (and unescaping) quoted values.
fn split_params(params: &str) -> Result<Vec<(String, String)>, AuthError> {
    let mut out = Vec::new();
    let mut chars = params.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| *c == ',' || c.is_ascii_whitespace())
        {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',') {
            name.push(c);
        }
        if chars.next() != Some('=') {
            return Err(malformed(format!(
                "parameter {:?} has no value",
                name.trim()
            )));
        }
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => value.push(
                        chars
                            .next()
                            .ok_or_else(|| malformed("unterminated quoted value"))?,
                    ),
                    Some(c) => value.push(c),
                    None => return Err(malformed("unterminated quoted value")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
        }
        out.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// Checks the header's destination (when given; old servers omit it) against our name.
pub fn check_destination(header: &XMatrix, us: &ServerName) -> Result<(), AuthError> {
    match &header.destination {
        Some(d) if d != us => Err(AuthError::WrongDestination(d.to_string())),
        _ => Ok(()),
    }
}

/// Verifies an inbound request signed by `header.origin` with `key` (the origin's public key
/// named by `header.key`, which the caller fetched). `us` is our server name: the signed
/// object's destination even when the header omitted it.
pub fn verify_request(
    header: &XMatrix,
    us: &ServerName,
    request: SignedRequest<'_>,
    key: &PublicKey,
) -> Result<(), AuthError> {
    check_destination(header, us)?;
    let message = signing_bytes(request, header.origin.as_str(), us.as_str())?;
    let signature: &[u8] = header.sig.as_bytes();
    let sig64 = myelin_proto::base64::encode(signature);
    key.verify(&message, &sig64)
        .map_err(|_| AuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::signatures::Ed25519KeyPair;

    fn key() -> KeyPair {
        KeyPair::from_seed("1", &[7u8; 32]).expect("key")
    }

    fn name(s: &str) -> &ServerName {
        <&ServerName>::try_from(s).expect("server name")
    }

    /// ruma's signer (an independent implementation) agrees with ours, and each verifies
    /// the other's requests.
    #[test]
    fn ruma_and_we_produce_the_same_signature() {
        // ruma wants a PKCS#8 document; ruma-signatures builds one from a seed.
        let ruma_key =
            Ed25519KeyPair::from_der(&pkcs8_v1(&[7u8; 32]), "1".to_owned()).expect("ruma key");
        let body = br#"{"b": 2, "a": [1, "x"]}"#;
        let request = http::Request::builder()
            .method("PUT")
            .uri("/_matrix/federation/v1/send/abc?x=%20y")
            .body(body.to_vec())
            .expect("request");
        let theirs = XMatrix::sign_http_request(
            &request,
            ruma::api::federation::authentication::XMatrixSigningInput::new(
                name("origin.test").to_owned(),
                name("dest.test").to_owned(),
                &ruma_key,
            ),
        )
        .expect("ruma signs");
        let signed = SignedRequest {
            method: "PUT",
            uri: "/_matrix/federation/v1/send/abc?x=%20y",
            body,
        };
        let ours =
            sign_request(&key(), name("origin.test"), name("dest.test"), signed).expect("we sign");
        let ours = parse_header(Some(&ours)).expect("parse ours");
        assert_eq!(ours.sig.as_bytes(), theirs.sig.as_bytes());
        assert_eq!(ours.key.as_str(), "ed25519:1");
        verify_request(&theirs, name("dest.test"), signed, &key().public_key())
            .expect("ruma's signature verifies");
    }

    /// A PKCS#8 v1 wrapping of an ed25519 seed (RFC 8410), as ruma's key pair reads it.
    fn pkcs8_v1(seed: &[u8; 32]) -> Vec<u8> {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(seed);
        der
    }

    #[test]
    fn parses_quoted_unquoted_and_unknown_parameters() {
        let sig = myelin_proto::base64::encode([1u8; 64]);
        for header in [
            format!(r#"X-Matrix origin="a.test",destination="b.test",key="ed25519:k",sig="{sig}""#),
            format!("X-Matrix origin=a.test,destination=b.test,key=ed25519:k,sig={sig}"),
            format!(
                r#"x-matrix  origin = "a.test" ,destination="b\.test",key="ed25519:k",sig="{sig}""#
            ),
            format!(
                r#"X-Matrix origin=a.test, extra="ignored", key="ed25519:k", sig={sig}, destination=b.test"#
            ),
        ] {
            let value = HeaderValue::from_str(&header).expect("header");
            let x = parse_header(Some(&value)).expect(&header);
            assert_eq!(x.origin.as_str(), "a.test");
            assert_eq!(
                x.destination.as_deref().map(ServerName::as_str),
                Some("b.test")
            );
            assert_eq!(x.key.as_str(), "ed25519:k");
        }
        let without_destination =
            HeaderValue::from_str(&format!("X-Matrix origin=a.test,key=ed25519:k,sig={sig}"))
                .expect("header");
        assert!(
            parse_header(Some(&without_destination))
                .expect("old servers omit destination")
                .destination
                .is_none()
        );
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        assert_eq!(parse_header(None).expect_err("missing"), AuthError::Missing);
        for bad in [
            "",
            "Bearer abc",
            "X-Matrix",
            "X-Matrix origin=a.test",
            "X-Matrix origin=a.test,key=ed25519:k",
            "X-Matrix origin=a.test,key=ed25519:k,sig=***",
            "X-Matrix origin=\"bad name!\",key=ed25519:k,sig=AAAA",
            "X-Matrix origin=a.test,origin=b.test,key=ed25519:k,sig=AAAA",
            "X-Matrix origin=a.test,key=nocolon,sig=AAAA",
            "X-Matrix origin,key=ed25519:k,sig=AAAA",
            "X-Matrix origin=a.test,key=ed25519:k,sig=\"AAAA\\",
            "X-Matrix origin=\"unterminated,key=ed25519:k,sig=AAAA",
        ] {
            let value = HeaderValue::from_str(bad).expect("header");
            assert!(
                matches!(parse_header(Some(&value)), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn tampering_and_wrong_destination_are_refused() {
        let body = br#"{"k":"v"}"#;
        let signed = SignedRequest {
            method: "POST",
            uri: "/_matrix/federation/v1/x",
            body,
        };
        let value = sign_request(&key(), name("a.test"), name("b.test"), signed).expect("sign");
        let header = parse_header(Some(&value)).expect("parse");
        let public = key().public_key();
        verify_request(&header, name("b.test"), signed, &public).expect("verifies");

        let other_body = SignedRequest {
            body: br#"{"k":"w"}"#,
            ..signed
        };
        assert_eq!(
            verify_request(&header, name("b.test"), other_body, &public),
            Err(AuthError::BadSignature)
        );
        let other_uri = SignedRequest {
            uri: "/_matrix/federation/v1/y",
            ..signed
        };
        assert_eq!(
            verify_request(&header, name("b.test"), other_uri, &public),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_request(&header, name("c.test"), signed, &public),
            Err(AuthError::WrongDestination("b.test".to_owned()))
        );
        let stranger = KeyPair::from_seed("1", &[8u8; 32]).expect("key");
        assert_eq!(
            verify_request(&header, name("b.test"), signed, &stranger.public_key()),
            Err(AuthError::BadSignature)
        );
        let not_json = SignedRequest {
            body: b"{nope",
            ..signed
        };
        assert!(matches!(
            verify_request(&header, name("b.test"), not_json, &public),
            Err(AuthError::Body(_))
        ));
    }
}
