//! CLIPImageProcessor (and LLaVA-1.5 pad-to-square) on real photographs against transformers + Pillow.
//!
//! The fixture stores, per photo, the 8-bit image after the processor's resize + center crop
//! (the script asserts transformers' f32 output is exactly the normalisation of these levels) and
//! one strip of transformers' f32 output. Tolerance: bit-exact.

mod common;

use candle_core::{DType, Device};
use common::{expected, fixture};
use tokenscale_model::preprocess::{
    expand_to_square, load_image, mean_color, ClipImageProcessorConfig,
};

const PHOTOS: &[&str] = &["astronaut", "chelsea", "coffee", "hubble", "rocket_portrait"];

#[test]
fn clip_processor_matches_transformers_on_photos() {
    let dir = fixture("preprocess");
    let cfg = ClipImageProcessorConfig::from_file(&dir.join("preprocessor_config.json")).unwrap();
    let want = expected("preprocess");
    let mut differing = 0usize;
    let mut worst_level = 0i32;
    for name in PHOTOS {
        let img = load_image(&dir.join(format!("{name}.png"))).unwrap();
        for (variant, input) in [
            ("clip", img.clone()),
            ("pad_square", expand_to_square(&img, mean_color(&cfg.image_mean))),
        ] {
            let got = cfg.resize_and_crop(&input).unwrap();
            let reference: Vec<u8> =
                want[&format!("{name}.{variant}_levels")].flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(got.as_raw().len(), reference.len(), "{name}.{variant}: size");
            let diff = got.as_raw().iter().zip(&reference).filter(|(a, b)| a != b).count();
            let level = got
                .as_raw()
                .iter()
                .zip(&reference)
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .max()
                .unwrap_or(0);
            println!(
                "{name}.{variant} ({}x{}): {diff} of {} values differ, max {level} levels",
                img.width(),
                img.height(),
                reference.len()
            );
            differing += diff;
            worst_level = worst_level.max(level);
        }
    }
    assert_eq!((differing, worst_level), (0, 0), "resize/crop differs from Pillow");

    // The rescale + normalise arithmetic, against transformers' own f32 output.
    let img = load_image(&dir.join("astronaut.png")).unwrap();
    let got = cfg.preprocess(&img, &Device::Cpu).unwrap().narrow(1, 0, 8).unwrap();
    let strip = want["astronaut.clip_rows"].to_dtype(DType::F32).unwrap();
    let d = common::max_abs_diff(&got, &strip, "astronaut.clip_rows");
    println!("normalisation: max |Δ| = {d:e}");
    assert_eq!(d, 0.0, "normalised values differ from transformers");
}
