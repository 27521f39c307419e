//! Helpers shared by the verifier tests.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::Request;

/// Build a header map from literal pairs; names may be in any case.
pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

/// A request without a query string.
pub(crate) fn request<'a>(headers: &'a HeaderMap, body: &'a [u8], now: i64) -> Request<'a> {
    Request {
        headers,
        query: None,
        body,
        now,
    }
}
