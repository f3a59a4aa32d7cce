//! The web interface: three static files (crates/api/web) compiled into the
//! binary and served without a token at `/` and `/ui/{file}`. The page asks
//! for the token itself and sends it on every API call.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles
//! and connections only from the daemon's own origin, no inline script or
//! style, no framing. The page inserts what the network sends as text, so
//! a file name cannot become markup; the policy is the second wall.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The Content-Security-Policy of the page and its files.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../web/index.html");

/// The files under `/ui/`: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../web/style.css"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("../web/icon.svg")),
];

/// The routes of the web interface, merged into the API's router.
pub(crate) fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(asset))
}

async fn index() -> Response {
    file(StatusCode::OK, "text/html; charset=utf-8", INDEX)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => file(StatusCode::OK, content_type, body),
        None => file(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such file\n",
        ),
    }
}

fn file(status: StatusCode, content_type: &'static str, body: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            // A new binary's page replaces the old one at the next load.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(r: &Response, name: header::HeaderName) -> &str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn every_file_has_its_type_and_the_policy() {
        let page = index().await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            header_of(&page, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            header_of(&page, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
        for (name, content_type) in [
            ("app.js", "text/javascript; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("icon.svg", "image/svg+xml"),
        ] {
            let r = asset(Path(name.to_string())).await;
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert_eq!(header_of(&r, header::CONTENT_TYPE), content_type, "{name}");
            assert_eq!(header_of(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
            assert_eq!(
                header_of(&r, header::CONTENT_SECURITY_POLICY),
                CONTENT_SECURITY_POLICY
            );
        }
        for name in ["index.html", "../Cargo.toml", "app.js.map", ""] {
            let r = asset(Path(name.to_string())).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{name}");
        }
    }

    #[test]
    fn the_policy_allows_no_inline_code() {
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'self';"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        // The page itself has nothing the policy would block: no inline
        // script or style, no event handler attributes.
        let lower = INDEX.to_ascii_lowercase();
        for (at, _) in lower.match_indices("<script") {
            let tag = &lower[at..at + lower[at..].find('>').unwrap_or(0)];
            assert!(tag.contains(" src=\"/ui/"), "inline script: {tag}");
            assert!(lower[at..].starts_with(&format!("{tag}></script>")));
        }
        assert!(!lower.contains("<style"), "inline style element");
        assert!(!lower.contains(" style="), "inline style attribute");
        assert!(!has_handler_attribute(&lower), "event handler attribute");
        assert!(!lower.contains("=\"javascript:"), "javascript: link");
        // Nothing in the script builds markup from text.
        let js = ASSETS[0].2;
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!js.contains(sink), "app.js uses {sink}");
        }
    }

    /// Whether `html` has an attribute like ` onclick=`.
    fn has_handler_attribute(html: &str) -> bool {
        html.match_indices(" on").any(|(at, _)| {
            let rest = &html[at + 3..];
            let name_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    #[test]
    fn the_page_links_only_files_that_exist() {
        let mut linked = 0;
        for (at, _) in INDEX.match_indices("\"/ui/") {
            let rest = &INDEX[at + 5..];
            let name = &rest[..rest.find('"').unwrap_or(0)];
            assert!(
                ASSETS.iter().any(|(n, _, _)| *n == name),
                "index.html links /ui/{name}, which is not served"
            );
            linked += 1;
        }
        assert_eq!(linked, ASSETS.len(), "every served file is linked once");
    }
}
