//! `transport.http.inbound`: the route a plugin registers, the request it is
//! stepped with and the response it sends back.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Event kind of an incoming request.
pub const REQUEST_EVENT: &str = "http.request";

/// Argument of `http_register`: serve `method` on `path` (`:name` segments bind params).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRoute {
    /// An HTTP method such as `GET`; matched case-insensitively.
    pub method: String,
    /// An absolute path such as `/echo/:msg`.
    pub path: String,
}

/// Payload of an `http.request` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HttpRequest {
    /// Pass this back in [`HttpResponse::id`].
    pub id: u64,
    /// Upper-case method.
    pub method: String,
    /// The request path, without the query string.
    pub path: String,
    /// Values of the route's `:name` segments, percent-decoded.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Query parameters, percent-decoded; the last value wins for a repeated key.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Header names lower-case; repeated headers joined with `, `.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body.
    #[serde(default, with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// Argument of `http_respond`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HttpResponse {
    /// The id of the request answered.
    pub id: u64,
    /// HTTP status, 200..=999 (a 1xx would read as an interim answer).
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default, with = "serde_bytes")]
    pub body: Vec<u8>,
}
