//! The test split of the synthetic benchmark and the image pairs of the probe. This is the one
//! module that knows the generator's API.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use image::RgbImage;
use tokenscale_eval::dataset::{decode_image, ImageSource};
use tokenscale_eval::synth::{self, Rng, Shape, COLORS, SHAPES};
use tokenscale_eval::Dataset;

use crate::files::replace_dir;

/// Side of the generated images in pixels.
pub const IMAGE_SIZE: u32 = 64;

/// Writes the test split (`items` rows per kind, seeded) into `dir` and loads it. The files are
/// generated in a temporary folder; an existing `dir` with the same bytes is kept as it is (its
/// content hashes are what lets a later run resume), any other is replaced whole.
pub fn write_test_split(dir: &Path, items: usize, seed: u64) -> Result<Vec<Dataset>> {
    let parent = dir.parent().context("the benchmark folder needs a parent folder")?;
    let tmp = parent.join(format!(".data.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = synth::generate(&tmp, seed, items, IMAGE_SIZE).context("generating the synthetic benchmark")?;
    let same = written.iter().all(|p| {
        let name = p.file_name().unwrap_or_default();
        std::fs::read(dir.join(name)).ok() == std::fs::read(p).ok()
    });
    if same {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("{}: cannot remove", tmp.display()))?;
    } else {
        replace_dir(&tmp, dir)?;
    }
    written
        .iter()
        .map(|p| Dataset::load(&dir.join(p.file_name().unwrap_or_default()), None))
        .collect()
}

/// Two images that differ in one detail, and a question about the image.
pub struct ImagePair {
    pub a: RgbImage,
    pub b: RgbImage,
    pub question: String,
}

/// `count` seeded pairs: a 2×2 grid of random shapes, and the same picture (same background and
/// positions) with one shape in another colour; the question asks about that shape.
pub fn image_pairs(count: usize, seed: u64) -> Result<Vec<ImagePair>> {
    let mut rng = Rng::new(seed ^ 0x70b3_5eed);
    (0..count)
        .map(|i| {
            let shapes: Vec<Shape> =
                (0..4).map(|_| Shape { shape: rng.below(SHAPES.len()), color: rng.below(COLORS.len()) }).collect();
            let mut changed = shapes.clone();
            let which = rng.below(shapes.len());
            changed[which].color = (shapes[which].color + 1 + rng.below(COLORS.len() - 1)) % COLORS.len();
            // The same layout seed for both sides, so only the one colour differs.
            let layout = rng.next_u64();
            let side = |s: &[Shape]| -> Result<RgbImage> {
                let png = synth::picture(s, IMAGE_SIZE, &mut Rng::new(layout));
                Ok(decode_image(&ImageSource::Base64(Arc::new(png))).with_context(|| format!("probe pair {i}"))?.to_rgb8())
            };
            let question = format!("What colour is the {}?", SHAPES[shapes[which].shape]);
            Ok(ImagePair { a: side(&shapes)?, b: side(&changed)?, question })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_differ_in_one_shape_only() {
        let pairs = image_pairs(3, 5).unwrap();
        for p in &pairs {
            assert_eq!(p.a.dimensions(), (IMAGE_SIZE, IMAGE_SIZE));
            let differing = p.a.pixels().zip(p.b.pixels()).filter(|(x, y)| x != y).count();
            let total = (IMAGE_SIZE * IMAGE_SIZE) as usize;
            assert!(differing > 0 && differing < total / 4, "{differing} of {total} pixels differ");
        }
        let again = image_pairs(3, 5).unwrap();
        assert!(pairs.iter().zip(&again).all(|(x, y)| x.a == y.a && x.b == y.b && x.question == y.question));
    }

    #[test]
    fn split_is_kept_when_unchanged_and_replaced_when_not() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let first = write_test_split(&dir, 4, 1).unwrap();
        let stamp = std::fs::metadata(&first[0].path).unwrap().modified().unwrap();
        let again = write_test_split(&dir, 4, 1).unwrap();
        assert_eq!(std::fs::metadata(&again[0].path).unwrap().modified().unwrap(), stamp);
        assert!(first.iter().zip(&again).all(|(x, y)| x.content_hash == y.content_hash));
        let other = write_test_split(&dir, 6, 1).unwrap();
        assert!(other.iter().all(|d| d.items.len() == 6));
        // Only the data folder: no temporary folder left behind.
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
