//! `cargo xtask ui-vendor`: refreshes the console's one library, Cytoscape.js, from the npm
//! registry exactly as `observer/src/ui/web/package-lock.json` pins it (integrity checked
//! by `npm ci`), and copies its minified build to `vendor/`, where the binary embeds it
//! from. Only this needs Node.js; building the binary uses the committed copy.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Where the page's files are.
const WEB: &str = "observer/src/ui/web";
/// The file the binary embeds.
const BUNDLE: &str = "vendor/cytoscape.min.js";

/// Runs `npm ci` in a scratch copy of the package files and updates the vendored build.
pub fn run() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?;
    let web = root.join(WEB);
    let scratch = crate::shell::target_dir().join("ui-vendor");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(web.join(file), scratch.join(file))
            .with_context(|| format!("copying {file}"))?;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&scratch)
        .status()
        .context("running npm (Node.js is needed only to refresh the vendored library)")?;
    if !status.success() {
        bail!("npm ci failed ({status})");
    }
    let fresh = std::fs::read(scratch.join("node_modules/cytoscape/dist/cytoscape.min.js"))
        .context("the package's dist/cytoscape.min.js")?;
    let vendored = web.join(BUNDLE);
    if std::fs::read(&vendored).is_ok_and(|old| old == fresh) {
        println!("{}: up to date", vendored.display());
    } else {
        std::fs::write(&vendored, &fresh)?;
        println!("{}: updated ({} bytes)", vendored.display(), fresh.len());
    }
    Ok(())
}
