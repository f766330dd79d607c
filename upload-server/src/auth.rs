//! Who may use the admin routes: a bearer token, compared in constant time;
//! with none configured, the routes are off (`403`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::json_error::error;

/// The environment variable that can hold the admin token.
pub const ADMIN_TOKEN_ENV_VAR: &str = "ASYNC_UPLOAD_ADMIN_TOKEN";

/// `Ok` when the admin routes are on (`expected` is the configured token)
/// and the bearer token matches; else the response to send (403 or 401).
#[allow(clippy::result_large_err)] // the error is the response itself
pub(crate) fn authorize(expected: Option<&[u8]>, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = expected else {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "the admin routes are off: start the server with --admin-token or {ADMIN_TOKEN_ENV_VAR}"
            ),
        ));
    };
    let given = bearer_token(headers).unwrap_or_default();
    if !tokens_match(given, expected) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer <token>` header is required".to_owned(),
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(response);
    }
    Ok(())
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// Whether `given == expected`, in a time that depends only on
/// `expected.len()`: every byte is compared, and no early exit tells an
/// attacker how much of a guess was right.
fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, &e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ e);
    }
    std::hint::black_box(diff) == 0
}
