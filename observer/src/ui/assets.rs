//! The page's files, embedded at build time from `observer/src/ui/web/`: no runtime
//! downloads, no CDN. The one library, Cytoscape.js, is the committed minified build that
//! `package-lock.json` pins (`cargo xtask ui-vendor` refreshes it with npm), so building
//! the binary needs no Node.js.

/// One embedded file.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The file served at `path`, if any.
pub fn asset(path: &str) -> Option<Asset> {
    let (content_type, body): (&str, &[u8]) = match path {
        "/" | "/index.html" => (HTML, include_bytes!("web/index.html")),
        "/app.js" => (JS, include_bytes!("web/app.js")),
        "/views.js" => (JS, include_bytes!("web/views.js")),
        "/style.css" => (CSS, include_bytes!("web/style.css")),
        "/vendor/cytoscape.min.js" => (JS, include_bytes!("web/vendor/cytoscape.min.js")),
        _ => return None,
    };
    Some(Asset { content_type, body })
}
