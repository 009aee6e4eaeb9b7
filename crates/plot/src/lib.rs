//! tokenscale-plot: the figures of "Scaling Capability in Token Space", as SVG and PNG.
//!
//! Text is laid out with an embedded DejaVu Sans (plotters' `ab_glyph` path), so rendering needs no
//! system font or fontconfig. Every figure is drawn by one generic function over a plotters backend
//! and saved as `<stem>.svg` and `<stem>.png`, each written to a temporary file and renamed.

#![warn(missing_docs)]

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::{Path, PathBuf};
use std::sync::Once;

mod bench;
mod figures;
mod training;
pub use bench::*;
pub use figures::*;
pub use training::TrainingFigure;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// The font family every figure uses (registered from the embedded TTF).
pub const FAMILY: &str = "sans-serif";

/// Errors while drawing or writing a figure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The drawing backend failed (the message is plotters').
    #[error("drawing: {0}")]
    Draw(String),
    /// A figure or panel had nothing to draw (the message says which).
    #[error("no data to plot: {0}")]
    Empty(String),
    /// Writing a figure (the message names the file).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Encoding the PNG failed.
    #[error("png encoding: {0}")]
    Png(String),
}

/// What every drawing function returns.
pub type Result<T> = std::result::Result<T, PlotError>;

pub(crate) fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Register the embedded font (idempotent).
pub fn init_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique] {
            // The embedded font is a valid TTF; failure here is a build defect.
            if register_font(FAMILY, style, FONT).is_err() {
                panic!("embedded DejaVuSans.ttf could not be parsed");
            }
        }
    });
}

/// Render a figure to SVG text.
pub fn render_svg<F>(size: (u32, u32), draw: F) -> Result<String>
where
    F: FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
{
    init_fonts();
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(s)
}

/// Render a figure to PNG bytes.
pub fn render_png<F>(size: (u32, u32), draw: F) -> Result<Vec<u8>>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
{
    init_fonts();
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    let img = image::RgbImage::from_raw(size.0, size.1, buf)
        .ok_or_else(|| PlotError::Png("buffer size".into()))?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| PlotError::Png(e.to_string()))?;
    Ok(out.into_inner())
}

/// A figure that can be drawn on any backend.
pub trait Figure {
    /// Pixel size (SVG user units and PNG pixels).
    fn size(&self) -> (u32, u32);
    /// Draws the figure on `root` (the whole area, `size()` pixels).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;

    /// The figure as an SVG document.
    fn svg(&self) -> Result<String> {
        render_svg(self.size(), |r| self.draw(r))
    }

    /// The figure as PNG bytes.
    fn png(&self) -> Result<Vec<u8>> {
        render_png(self.size(), |r| self.draw(r))
    }
    /// Write `<dir>/<stem>.svg` and `<dir>/<stem>.png`; returns both paths.
    fn save(&self, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
        let svg = dir.join(format!("{stem}.svg"));
        tokenscale_fsio::write_atomic(&svg, self.svg()?.as_bytes())?;
        let png = dir.join(format!("{stem}.png"));
        tokenscale_fsio::write_atomic(&png, &self.png()?)?;
        Ok(vec![svg, png])
    }
}
