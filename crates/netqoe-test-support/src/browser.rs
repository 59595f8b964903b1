//! Headless Chromium (Debian's `chromium`, installed by `make setup`) for tests that look at
//! a page as a person would: the DOM after rendering, and a screenshot.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::process::find_binary;

fn chromium() -> Result<PathBuf> {
    find_binary(
        "chromium",
        &[
            PathBuf::from("/usr/bin/chromium"),
            PathBuf::from("/usr/bin/chromium-browser"),
        ],
    )
}

/// Runs headless Chromium on `page` with `args`, in a fresh profile, with no network
/// chatter of its own; returns its stdout.
fn run(page: &Path, args: &[String]) -> Result<String> {
    let profile = tempfile::tempdir()?;
    let url = format!(
        "file://{}",
        page.canonicalize()
            .with_context(|| format!("find {}", page.display()))?
            .display()
    );
    let out = Command::new(chromium()?)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .context("run chromium")?;
    if !out.status.success() {
        bail!(
            "chromium exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The page's DOM as Chromium rendered it.
pub fn rendered_dom(page: &Path) -> Result<String> {
    run(page, &["--dump-dom".to_string()])
}

/// A PNG screenshot of the page at `width` × `height` CSS pixels, written to `png`.
pub fn screenshot(page: &Path, png: &Path, width: u32, height: u32) -> Result<()> {
    run(
        page,
        &[
            format!("--window-size={width},{height}"),
            format!("--screenshot={}", png.display()),
        ],
    )?;
    if !png.is_file() {
        bail!("chromium wrote no screenshot to {}", png.display());
    }
    Ok(())
}
