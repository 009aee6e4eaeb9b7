//! Image decoding within size limits: the dimensions a file declares are checked before any
//! pixel buffer is allocated, so a small file that claims to be huge (an image bomb) is refused.
//! The evaluator (benchmark TSVs) and the model runtime (image files, API uploads) both decode
//! through here.

use std::path::Path;

use anyhow::{Context, Result};
use image::DynamicImage;

/// The largest image side accepted.
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// The most memory one decode may allocate (an 8-bit RGBA image of 8192 x 8192).
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;

fn image_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    limits
}

/// Decodes an image file (PNG or JPEG, format from its bytes) within the size limits, naming the
/// file on failure.
pub fn open_image(path: &Path) -> Result<DynamicImage> {
    let mut reader = image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open image", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read image", path.display()))?;
    reader.limits(image_limits());
    reader
        .decode()
        .map_err(|e| anyhow::anyhow!("{}: corrupt or unsupported image: {e}", path.display()))
}

/// Decodes image bytes (PNG or JPEG) within the size limits; `origin` names them in errors.
pub fn decode_image_bytes(bytes: &[u8], origin: &str) -> Result<DynamicImage> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("{origin}: cannot read image"))?;
    reader.limits(image_limits());
    reader.decode().map_err(|e| anyhow::anyhow!("{origin}: corrupt or unsupported image: {e}"))
}
