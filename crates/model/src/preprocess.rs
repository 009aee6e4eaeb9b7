//! Image loading and HF `CLIPImageProcessor` preprocessing (resize shortest edge with Pillow's
//! resampling, center crop, rescale, normalize), plus LLaVA-1.5's pad-to-square; Pillow's
//! resampling itself ([`resample`]) and the query-fused model's HD views ([`hd`]).

pub mod hd;
pub mod resample;

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};
use serde::Deserialize;

use resample::Filter;

/// Per-channel (RGB) mean of OpenAI CLIP's normalisation, on the 0..1 scale.
pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// Per-channel (RGB) standard deviation of OpenAI CLIP's normalisation, on the 0..1 scale.
pub const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

pub use tokenscale_base::image::{decode_image_bytes, open_image, MAX_IMAGE_BYTES, MAX_IMAGE_SIDE};

/// Decodes an image file to RGB, naming the file on failure.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    Ok(to_rgb(open_image(path)?))
}

/// Decodes encoded image bytes (PNG, JPEG, …) to RGB; `origin` names the source in errors.
pub fn decode_image(bytes: &[u8], origin: &str) -> Result<RgbImage> {
    Ok(to_rgb(decode_image_bytes(bytes, origin)?))
}

/// Pillow's `convert("RGB")`: alpha is dropped, grey is replicated.
pub fn to_rgb(img: DynamicImage) -> RgbImage {
    img.to_rgb8()
}

/// HF writes sizes either as an int or as a dict.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeSpec {
    /// One number: the shortest edge for `size`, both sides for `crop_size`.
    Int(u32),
    /// Explicit fields, in pixels; a missing one falls back as [`ClipImageProcessorConfig`] says.
    Dict {
        /// Resize so the shorter side is this long, keeping the aspect ratio.
        shortest_edge: Option<u32>,
        /// Target height.
        height: Option<u32>,
        /// Target width.
        width: Option<u32>,
    },
}

fn yes() -> bool {
    true
}
fn default_size() -> SizeSpec {
    SizeSpec::Dict { shortest_edge: Some(224), height: None, width: None }
}
fn default_crop() -> SizeSpec {
    SizeSpec::Dict { shortest_edge: None, height: Some(224), width: Some(224) }
}
fn default_resample() -> u32 {
    3
}
fn default_rescale() -> f64 {
    1.0 / 255.0
}
fn default_mean() -> Vec<f64> {
    OPENAI_CLIP_MEAN.to_vec()
}
fn default_std() -> Vec<f64> {
    OPENAI_CLIP_STD.to_vec()
}

/// `preprocessor_config.json` of a `CLIPImageProcessor`, with HF's defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipImageProcessorConfig {
    /// Whether to resize before cropping.
    #[serde(default = "yes")]
    pub do_resize: bool,
    /// Resize target (default: shortest edge 224).
    #[serde(default = "default_size")]
    pub size: SizeSpec,
    /// PIL resampling filter code of the resize: 1 lanczos, 2 bilinear, 3 bicubic (default).
    #[serde(default = "default_resample")]
    pub resample: u32,
    /// Whether to center-crop after resizing.
    #[serde(default = "yes")]
    pub do_center_crop: bool,
    /// Center-crop size (default 224 × 224).
    #[serde(default = "default_crop")]
    pub crop_size: SizeSpec,
    /// Whether to multiply the 8-bit values by `rescale_factor`.
    #[serde(default = "yes")]
    pub do_rescale: bool,
    /// Scale applied to the 8-bit values (default 1/255).
    #[serde(default = "default_rescale")]
    pub rescale_factor: f64,
    /// Whether to normalise with `image_mean` / `image_std`.
    #[serde(default = "yes")]
    pub do_normalize: bool,
    /// Per-channel (RGB) mean subtracted after rescaling; exactly 3 values.
    #[serde(default = "default_mean")]
    pub image_mean: Vec<f64>,
    /// Per-channel (RGB) standard deviation divided by after that; exactly 3 values.
    #[serde(default = "default_std")]
    pub image_std: Vec<f64>,
}

impl ClipImageProcessorConfig {
    /// The processor LLaVA-1.5 and CLIP ViT-L/14-336 use.
    pub fn clip_336() -> Self {
        Self {
            do_resize: true,
            size: SizeSpec::Int(336),
            resample: 3,
            do_center_crop: true,
            crop_size: SizeSpec::Int(336),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN.to_vec(),
            image_std: OPENAI_CLIP_STD.to_vec(),
        }
    }

