//! The synthetic benchmark as VLMEvalKit TSVs: read back by the dataset reader with the right
//! kinds, the same prompts and images as in memory, per-category and per-subtask scores.

use std::collections::BTreeMap;
use std::path::PathBuf;
use tokenscale_eval::prompt::{build_prompt, PromptStyle};
use tokenscale_eval::report::score_records;
use tokenscale_eval::store::Record;
use tokenscale_eval::{Dataset, Kind, ScoreOptions};
use tokenscale_synth::{item_with, prompt_for, write_benchmark, ItemKind, Mix, Split, SynthItem};

fn regenerate(kind: Kind, index: &str) -> SynthItem {
    let kind = ItemKind::ALL.into_iter().find(|k| k.eval_kind() == kind).unwrap();
    item_with(Split::Test, index.parse().unwrap(), &Mix::default().only_kind(kind))
}

fn written(count: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let tmp = tempfile::tempdir().unwrap();
    let paths =
        write_benchmark(&tmp.path().join("bench"), Split::Test, count, &Mix::default()).unwrap();
    (tmp, paths)
}

#[test]
fn files_read_back_as_the_items_in_memory() {
    let (tmp, paths) = written(40);
    let names: Vec<String> =
        paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["SYNTH_MCQ_TEST.tsv", "SYNTH_YORN_TEST.tsv", "SYNTH_VQA_TEST.tsv"]);
    let mut indices = std::collections::HashSet::new();
    for (path, kind) in paths.iter().zip([Kind::Mcq, Kind::Yorn, Kind::Vqa]) {
        let ds = Dataset::load(path, None).unwrap();
        assert_eq!(ds.kind, kind, "{}", path.display());
        assert_eq!(ds.items.len(), 40);
        assert!(ds.has_column("category") && ds.has_column("subtask"));
        for row in &ds.items {
            assert!(indices.insert(row.index.clone()), "index {} in two files", row.index);
            let it = regenerate(kind, &row.index);
            assert_eq!(
                build_prompt(row, kind, PromptStyle::Default),
                prompt_for(&it),
                "{}",
                row.index
            );
            assert_eq!(row.decode_images().unwrap()[0].to_rgb8(), it.image);
            assert_eq!(row.category.as_deref(), Some(it.category.as_str()));
            assert_eq!(row.extra.get("subtask").map(String::as_str), Some(it.subtask));
            let want = match kind {
                Kind::Yorn => {
                    vec![if it.answer == "yes" { "Yes".to_string() } else { "No".to_string() }]
                }
                Kind::Vqa => vec![it.answer.clone(); 10],
                _ => vec![it.answer.clone()],
            };
            assert_eq!(row.answers(), want);
        }
    }
    // The same call writes the same bytes.
    let again =
        write_benchmark(&tmp.path().join("again"), Split::Test, 40, &Mix::default()).unwrap();
    for (a, b) in paths.iter().zip(&again) {
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }
}

fn score(
    datasets: &[Dataset],
    predict: impl Fn(&SynthItem) -> String,
) -> BTreeMap<(String, String), f64> {
    let mut records = Vec::new();
    for ds in datasets {
        for row in &ds.items {
            let prediction = predict(&regenerate(ds.kind, &row.index));
            let (model, reducer, n, dataset, index) =
                ("m".into(), "r".into(), 1, ds.name.clone(), row.index.clone());
            records.push(Record {
                model,
                reducer,
                n,
                dataset,
                index,
                prediction,
                seconds: 0.0,
                error: None,
            });
        }
    }
    score_records(datasets, &records, ScoreOptions::default())
        .unwrap()
        .into_iter()
        .map(|r| ((r.dataset, r.category.unwrap_or_default()), r.value))
        .collect()
}

#[test]
fn scores_split_by_category_and_subtask() {
    let (_tmp, paths) = written(60);
    let datasets: Vec<Dataset> = paths.iter().map(|p| Dataset::load(p, None).unwrap()).collect();
    // A model that always answers right: every group is perfect (MCQ in fractions, others ×100).
    let perfect = score(&datasets, |it| it.answer.clone());
    for ((dataset, group), value) in &perfect {
        let full = if dataset.starts_with("SYNTH_MCQ") { 1.0 } else { 100.0 };
        assert_eq!(*value, full, "{dataset} {group:?}");
    }
    for ds in &datasets {
        for group in ["", "coarse", "fine", "subtask=cell_colour", "subtask=border"] {
            assert!(
                perfect.contains_key(&(ds.name.clone(), group.to_string())),
                "{} has no {group:?} row",
                ds.name
            );
        }
    }
    // Always "yes": each subtask scores its share of yes answers.
    let yorn = &datasets[1];
    let yes = score(std::slice::from_ref(yorn), |_| "yes".into());
    let mut shares: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for row in &yorn.items {
        let e = shares.entry(row.extra["subtask"].clone()).or_default();
        e.0 += (row.answer.as_deref() == Some("Yes")) as usize;
        e.1 += 1;
    }
    for (subtask, (hits, total)) in shares {
        let got = yes[&(yorn.name.clone(), format!("subtask={subtask}"))];
        assert!((got - 100.0 * hits as f64 / total as f64).abs() < 1e-9, "{subtask}: {got}");
    }
}

#[test]
fn bad_requests_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bench");
    let e = write_benchmark(&dir, Split::Val, 0, &Mix::default()).unwrap_err();
    assert!(e.to_string().contains("count is 0"), "{e}");
    assert!(!dir.exists());
    // A folder where the Y/N file belongs: nothing is written, not even the MCQ file.
    std::fs::create_dir_all(dir.join("SYNTH_YORN_VAL.tsv")).unwrap();
    let e = write_benchmark(&dir, Split::Val, 3, &Mix::default()).unwrap_err();
    assert!(format!("{e:#}").contains("SYNTH_YORN_VAL.tsv"), "{e:#}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["SYNTH_YORN_VAL.tsv"]);
    // A file where the folder belongs.
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(write_benchmark(&file, Split::Val, 3, &Mix::default()).is_err());
    // Only the kinds the mix asks for.
    let only = write_benchmark(
        &tmp.path().join("vqa"),
        Split::Val,
        2,
        &Mix::parse("mcq=0,yorn=0").unwrap(),
    )
    .unwrap();
    assert_eq!(only.len(), 1);
    assert!(only[0].ends_with("SYNTH_VQA_VAL.tsv"));
}
