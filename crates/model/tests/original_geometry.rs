//! The query-fused model's HD views against the ORIGINAL code (tools/fixtures/original, the paper's
//! repository at 42a2596: `Phi3VImageProcessor` through `ImageHelperWithPhi3Processor`, as its demo
//! calls it) over 31 image sizes × num_crops 4 and 16.
//!
//! Exact: the view count, the crop grid, the 8-bit local crops in order and the 8-bit global square
//! (CRC-32 of the levels), and the normalised first crop (sampled). The global view after torch's
//! bicubic resize is compared sampled, within `GLOBAL_TOL`.

mod common;

use candle_core::{Device, Tensor};
use common::{fixture, formula_image};
use image::RgbImage;
use tokenscale_model::config::read_json_value;
use tokenscale_model::hd::{expand_to_square_black, hd_transform, hd_views, CROP};

/// Bicubic interpolation in f32 sums its 16 taps in another order than torch.
const GLOBAL_TOL: f32 = 5e-6;

fn crc(bytes: &[u8]) -> u64 {
    crc32fast::hash(bytes) as u64
}

/// One `crop`² tile of an 8-bit image, as HWC bytes.
fn tile(img: &RgbImage, row: u32, col: u32) -> Vec<u8> {
    image::imageops::crop_imm(img, col * CROP, row * CROP, CROP, CROP).to_image().into_raw()
}

fn strided(t: &Tensor, stride: usize) -> Tensor {
    let n = t.dim(1).unwrap();
    let idx = Tensor::arange_step(0u32, n as u32, stride as u32, &Device::Cpu).unwrap();
    t.index_select(&idx, 1).unwrap().index_select(&idx, 2).unwrap()
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap()
}

#[test]
fn hd_views_match_the_original_code_across_geometries() {
    let doc = read_json_value(&fixture("original").join("geometry.json")).unwrap();
    let want = common::tensors("original/geometry.safetensors");
    let (global_stride, crop_stride) =
        (u(&doc["global_stride"]) as usize, u(&doc["crop_stride"]) as usize);
    let mut failures = Vec::new();
    let mut worst_global = 0f32;
    let cases = doc["cases"].as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (w, h, nc) =
            (u(&case["width"]) as u32, u(&case["height"]) as u32, u(&case["num_crops"]) as usize);
        let img = formula_image(w, h);

        let local = hd_transform(&img, nc, CROP).unwrap();
        let sizes = [u(&case["image_sizes"][0]) as u32, u(&case["image_sizes"][1]) as u32];
        if [local.height(), local.width()] != sizes {
            failures.push(format!(
                "{name}: local view {}x{} (h x w), original {sizes:?}",
                local.height(),
                local.width()
            ));
            continue;
        }
        let (rows, cols) = (local.height() / CROP, local.width() / CROP);
        let crcs: Vec<u64> = (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (r, c)))
            .map(|(r, c)| crc(&tile(&local, r, c)))
            .collect();
        let want_crcs: Vec<u64> = case["crop_crc32"].as_array().unwrap().iter().map(u).collect();
        if crcs != want_crcs {
            let bad: Vec<usize> = (0..crcs.len().max(want_crcs.len()))
                .filter(|&i| crcs.get(i) != want_crcs.get(i))
                .collect();
            failures.push(format!("{name}: local crops {bad:?} differ (of {})", want_crcs.len()));
        }

        let square = expand_to_square_black(&img, CROP);
        let want_side = [u(&case["global_square"][0]) as u32, u(&case["global_square"][1]) as u32];
        if [square.width(), square.height()] != want_side {
            failures.push(format!(
                "{name}: global square {}x{}, original {want_side:?}",
                square.width(),
                square.height()
            ));
        } else if crc(square.as_raw()) != u(&case["global_crc32"]) {
            failures.push(format!("{name}: global square levels differ"));
        }

        let views = hd_views(&img, nc, CROP, &Device::Cpu).unwrap();
        let count = u(&case["views"]) as usize;
        if views.crops() != count
            || (views.rows as u64, views.cols as u64) != (u(&case["rows"]), u(&case["cols"]))
        {
            failures.push(format!(
                "{name}: {} views in {}x{}, original {count} in {}x{}",
                views.crops(),
                views.rows,
                views.cols,
                case["rows"],
                case["cols"]
            ));
            continue;
        }
        let pv = &views.pixel_values;
        let global = strided(&pv.get(0).unwrap(), global_stride);
        let d =
            common::max_abs_diff(&global, &want[&format!("{w}x{h}.global_s{global_stride}")], name);
        worst_global = worst_global.max(d);
        if d > GLOBAL_TOL {
            failures.push(format!("{name}: global view f32 max |Δ| {d:e} > {GLOBAL_TOL:e}"));
        }
        let crop1 = strided(&pv.get(1).unwrap(), crop_stride);
        let d = common::max_abs_diff(&crop1, &want[&format!("{name}.crop1_s{crop_stride}")], name);
        if d != 0.0 {
            failures.push(format!(
                "{name}: first crop f32 max |Δ| {d:e} (normalisation must be exact)"
            ));
        }
    }
    println!("{} cases; worst global-view |Δ| {worst_global:e}", cases.len());
    assert!(cases.len() >= 40, "the sweep covers at least 20 sizes x 2 num_crops");
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from the original:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The formula is what the Python script draws (a few pixels checked by hand so a drift in either
/// copy shows up here rather than as a mismatch of every view).
#[test]
fn formula_image_matches_the_script() {
    let img = formula_image(40, 30);
    // x=17, y=13, c=0..2: 17*3+13*5+(221>>4)=129 (+96 checker: (1+1)%2=0) -> 129; c=1: 68+91+27=186; c=2: 85+117+41=243.
    assert_eq!(img.get_pixel(17, 13).0, [129, 186, 243]);
    // x=16, y=0: (0+0)%2=0 -> 48, 64, 80.
    assert_eq!(img.get_pixel(16, 0).0, [48, 64, 80]);
    // x=17, y=0: checker (1+0)%2=1 -> 51+96=147, 68+96=164, 85+96=181.
    assert_eq!(img.get_pixel(17, 0).0, [147, 164, 181]);
}
