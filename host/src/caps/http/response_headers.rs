//! Which response headers a plugin may set.
//!
//! The host frames every response itself (hyper writes `content-length` from
//! the real body) and owns the connection. A plugin-set framing or hop-by-hop
//! header would be written beside the real one: a `content-length` shorter
//! than the body leaves its rest to be read as the *next* response on the
//! connection (another user's, behind a reusing proxy). So those are refused,
//! as are names and values that are not valid HTTP.

use hyper::header::{HeaderName, HeaderValue};

/// Headers only the host may set: message framing and hop-by-hop fields
/// (RFC 9110 §7.6.1, RFC 9112 §6), and `upgrade`, which changes the protocol.
pub const HOST_ONLY: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
];

/// Checks one header of a plugin's response; the error names it.
pub fn check(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("header name {name:?} is not a valid HTTP header name"))?;
    if HOST_ONLY.contains(&parsed.as_str()) {
        return Err(format!(
            "header {name:?} is set by the host only (it frames the response or the connection)"
        ));
    }
    let value = HeaderValue::from_str(value).map_err(|_| {
        format!("header {name:?}: value {value:?} is not a valid HTTP header value")
    })?;
    Ok((parsed, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_headers_are_refused_in_any_case() {
        for name in [
            "Content-Length",
            "TRANSFER-ENCODING",
            "connection",
            "Upgrade",
            "te",
        ] {
            let err = check(name, "1").unwrap_err();
            assert!(err.contains(name) && err.contains("host only"), "{err}");
        }
    }

    #[test]
    fn invalid_names_and_values_are_refused_and_others_pass() {
        assert!(check("x bad", "v").unwrap_err().contains("name"));
        assert!(check("x-a", "a\r\nb").unwrap_err().contains("value"));
        assert!(check("x-a", "a\0b").is_err());
        let (name, value) = check("Content-Type", "text/plain").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("content-type", "text/plain")
        );
    }
}
