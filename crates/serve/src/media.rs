//! Images of a request: `data:` URLs (base64) and, when the server allows a folder, local paths
//! inside it. Nothing is fetched over a network. Sizes are checked before decoding: the encoded
//! bytes against the byte limit, the header's width × height against the pixel limit (a small
//! file that claims a huge image is refused before any pixel buffer exists).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine;
use image::{ImageReader, RgbImage};

use crate::error::ApiError;
use crate::options::{Limits, ServeOptions};

/// Where a request's image comes from, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// The decoded bytes of a `data:` URL.
    Bytes(Vec<u8>),
    /// A file inside the allowed folder (canonical path).
    File(PathBuf),
}

/// Where a request's image comes from (checked, not yet read or decoded).
pub fn image_source(
    url: &str,
    param: &str,
    options: &ServeOptions,
) -> Result<ImageSource, ApiError> {
    let limits = &options.limits;
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((header, payload)) = rest.split_once(',') else {
            return Err(ApiError::invalid(
                Some(param),
                "a data: URL needs a comma before its payload (data:image/png;base64,...)",
            ));
        };
        if !header.ends_with(";base64") {
            return Err(ApiError::invalid(
                Some(param),
                "a data: URL must be base64-encoded (data:image/png;base64,...)",
            ));
        }
        // Four base64 characters per three bytes: refuse by the encoded length before decoding.
        if payload.len() / 4 * 3 > limits.max_image_bytes + 3 {
            return Err(ApiError::too_large(
                Some(param),
                format!("the image is over {} bytes", limits.max_image_bytes),
            ));
        }
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(payload.trim_end()).map_err(|e| {
                ApiError::invalid(Some(param), format!("the data: URL is not valid base64: {e}"))
            })?;
        if bytes.len() > limits.max_image_bytes {
            return Err(ApiError::too_large(
                Some(param),
                format!("the image is {} bytes; at most {}", bytes.len(), limits.max_image_bytes),
            ));
        }
        return Ok(ImageSource::Bytes(bytes));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err(ApiError::invalid_code(
            "image_url_not_supported",
            Some(param),
            "image URLs are not fetched (the server has no network access): send the image inline as a data: URL",
        ));
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    let Some(allowed) = &options.allow_files else {
        return Err(ApiError::invalid(Some(param), "local image paths are refused: this server allows no folder for them; send a data: URL"));
    };
    allowed_file(Path::new(path), allowed, param)
}

/// `path` resolved (links followed, `..` removed) and required to lie inside `allowed`.
fn allowed_file(path: &Path, allowed: &Path, param: &str) -> Result<ImageSource, ApiError> {
    let outside = || {
        ApiError::invalid(
            Some(param),
            "the image path is not a file inside the folder this server allows",
        )
    };
    let root = allowed.canonicalize().map_err(|_| outside())?;
    let joined = if path.is_absolute() { path.to_path_buf() } else { root.join(path) };
    let resolved = joined.canonicalize().map_err(|_| outside())?;
    if !resolved.starts_with(&root) || !resolved.is_file() {
        return Err(outside());
    }
    Ok(ImageSource::File(resolved))
}

/// Reads and decodes the image within the limits (blocking: run it off the async threads).
pub fn load_image(
    source: &ImageSource,
    param: &str,
    limits: &Limits,
) -> Result<RgbImage, ApiError> {
    let bytes = match source {
        ImageSource::Bytes(bytes) => std::borrow::Cow::Borrowed(bytes.as_slice()),
        ImageSource::File(path) => {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
            if size > limits.max_image_bytes as u64 {
                return Err(ApiError::too_large(
                    Some(param),
                    format!("the image file is over {} bytes", limits.max_image_bytes),
                ));
            }
            std::borrow::Cow::Owned(std::fs::read(path).map_err(|e| {
                ApiError::invalid(Some(param), format!("cannot read the image file: {e}"))
            })?)
        }
    };
    let reader = || {
        ImageReader::new(Cursor::new(bytes.as_ref()))
            .with_guessed_format()
            .map_err(|e| ApiError::invalid(Some(param), format!("cannot read the image: {e}")))
    };
    let probe = reader()?;
    if probe.format().is_none() {
        return Err(ApiError::invalid(Some(param), "the image is neither PNG nor JPEG"));
    }
    let (width, height) = probe.into_dimensions().map_err(|e| {
        ApiError::invalid(Some(param), format!("cannot read the image header: {e}"))
    })?;
    let pixels = width as u64 * height as u64;
    if pixels == 0 {
        return Err(ApiError::invalid(Some(param), "the image has no pixels"));
    }
    if pixels > limits.max_image_pixels {
        return Err(ApiError::too_large(
            Some(param),
            format!(
                "the image is {width}×{height} = {pixels} pixels; at most {}",
                limits.max_image_pixels
            ),
        ));
    }
    let mut decoder = reader()?;
    let mut bounds = image::Limits::default();
    bounds.max_image_width = Some(width);
    bounds.max_image_height = Some(height);
    // RGBA at 16 bits per channel is the most a PNG decodes to; twice that leaves the decoder room.
    bounds.max_alloc = Some(pixels.saturating_mul(16));
    decoder.limits(bounds);
    let decoded = decoder
        .decode()
        .map_err(|e| ApiError::invalid(Some(param), format!("cannot decode the image: {e}")))?;
    Ok(tokenscale_model::preprocess::to_rgb(decoded))
}
