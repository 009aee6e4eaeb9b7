//! Readers of evaluation files: benchmark TSVs, prediction files, score tables for `fit`, and
//! the durable prediction store on reopen.

use std::path::Path;

use anyhow::Result;
use tokenscale_eval::store::{load_run, Shard, Store};
use tokenscale_eval::Dataset;
use tokenscale_fuzz::runner::Target;

use super::{folder, nothing};

const TSV_WORDS: &[&[u8]] = &[
    b"\t", b"\n", b"\r\n", b"index", b"image", b"image_path", b"question", b"hint", b"answer", b"category", b"l2-category",
    b"split", b"\tA\tB\tC\tD", b"['a.png', 'b.png']", b"[\"x\"]", b"iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR4nGM4wRCFFTEMLQkAb+xIgaheCVAAAAAASUVORK5CYII=",
    b"iVBORw0KGgoAAAANSUhEUgAAf/8AAH//CAIAAAA=", b"nan", b"None", b"\"", b"=", b"/9j/4AAQSkZJRg==", b"../../etc/passwd",
];

const PREDICTION_WORDS: &[&[u8]] = &[
    b"index",
    b"prediction",
    b"\"index\"",
    b"\"prediction\"",
    b",",
    b"\t",
    b"\n",
    b"\"",
    b"null",
    b"[]",
    b"{}",
    b"1e400",
    b"PK\x03\x04",
    b"xl/worksheets/sheet1.xml",
    b"<row>",
    b"<c r=\"A1\" t=\"s\">",
    b"<v>4294967295</v>",
];

const SCORE_WORDS: &[&[u8]] = &[
    b"series",
    b"n",
    b"score",
    b"figure",
    b"panel",
    b"benchmark",
    b"n_l",
    b"model",
    b"reducer",
    b"dataset",
    b"metric",
    b"value",
    b"\"value\"",
    b"\"n\"",
    b",",
    b"\n",
    b"nan",
    b"inf",
    b"-inf",
    b"1e309",
    b"[",
    b"]",
    b"null",
];

const STORE_WORDS: &[&[u8]] = &[
    b"\"model\"",
    b"\"reducer\"",
    b"\"n\"",
    b"\"dataset\"",
    b"\"index\"",
    b"\"prediction\"",
    b"\"seconds\"",
    b"\"error\"",
    b"\n",
    b"null",
    b"18446744073709551616",
    b"\"\\ud800\"",
];

pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "tsv_mcq",
            input: "MMBench_DEV_EN.tsv",
            seeds: &[
                "crates/eval/tests/fixtures/eval/MMBench_DEV_EN.tsv",
                "crates/eval/tests/fixtures/eval/OCRVQA_TEST.tsv",
                "crates/fuzz/seeds/tsv",
            ],
            dictionary: TSV_WORDS,
            prepare: image_beside,
            read: read_tsv,
        },
        Target {
            name: "tsv_yes_no",
            input: "MME.tsv",
            seeds: &[
                "crates/eval/tests/fixtures/eval/DocVQA_VAL.tsv",
                "crates/eval/tests/fixtures/eval/ChartQA_TEST.tsv",
                "crates/fuzz/seeds/tsv",
            ],
            dictionary: TSV_WORDS,
            prepare: image_beside,
            read: read_tsv,
        },
        pred("predictions_csv", "MME.pred.csv", &["crates/fuzz/seeds/predictions_csv"]),
        pred("predictions_tsv", "MME.pred.tsv", &["crates/fuzz/seeds/predictions_tsv"]),
        pred(
            "predictions_jsonl",
            "MME.pred.jsonl",
            &[
                "crates/eval/tests/fixtures/eval/MME.pred.jsonl",
                "crates/eval/tests/fixtures/eval/OCRVQA_TEST.pred.jsonl",
            ],
        ),
        pred(
            "predictions_xlsx",
            "MME.pred.xlsx",
            &["crates/eval/tests/fixtures/eval/MME.pred.xlsx"],
        ),
        Target {
            name: "scores_csv",
            input: "scores.csv",
            seeds: &["crates/fuzz/seeds/scores_csv"],
            dictionary: SCORE_WORDS,
            prepare: nothing,
            read: read_scores,
        },
        Target {
            name: "scores_json",
            input: "scores.json",
            seeds: &["crates/fuzz/seeds/scores_json"],
            dictionary: SCORE_WORDS,
            prepare: nothing,
            read: read_scores,
        },
        Target {
            name: "store_reopen",
            input: "run/store/shard-0000-of-0001.jsonl",
            seeds: &["crates/fuzz/seeds/store"],
            dictionary: STORE_WORDS,
            prepare: nothing,
            read: reopen_store,
        },
    ]
}

fn pred(name: &'static str, input: &'static str, seeds: &'static [&'static str]) -> Target {
    Target {
        name,
        input,
        seeds,
        dictionary: PREDICTION_WORDS,
        prepare: nothing,
        read: |p| tokenscale_eval::predfile::read_predictions(p).map(|_| ()),
    }
}

/// The image that meta-only seed rows (`image_path`) name.
fn image_beside(work: &Path) -> Result<()> {
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/image/rgb_5x3.png");
    std::fs::copy(&image, work.join("rgb_5x3.png"))?;
    Ok(())
}

/// The benchmark as `eval` loads it, every image decoded.
fn read_tsv(input: &Path) -> Result<()> {
    let dataset = Dataset::load(input, None)?;
    dataset.check_images()
}

fn read_scores(input: &Path) -> Result<()> {
    tokenscale_law::data::read_scores(input)?;
    Ok(())
}

/// Reopening repairs a torn last line in place, then the run is read as `merge` reads it.
fn reopen_store(input: &Path) -> Result<()> {
    let run = folder(folder(input));
    Store::open(run, Shard::default())?;
    load_run(run)?;
    Ok(())
}
