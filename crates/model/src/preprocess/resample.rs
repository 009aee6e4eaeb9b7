//! Pillow's `Image.resize` for 8-bit RGB, reproduced exactly: separable convolution (one pass per
//! axis, in Pillow 13's order), antialiased support scaled by the reduction factor, 22-bit
//! fixed-point coefficients and 8-bit rounding between passes.

use image::RgbImage;

/// A Pillow resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Triangle filter, support 1 (PIL code 2).
    Bilinear,
    /// Bicubic filter with a = −0.5, support 2 (PIL code 3).
    Bicubic,
    /// Lanczos-3 windowed sinc, support 3 (PIL code 1).
    Lanczos,
}

impl Filter {
    /// Pillow's resample codes: 2 = BILINEAR, 3 = BICUBIC, 1 = LANCZOS.
    pub fn from_pil_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Lanczos),
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = x * std::f64::consts::PI;
        px.sin() / px
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

struct Coefficients {
    /// For each output pixel: first input index and the fixed-point weights.
    bounds: Vec<(usize, usize)>,
    weights: Vec<Vec<i64>>,
}

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut k: Vec<f64> = (0..count)
            .map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss))
            .collect();
        let total: f64 = k.iter().sum();
        if total != 0.0 {
            k.iter_mut().for_each(|w| *w /= total);
        }
        let one = (1i64 << PRECISION_BITS) as f64;
        let fixed = k
            .iter()
            .map(|&w| if w < 0.0 { (-0.5 + w * one) as i64 } else { (0.5 + w * one) as i64 })
            .collect();
        bounds.push((xmin, count));
        weights.push(fixed);
    }
    Coefficients { bounds, weights }
}

fn clip8(v: i64) -> u8 {
    let shifted = v >> PRECISION_BITS;
    shifted.clamp(0, 255) as u8
}

fn pass_horizontal(src: &RgbImage, out_w: u32, filter: Filter) -> RgbImage {
    let (in_w, h) = src.dimensions();
    let c = coefficients(in_w as usize, out_w as usize, filter);
    let mut out = RgbImage::new(out_w, h);
    let raw = src.as_raw();
    let stride = in_w as usize * 3;
    for y in 0..h as usize {
        let row = &raw[y * stride..(y + 1) * stride];
        for xx in 0..out_w as usize {
            let (xmin, count) = c.bounds[xx];
            let k = &c.weights[xx];
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (x, &kx) in k[..count].iter().enumerate() {
                let p = (xmin + x) * 3;
                for ch in 0..3 {
                    acc[ch] += row[p + ch] as i64 * kx;
                }
            }
            out.put_pixel(
                xx as u32,
                y as u32,
                image::Rgb([clip8(acc[0]), clip8(acc[1]), clip8(acc[2])]),
            );
        }
    }
    out
}

fn pass_vertical(src: &RgbImage, out_h: u32, filter: Filter) -> RgbImage {
    let (w, in_h) = src.dimensions();
    let c = coefficients(in_h as usize, out_h as usize, filter);
    let mut out = RgbImage::new(w, out_h);
    let raw = src.as_raw();
    let stride = w as usize * 3;
    for yy in 0..out_h as usize {
        let (ymin, count) = c.bounds[yy];
        let k = &c.weights[yy];
        for x in 0..w as usize {
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (y, &ky) in k[..count].iter().enumerate() {
                let p = (ymin + y) * stride + x * 3;
                for ch in 0..3 {
                    acc[ch] += raw[p + ch] as i64 * ky;
                }
            }
            out.put_pixel(
                x as u32,
                yy as u32,
                image::Rgb([clip8(acc[0]), clip8(acc[1]), clip8(acc[2])]),
            );
        }
    }
    out
}

/// Whether Pillow 13 runs the vertical pass first: when the height shrinks by more than twice as
/// many pixels as the width does (its speed rule; Pillow ≤ 12.1 always went horizontal first).
/// The order matters because each pass rounds to 8 bits.
pub fn vertical_first(in_w: u32, in_h: u32, out_w: u32, out_h: u32) -> bool {
    out_h < in_h && (in_h as i64 - out_h as i64) > 2 * (in_w as i64 - out_w as i64)
}

/// `PIL.Image.resize((width, height), filter)` on an RGB image (Pillow 13.0).
pub fn resize(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (w, h) = src.dimensions();
    let horizontal = |img: RgbImage| {
        if img.width() != width {
            pass_horizontal(&img, width, filter)
        } else {
            img
        }
    };
    let vertical = |img: RgbImage| {
        if img.height() != height {
            pass_vertical(&img, height, filter)
        } else {
            img
        }
    };
    if vertical_first(w, h, width, height) {
        horizontal(vertical(src.clone()))
    } else {
        vertical(horizontal(src.clone()))
    }
}
