//! The test split of the synthetic benchmark and the image pairs of the probe. This is the one
//! module that knows the generator's API.

use std::path::Path;

use anyhow::{Context, Result};
use image::RgbImage;
use tokenscale_eval::Dataset;
use tokenscale_synth as synth;
use tokenscale_synth::{ItemKind, Mix, Rng, Split, COLORS};

use tokenscale_fsio::replace_dir;

/// Side of the generated images in pixels.
pub const IMAGE_SIZE: u32 = synth::scene::IMAGE_SIZE;

/// Probe pairs come from generator indices far past any benchmark row, so no probe image is a
/// test image.
const PAIR_INDEX_BASE: u64 = 1 << 40;

/// Writes the test split (`items` rows of each of `kinds`) into `dir` and loads it. The files are
/// generated in a temporary folder; an existing `dir` with the same bytes is kept as it is (its
/// content hashes are what lets a later run resume), any other is replaced whole.
pub fn write_test_split(dir: &Path, items: usize, kinds: &[ItemKind]) -> Result<Vec<Dataset>> {
    let mut mix = Mix::default();
    for kind in ItemKind::ALL.into_iter().filter(|k| !kinds.contains(k)) {
        mix = mix.with_kind(kind, 0.0)?;
    }
    let parent = dir.parent().context("the benchmark folder needs a parent folder")?;
    let tmp = parent.join(format!(".data.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = synth::write_benchmark(&tmp, Split::Test, items, &mix)
        .context("generating the synthetic benchmark")?;
    let same = written.iter().all(|p| {
        let name = p.file_name().unwrap_or_default();
        std::fs::read(dir.join(name)).ok() == std::fs::read(p).ok()
    });
    if same {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("{}: cannot remove", tmp.display()))?;
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
    /// The original image (the test item's).
    pub a: RgbImage,
    /// The same scene with one detail changed, re-rendered.
    pub b: RgbImage,
    /// The item's prompt, as the sweep gives it to the model.
    pub question: String,
}

/// `count` pairs: a test-distribution scene with a fine-detail short-answer question (the eval
/// prompt), and the same scene with one shape recoloured; `seed` picks the shape and colour.
pub fn image_pairs(count: usize, seed: u64) -> Result<Vec<ImagePair>> {
    let fine = Mix::default().with_subtask("coarse", 0.0)?.only_kind(ItemKind::ShortAnswer);
    let mut rng = Rng::new(seed);
    Ok((0..count as u64)
        .map(|i| {
            let item = synth::item_with(Split::Test, PAIR_INDEX_BASE + i, &fine);
            let mut changed = item.scene.clone();
            let occupied: Vec<usize> =
                (0..changed.cells.len()).filter(|&c| changed.cells[c].is_some()).collect();
            match rng.pick(&occupied).and_then(|&c| changed.cells[c].as_mut()) {
                Some(shape) => {
                    shape.color = (shape.color + 1 + rng.below(COLORS.len() - 1)) % COLORS.len()
                }
                // An empty grid (probability 0.4^16): the border is the one detail to change.
                None => changed.border = (changed.border + 1) % COLORS.len(),
            }
            ImagePair {
                a: item.image.clone(),
                b: changed.render(),
                question: synth::prompt_for(&item),
            }
        })
        .collect())
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
            // One shape's pixels: at most its 12×12 box.
            assert!(differing > 0 && differing <= 144, "{differing} pixels differ");
        }
        let again = image_pairs(3, 5).unwrap();
        assert!(pairs
            .iter()
            .zip(&again)
            .all(|(x, y)| x.a == y.a && x.b == y.b && x.question == y.question));
    }

    #[test]
    fn split_is_kept_when_unchanged_and_replaced_when_not() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let first = write_test_split(&dir, 4, &ItemKind::ALL).unwrap();
        assert_eq!(first.len(), 3);
        let stamp = std::fs::metadata(&first[0].path).unwrap().modified().unwrap();
        let again = write_test_split(&dir, 4, &ItemKind::ALL).unwrap();
        assert_eq!(std::fs::metadata(&again[0].path).unwrap().modified().unwrap(), stamp);
        assert!(first.iter().zip(&again).all(|(x, y)| x.content_hash == y.content_hash));
        let other = write_test_split(&dir, 6, &[ItemKind::ShortAnswer]).unwrap();
        assert_eq!(other.len(), 1);
        assert!(other[0].name.contains("VQA") && other[0].items.len() == 6);
        // Only the data folder: no temporary folder left behind.
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
