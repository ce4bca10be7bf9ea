//! `transport.http.inbound`: serve HTTP routes from a plugin.
//!
//! Register routes in `init`, then answer each [`Request`] (delivered as a step
//! event) with [`respond`]. Requests need not be answered in the step they
//! arrive in, but the host answers 504 for any left unanswered past its deadline.

use crate::{HostCallError, Step};
pub use pulp_abi::http::{HttpRequest as Request, HttpResponse as Response};
use pulp_abi::http::{HttpRoute, REQUEST_EVENT};
use std::collections::BTreeMap;

/// Serves `method` on `path`; `:name` segments bind `request.params["name"]`.
pub fn register(method: &str, path: &str) -> Result<(), HostCallError> {
    crate::ext::call_in(
        crate::sys::http_register,
        &HttpRoute {
            method: method.into(),
            path: path.into(),
        },
    )
}

/// Sends the response to request `response.id`.
pub fn respond(response: &Response) -> Result<(), HostCallError> {
    crate::ext::call_in(crate::sys::http_respond, response)
}

/// The HTTP request this step carries, if it carries one.
pub fn request(step: &Step<'_>) -> Result<Option<Request>, crate::Error> {
    match step.kind()? {
        Some(kind) if kind == REQUEST_EVENT => Ok(Some(step.event()?)),
        _ => Ok(None),
    }
}

/// A response with a body and a `content-type`.
pub fn response(id: u64, status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
    Response {
        id,
        status,
        headers: BTreeMap::from([("content-type".to_string(), content_type.to_string())]),
        body: body.into(),
    }
}

/// A `text/plain; charset=utf-8` response.
pub fn text(id: u64, status: u16, body: impl Into<String>) -> Response {
    response(
        id,
        status,
        "text/plain; charset=utf-8",
        body.into().into_bytes(),
    )
}

/// An `application/json` response from bytes already encoded.
pub fn json(id: u64, status: u16, body: impl Into<Vec<u8>>) -> Response {
    response(id, status, "application/json", body)
}
