//! The first synthetic fixture: small mixed TSVs (MCQ with hints, Y/N rows that refer to another
//! row's image, VQA answers as 10-annotator lists) that exercise the sweep and scoring paths in
//! tests. The benchmark proper is `crate::item` / `crate::write_benchmark`.

use super::rng::Rng;
use super::scene::{COLORS, SHAPES};
use anyhow::Result;
use base64::Engine;
use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};

/// One drawn shape.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Index into `SHAPES`.
    pub shape: usize,
    /// Index into `COLORS`.
    pub color: usize,
}

fn draw(img: &mut RgbImage, s: &Shape, cx: i32, cy: i32, r: i32) {
    let c = Rgb(COLORS[s.color].1);
    for y in (cy - r).max(0)..(cy + r).min(img.height() as i32) {
        for x in (cx - r).max(0)..(cx + r).min(img.width() as i32) {
            let (dx, dy) = (x - cx, y - cy);
            let inside = match s.shape {
                0 => dx * dx + dy * dy <= r * r,
                1 => dx.abs() <= r * 3 / 4 && dy.abs() <= r * 3 / 4,
                2 => dy >= -r * 3 / 4 && dy <= r * 3 / 4 && dx.abs() * 2 <= (dy + r * 3 / 4),
                _ => dx.abs() <= r / 4 || dy.abs() <= r / 4,
            };
            if inside {
                img.put_pixel(x as u32, y as u32, c);
            }
        }
    }
}

/// A picture of `shapes` on a light background (size × size pixels), as PNG base64.
pub fn picture(shapes: &[Shape], size: u32, rng: &mut Rng) -> String {
    let bg = 235 + rng.below(20) as u8;
    let mut img = RgbImage::from_pixel(size, size, Rgb([bg, bg, bg]));
    let cells = (shapes.len() as f64).sqrt().ceil() as i32;
    let cell = size as i32 / cells.max(1);
    for (i, s) in shapes.iter().enumerate() {
        let (gx, gy) = (i as i32 % cells, i as i32 / cells);
        let r = cell * 2 / 5;
        let jitter = (rng.below(3) as i32) - 1;
        draw(&mut img, s, gx * cell + cell / 2 + jitter, gy * cell + cell / 2 - jitter, r);
    }
    let mut buf = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut buf, image::ImageFormat::Png)
        .expect("png encode");
    base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
}

fn random_shapes(rng: &mut Rng, count: usize) -> Vec<Shape> {
    (0..count)
        .map(|_| Shape { shape: rng.below(SHAPES.len()), color: rng.below(COLORS.len()) })
        .collect()
}

const NUMBER_WORDS: [&str; 10] =
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];

/// Write `SYNTH_MCQ.tsv`, `SYNTH_YORN.tsv` and `SYNTH_VQA.tsv` (about `items` rows each) into
/// `dir`; the same seed gives byte-identical files.
pub fn generate(dir: &Path, seed: u64, items: usize, image_size: u32) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::new(seed);
    let mut paths = Vec::new();

    // MCQ: single-shape pictures; "which shape" / "which colour" with 4 shuffled options.
    let mut t = String::from(
        "index\timage\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\tl2-category\tsplit\n",
    );
    for i in 0..items {
        let shapes = random_shapes(&mut rng, 1);
        let img = picture(&shapes, image_size, &mut rng);
        let (q, truth, pool, cat, l2): (&str, &str, Vec<&str>, &str, &str) = if i % 2 == 0 {
            (
                "Which shape is shown in the image?",
                SHAPES[shapes[0].shape],
                SHAPES.to_vec(),
                "shape",
                "perception",
            )
        } else {
            (
                "What is the colour of the shape?",
                COLORS[shapes[0].color].0,
                COLORS.iter().map(|c| c.0).collect(),
                "colour",
                "perception",
            )
        };
        let mut opts: Vec<&str> = pool.into_iter().filter(|x| *x != truth).collect();
        rng.shuffle(&mut opts);
        opts.truncate(3);
        opts.push(truth);
        rng.shuffle(&mut opts);
        let ans = (b'A' + opts.iter().position(|o| *o == truth).unwrap() as u8) as char;
        let hint = if i % 3 == 0 { "The picture shows a single shape." } else { "" };
        t += &format!(
            "{i}\t{img}\t{q}\t{hint}\t{}\t{}\t{}\t{}\t{ans}\t{cat}\t{l2}\tdev\n",
            opts[0], opts[1], opts[2], opts[3]
        );
    }
    let p = dir.join("SYNTH_MCQ.tsv");
    tokenscale_fsio::write_atomic(&p, t.as_bytes())?;
    paths.push(p);

    // Y/N: two questions per picture (the second row refers to the first row's image by index,
    // as VLMEvalKit TSVs do), one with answer Yes and one with No.
    let mut t = String::from("index\timage\tquestion\tanswer\tcategory\timage_path\n");
    let pairs = items.div_ceil(2);
    for i in 0..pairs {
        let k = 1 + rng.below(3);
        let shapes = random_shapes(&mut rng, k);
        let img = picture(&shapes, image_size, &mut rng);
        let present_c = COLORS[shapes[0].color].0;
        let absent_c = COLORS
            .iter()
            .map(|c| c.0)
            .find(|c| !shapes.iter().any(|s| COLORS[s.color].0 == *c))
            .unwrap();
        let mut qs = [
            (format!("Is there a {present_c} shape in the image? Please answer yes or no."), "Yes"),
            (format!("Is there a {absent_c} shape in the image? Please answer yes or no."), "No"),
        ];
        if rng.below(2) == 1 {
            qs.swap(0, 1);
        }
        let (a, b) = (2 * i, 2 * i + 1);
        t += &format!("{a}\t{img}\t{}\t{}\tcolor\t{i}.png\n", qs[0].0, qs[0].1);
        t += &format!("{b}\t{a}\t{}\t{}\tcolor\t{i}.png\n", qs[1].0, qs[1].1);
    }
    let p = dir.join("SYNTH_YORN.tsv");
    tokenscale_fsio::write_atomic(&p, t.as_bytes())?;
    paths.push(p);

    // VQA: counting and colour questions; answers as Python list literals (10 annotators).
    let mut t = String::from("index\timage\tquestion\tanswer\tcategory\n");
    for i in 0..items {
        let count = 1 + rng.below(4);
        let shapes = random_shapes(&mut rng, count);
        let img = picture(&shapes, image_size, &mut rng);
        let (q, answers, cat) = if i % 2 == 0 {
            let mut a: Vec<String> = vec![count.to_string(); 8];
            a.push(NUMBER_WORDS[count].to_string());
            a.push(format!("{} shapes", count));
            ("How many shapes are in the image?".to_string(), a, "counting")
        } else {
            let s = &shapes[0];
            let mut a: Vec<String> = vec![COLORS[s.color].0.to_string(); 9];
            a.push(format!("{} {}", COLORS[s.color].0, SHAPES[s.shape]));
            ("What colour is the first shape (top left)?".to_string(), a, "colour")
        };
        t += &format!("{i}\t{img}\t{q}\t{}\t{cat}\n", tokenscale_vlmeval::py::repr_list(&answers));
    }
    let p = dir.join("SYNTH_VQA.tsv");
    tokenscale_fsio::write_atomic(&p, t.as_bytes())?;
    paths.push(p);
    Ok(paths)
}