    /// Reads and validates a `preprocessor_config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_value(&crate::config::read_json_value(path)?, &path.display().to_string())
    }

    /// Parses and validates a config value (3 mean/std values, a supported `resample` code);
    /// errors name `origin`.
    pub fn from_value(value: &serde_json::Value, origin: &str) -> Result<Self> {
        let config: Self = crate::config::parse(value, origin, "")?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        if self.image_mean.len() != 3 || self.image_std.len() != 3 {
            bail!("{origin}: fields `image_mean` and `image_std` must have 3 values");
        }
        if Filter::from_pil_code(self.resample).is_none() {
            bail!("{origin}: field `resample` = {} is not supported (1 lanczos, 2 bilinear, 3 bicubic)", self.resample);
        }
        Ok(())
    }

    /// `(height, width)` of the center crop; a dict size's missing sides default to
    /// `shortest_edge` (or 224).
    pub fn crop_hw(&self) -> (u32, u32) {
        match self.crop_size {
            SizeSpec::Int(s) => (s, s),
            SizeSpec::Dict { height, width, shortest_edge } => {
                let s = shortest_edge.unwrap_or(224);
                (height.unwrap_or(s), width.unwrap_or(s))
            }
        }
    }

    /// `(width, height)` after the resize step.
    fn resize_target(&self, w: u32, h: u32) -> (u32, u32) {
        match self.size {
            SizeSpec::Int(s) | SizeSpec::Dict { shortest_edge: Some(s), .. } => {
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                let new_long = ((s as u64 * long as u64) as f64 / short as f64) as u32;
                if w <= h {
                    (s, new_long)
                } else {
                    (new_long, s)
                }
            }
            SizeSpec::Dict { height, width, .. } => (width.unwrap_or(w), height.unwrap_or(h)),
        }
    }

    /// The pixel values HF produces for one image: `[3, crop_h, crop_w]`, f32.
    pub fn preprocess(&self, img: &RgbImage, device: &Device) -> Result<Tensor> {
        let img = self.resize_and_crop(img)?;
        Ok(to_tensor(&img, self, device)?)
    }

    /// The 8-bit image after the resize and center-crop steps, before rescaling.
    pub fn resize_and_crop(&self, img: &RgbImage) -> Result<RgbImage> {
        let mut img = img.clone();
        if img.width() == 0 || img.height() == 0 {
            bail!("image has zero size");
        }
        if self.do_resize {
            let (w, h) = self.resize_target(img.width(), img.height());
            let filter = Filter::from_pil_code(self.resample).unwrap_or(Filter::Bicubic);
            img = resample::resize(&img, w, h, filter);
        }
        if self.do_center_crop {
            let (ch, cw) = self.crop_hw();
            img = center_crop(&img, cw, ch);
        }
        Ok(img)
    }
}

/// HF's `center_crop`: offsets `(size - crop) // 2`, zero padding where the image is smaller.
pub fn center_crop(img: &RgbImage, crop_w: u32, crop_h: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let top = (h as i64 - crop_h as i64).div_euclid(2);
    let left = (w as i64 - crop_w as i64).div_euclid(2);
    let mut out = RgbImage::new(crop_w, crop_h);
    for y in 0..crop_h as i64 {
        for x in 0..crop_w as i64 {
            let (sx, sy) = (x + left, y + top);
            if sx >= 0 && sy >= 0 && sx < w as i64 && sy < h as i64 {
                out.put_pixel(x as u32, y as u32, *img.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    out
}

/// Rescale then normalise in f32, in the order and precision HF's numpy code uses.
fn to_tensor(
    img: &RgbImage,
    cfg: &ClipImageProcessorConfig,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let (w, h) = img.dimensions();
    let (w, h) = (w as usize, h as usize);
    let mut data = vec![0f32; 3 * h * w];
    for (x, y, p) in img.enumerate_pixels() {
        for ch in 0..3 {
            let mut v = p[ch] as f64;
            if cfg.do_rescale {
                v *= cfg.rescale_factor;
            }
            let mut v = v as f32;
            if cfg.do_normalize {
                v = (v - cfg.image_mean[ch] as f32) / cfg.image_std[ch] as f32;
            }
            data[ch * h * w + y as usize * w + x as usize] = v;
        }
    }
    Tensor::from_vec(data, (3, h, w), device)
}

/// LLaVA-1.5's `expand2square`: the image pasted on a square of `background`, centred on the short axis.
pub fn expand_to_square(img: &RgbImage, background: [u8; 3]) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == h {
        return img.clone();
    }
    let side = w.max(h);
    let mut out = RgbImage::from_pixel(side, side, image::Rgb(background));
    let (dx, dy) = if w > h { (0, (w - h) / 2) } else { ((h - w) / 2, 0) };
    image::imageops::replace(&mut out, img, dx as i64, dy as i64);
    out
}

/// The mean colour LLaVA pads with: `int(m * 255)` per channel.
pub fn mean_color(mean: &[f64]) -> [u8; 3] {
    [(mean[0] * 255.0) as u8, (mean[1] * 255.0) as u8, (mean[2] * 255.0) as u8]
}
