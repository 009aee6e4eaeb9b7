//! The benchmark as VLMEvalKit TSVs: one file per item kind, named so that `kind::kind_from_name`
//! picks MCQ / Y/N / VQA, with extra `category` and `subtask` columns for per-group scores.

use super::{item_with, ItemKind, Mix, Split, SynthItem};
use anyhow::{bail, Context, Result};
use base64::Engine;
use image::RgbImage;
use std::path::{Path, PathBuf};

/// VQA answers are written as ten identical annotator answers: VLMEvalKit's VQA score compares a
/// prediction with the other nine of ten answers, so a single answer could never score.
const VQA_ANNOTATORS: usize = 10;

/// `SYNTH_MCQ_TEST.tsv`, `SYNTH_YORN_TRAIN.tsv`, …
pub fn file_name(split: Split, kind: ItemKind) -> String {
    format!(
        "SYNTH_{}_{}.tsv",
        kind.as_str().to_ascii_uppercase(),
        split.as_str().to_ascii_uppercase()
    )
}

/// Encodes `image` as PNG bytes (for the TSV's base64 `image` cell).
pub fn png_bytes(image: &RgbImage) -> Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    image.write_to(&mut buf, image::ImageFormat::Png).context("encoding a PNG")?;
    Ok(buf.into_inner())
}

/// The generator index of row `row` of the `kind` file: the three files interleave, so they never
/// share an image, and `item_with(split, index, &mix.only_kind(kind))` regenerates the row.
fn generator_index(kind: ItemKind, row: usize) -> u64 {
    row as u64 * ItemKind::ALL.len() as u64 + kind.position() as u64
}

fn answer_cell(item: &SynthItem) -> String {
    match item.kind {
        ItemKind::Mcq => item.answer.clone(),
        // VLMEvalKit's Y/N scorer compares with "Yes" / "No".
        ItemKind::YesNo => if item.answer == "yes" { "Yes" } else { "No" }.to_string(),
        ItemKind::ShortAnswer => {
            tokenscale_vlmeval::py::repr_list(&vec![item.answer.clone(); VQA_ANNOTATORS])
        }
    }
}

fn table(split: Split, count: usize, mix: &Mix, kind: ItemKind) -> Result<String> {
    let mut t = String::from("index\timage\tquestion\t");
    if kind == ItemKind::Mcq {
        t += "A\tB\tC\tD\t";
    }
    t += "answer\tcategory\tsubtask\n";
    let mix = mix.only_kind(kind);
    for row in 0..count {
        let index = generator_index(kind, row);
        let item = item_with(split, index, &mix);
        let png = png_bytes(&item.image)
            .with_context(|| format!("{} row {row} (index {index})", file_name(split, kind)))?;
        let image = base64::engine::general_purpose::STANDARD.encode(png);
        t += &format!("{index}\t{image}\t{}\t", item.question);
        for option in &item.options {
            t += option;
            t.push('\t');
        }
        t += &format!("{}\t{}\t{}\n", answer_cell(&item), item.category.as_str(), item.subtask);
    }
    Ok(t)
}

/// Write `count` items of each kind the mix gives a positive weight into `dir` (created if
/// missing), one TSV per kind; returns the paths. Every file is written under a temporary name
/// first (and `fsync`ed) and renamed only once all are complete, so a failure or a power cut
/// leaves no partial benchmark.
pub fn write_benchmark(dir: &Path, split: Split, count: usize, mix: &Mix) -> Result<Vec<PathBuf>> {
    if count == 0 {
        bail!("the benchmark needs at least one item per file (count is 0)");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kinds: Vec<ItemKind> =
        ItemKind::ALL.into_iter().filter(|k| mix.kind_weights()[k.position()] > 0.0).collect();
    // A folder in a file's place would make its rename fail after others had succeeded.
    for kind in &kinds {
        let target = dir.join(file_name(split, *kind));
        if target.is_dir() {
            bail!("cannot write {}: it is a folder", target.display());
        }
    }
    let mut written: Vec<(PathBuf, PathBuf)> = Vec::new();
    let remove_temps = |written: &[(PathBuf, PathBuf)]| {
        for (tmp, _) in written {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for kind in kinds {
        let target = dir.join(file_name(split, kind));
        let tmp = dir.join(format!(".{}.tmp", file_name(split, kind)));
        let result = table(split, count, mix, kind)
            .and_then(|text| {
                std::fs::write(&tmp, text)
                    .with_context(|| format!("cannot write {}", tmp.display()))
            })
            .and_then(|()| Ok(tokenscale_fsio::sync_file(&tmp)?));
        written.push((tmp, target));
        if let Err(e) = result {
            remove_temps(&written);
            return Err(e);
        }
    }
    for (i, (tmp, target)) in written.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, target) {
            remove_temps(&written[i..]);
            return Err(e)
                .with_context(|| format!("cannot move {} to {}", tmp.display(), target.display()));
        }
    }
    tokenscale_fsio::sync_dir(dir)?;
    Ok(written.into_iter().map(|(_, target)| target).collect())
}
