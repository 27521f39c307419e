//! Helpers shared by the verifier tests.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{Head, Request};

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

/// A request head with an announced length.
pub(crate) fn head(headers: &HeaderMap, content_length: Option<u64>, now: i64) -> Head<'_> {
    Head {
        headers,
        content_length,
        now,
    }
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
