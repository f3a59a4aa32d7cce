//! Access control of the API: the token in the `Authorization` header of
//! every `/api/` request, and the refusal of requests whose `Origin` is
//! another site (no request forgery from a page elsewhere).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Why a request is turned away, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that is not ours.
    Wrong,
    /// An `Origin` that is not the daemon's own.
    ForeignOrigin,
}

impl Refusal {
    /// The status and the one-line reason.
    pub fn reply(self) -> (StatusCode, &'static str) {
        match self {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                "missing token: send \"Authorization: Bearer <token>\" (the token is in the file api-token beside the settings)\n",
            ),
            Refusal::Wrong => (
                StatusCode::UNAUTHORIZED,
                "wrong token: use the one in the file api-token beside the settings\n",
            ),
            Refusal::ForeignOrigin => (
                StatusCode::FORBIDDEN,
                "foreign Origin refused: only the daemon's own page may call the API from a browser\n",
            ),
        }
    }
}

/// Checks a request's headers: its `Origin` (when present) must be
/// `http://` followed by its own `Host`, and it must carry the token.
pub fn check(headers: &HeaderMap, token: &str) -> Result<(), Refusal> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let own = host.map(|h| format!("http://{h}"));
        let same = match (origin.to_str(), own) {
            (Ok(o), Some(own)) => o.eq_ignore_ascii_case(&own),
            _ => false,
        };
        if !same {
            return Err(Refusal::ForeignOrigin);
        }
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(Refusal::Missing)?;
    if same_secret(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Wrong)
    }
}

/// Compares without stopping at the first difference.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware in front of `/api/`.
pub(crate) async fn require(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    match check(req.headers(), &token) {
        Ok(()) => next.run(req).await,
        Err(why) => {
            let (status, text) = why.reply();
            tracing::debug!(?why, "API request refused");
            (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                Body::from(text),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                k.clone(),
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        h
    }

    #[test]
    fn the_token_and_the_origin_decide() {
        let t = "abc123";
        let ok = (header::AUTHORIZATION, "Bearer abc123");
        let host = (header::HOST, "127.0.0.1:6347");
        assert_eq!(check(&headers(std::slice::from_ref(&ok)), t), Ok(()));
        assert_eq!(check(&headers(&[]), t), Err(Refusal::Missing));
        assert_eq!(
            check(&headers(&[(header::AUTHORIZATION, "Bearer abc124")]), t),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            check(&headers(&[(header::AUTHORIZATION, "abc123")]), t),
            Err(Refusal::Missing)
        );
        let own = (header::ORIGIN, "http://127.0.0.1:6347");
        assert_eq!(check(&headers(&[ok.clone(), host.clone(), own]), t), Ok(()));
        let foreign = (header::ORIGIN, "http://evil.example");
        assert_eq!(
            check(&headers(&[ok.clone(), host.clone(), foreign]), t),
            Err(Refusal::ForeignOrigin)
        );
        // Another port of the same host is another origin.
        let port = (header::ORIGIN, "http://127.0.0.1:8080");
        assert_eq!(
            check(&headers(&[ok, host, port]), t),
            Err(Refusal::ForeignOrigin)
        );
    }
}
