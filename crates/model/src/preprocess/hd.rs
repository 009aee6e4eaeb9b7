//! The query-fused model's HD image views (the seed's Phi-3-V-style processor): a global
//! pad-to-square view plus up to `num_crops` local crops (336² in the published model; the crop
//! side is the vision tower's `image_size`) of an aspect-preserving resize.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::preprocess::{OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};
use crate::resample::{self, Filter};

/// The published model's crop side.
pub const CROP: u32 = 336;

/// PIL's `Image.TRANSPOSE`: pixel (x, y) moves to (y, x).
fn transpose(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    RgbImage::from_fn(h, w, |x, y| *img.get_pixel(y, x))
}

/// The local view: landscape orientation, the largest `scale` with `scale·⌈scale/ratio⌉ ≤ hd_num`,
/// bilinear resize to width `scale·crop`, white padding of the height to a multiple of `crop`
/// (top gets `int((target − h) / 2)`), orientation restored.
pub fn hd_transform(img: &RgbImage, hd_num: usize, crop: u32) -> Result<RgbImage> {
    if hd_num == 0 {
        bail!("num_crops must be at least 1");
    }
    let transposed = img.width() < img.height();
    let img = if transposed { transpose(img) } else { img.clone() };
    let (w, h) = img.dimensions();
    let ratio = w as f64 / h as f64;
    let mut scale = 1usize;
    while scale as f64 * (scale as f64 / ratio).ceil() <= hd_num as f64 {
        scale += 1;
    }
    scale -= 1;
    if scale == 0 {
        bail!("num_crops {hd_num} is too small for a {w}x{h} image");
    }
    let new_w = scale as u32 * crop;
    let new_h = ((new_w as f64 / ratio) as u32).max(1);
    let resized = resample::resize(&img, new_w, new_h, Filter::Bilinear);
    let target = new_h.div_ceil(crop) * crop;
    let top = ((target - new_h) as f64 / 2.0) as u32;
    let mut padded = RgbImage::from_pixel(new_w, target, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut padded, &resized, 0, top as i64);
    Ok(if transposed { transpose(&padded) } else { padded })
}

/// The global view before normalisation: the long side LANCZOS-resized to `crop` when larger
/// (short side truncated), pasted centred on a black square of side max(`crop` if resized, long side).
/// A square image is returned as it is, whatever its size (the seed's `image_expand2square` returns
/// before resizing; torch's bicubic then takes it to `crop`).
pub fn expand_to_square_black(img: &RgbImage, crop: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == h {
        return img.clone();
    }
    let long = w.max(h);
    let img = if long > crop {
        let (nw, nh) = if w >= h {
            (crop, ((h as f64 * crop as f64 / w as f64) as u32).max(1))
        } else {
            (((w as f64 * crop as f64 / h as f64) as u32).max(1), crop)
        };
        resample::resize(img, nw, nh, Filter::Lanczos)
    } else {
        img.clone()
    };
    let (w, h) = img.dimensions();
    let side = w.max(h);
    let mut square = RgbImage::from_pixel(side, side, image::Rgb([0, 0, 0]));
    let (dx, dy) = ((side - w) / 2, (side - h) / 2);
    image::imageops::replace(&mut square, &img, dx as i64, dy as i64);
    square
}

/// torchvision's ToTensor + Normalize with the OpenAI CLIP statistics, in f32: `[3, H, W]` values.
pub fn normalize(img: &RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0f32; 3 * w * h];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            let v = p[c] as f32 / 255.0;
            out[c * w * h + y as usize * w + x as usize] =
                (v - OPENAI_CLIP_MEAN[c] as f32) / OPENAI_CLIP_STD[c] as f32;
        }
    }
    out
}

fn cubic1(x: f32, a: f32) -> f32 {
    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
}

fn cubic2(x: f32, a: f32) -> f32 {
    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
}

fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    // torch's get_cubic_upsample_coefficients: the last tap from (1 − t) + 1, not 2 − t.
    let x2 = 1.0 - t;
    [cubic2(t + 1.0, A), cubic1(t, A), cubic1(x2, A), cubic2(x2 + 1.0, A)]
}

/// `torch.nn.functional.interpolate(mode="bicubic", align_corners=False)` of one `[3, n, n]`
/// plane set to `[3, out, out]` (A = −0.75, clamped borders, no antialiasing).
pub fn bicubic_square(data: &[f32], n: usize, out: usize) -> Vec<f32> {
    if n == out {
        return data.to_vec();
    }
    let scale = n as f32 / out as f32;
    let taps = |o: usize| -> (i64, [f32; 4]) {
        // One rounding of scale·(o + ½) − ½, as torch's CPU kernel gets it (a fused multiply-add):
        // two f32 roundings move the source position by an ulp for some sizes (335 → 336: 3e-5).
        let real = (scale as f64 * (o as f64 + 0.5) - 0.5) as f32;
        let i = real.floor();
        (i as i64, cubic_weights(real - i))
    };
    let clamp = |i: i64| i.clamp(0, n as i64 - 1) as usize;
    let mut result = vec![0f32; 3 * out * out];
    for c in 0..3 {
        let plane = &data[c * n * n..(c + 1) * n * n];
        for oy in 0..out {
            let (iy, wy) = taps(oy);
            for ox in 0..out {
                let (ix, wx) = taps(ox);
                let mut acc = 0f32;
                for (k, wyk) in wy.iter().enumerate() {
                    let row = clamp(iy - 1 + k as i64) * n;
                    let mut line = 0f32;
                    for (j, wxj) in wx.iter().enumerate() {
                        line += plane[row + clamp(ix - 1 + j as i64)] * wxj;
                    }
                    acc += line * wyk;
                }
                result[c * out * out + oy * out + ox] = acc;
            }
        }
    }
    result
}

/// All views of one image, `[K, 3, crop, crop]`: the global view first, then the local crops in
/// row-major order (empty padding crops are never produced).
pub struct HdViews {
    /// `[K, 3, crop, crop]` f32, CLIP-normalised; K = [`Self::crops`].
    pub pixel_values: Tensor,
    /// Rows of local crops.
    pub rows: usize,
    /// Columns of local crops.
    pub cols: usize,
}

impl HdViews {
    /// Number of views: the global one plus `rows × cols` local crops.
    pub fn crops(&self) -> usize {
        1 + self.rows * self.cols
    }
}

/// The views of `img` for at most `num_crops` local crops of side `crop`: the global
/// pad-to-square view, then the [`hd_transform`]ed image cut row-major. Fails on an empty image.
pub fn hd_views(img: &RgbImage, num_crops: usize, crop: u32, device: &Device) -> Result<HdViews> {
    if img.width() == 0 || img.height() == 0 {
        bail!("image has zero size");
    }
    let square = expand_to_square_black(img, crop);
    let local = hd_transform(img, num_crops, crop)?;
    let crop = crop as usize;
    let global = bicubic_square(&normalize(&square), square.width() as usize, crop);
    let (w, h) = (local.width() as usize, local.height() as usize);
    let (rows, cols) = (h / crop, w / crop);
    let local = normalize(&local);
    let mut data = Vec::with_capacity((1 + rows * cols) * 3 * crop * crop);
    data.extend_from_slice(&global);
    for r in 0..rows {
        for q in 0..cols {
            for c in 0..3 {
                for y in 0..crop {
                    let start = c * w * h + (r * crop + y) * w + q * crop;
                    data.extend_from_slice(&local[start..start + crop]);
                }
            }
        }
    }
    let pixel_values = Tensor::from_vec(data, (1 + rows * cols, 3, crop, crop), device)?;
    Ok(HdViews { pixel_values, rows, cols })
}
