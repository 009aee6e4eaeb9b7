//! `tokenscale eval` → `tokenscale fit` (and `advise`): eval's scores.json / scores.csv read
//! natively, one series per (model, reducer, dataset, split, category, metric) and one point per n
//! in each; rows that would pool two series are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tokenscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenscale")).args(args).output().expect("binary runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn shipped_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny-imgque")
}

const NS: [f64; 3] = [1.0, 4.0, 16.0];

/// The fitted series of fits.json with the n of their points (one residual row per point).
fn fitted_series(out: &Path) -> BTreeMap<String, Vec<f64>> {
    let fits: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("fits.json")).unwrap()).unwrap();
    let mut series = BTreeMap::new();
    for f in fits {
        let ns: Vec<f64> = f["residuals"]
            .as_array()
            .unwrap_or_else(|| panic!("no residuals in {f}"))
            .iter()
            .map(|p| p["n"].as_f64().unwrap())
            .collect();
        series.insert(f["series"].as_str().unwrap().to_string(), ns);
    }
    series
}

#[test]
fn eval_output_fits_one_point_per_n_per_series() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = tmp.path().join("synth");
    ok(&tokenscale(&[
        "synth",
        "--out",
        synth.to_str().unwrap(),
        "--items",
        "30",
        "--mix",
        "yorn=0",
    ]));
    let mut tsvs: Vec<String> = std::fs::read_dir(&synth)
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    tsvs.sort();
    assert_eq!(tsvs.len(), 2, "{tsvs:?}");
    let run = tmp.path().join("run");
    let model = shipped_model();
    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--vision-tokens",
        "1,4,16",
        "--out",
        run.to_str().unwrap(),
    ];
    for t in &tsvs {
        args.extend(["--data", t.as_str()]);
    }
    ok(&tokenscale(&args));
    let datasets: BTreeSet<String> = tsvs
        .iter()
        .map(|t| Path::new(t).file_stem().unwrap().to_string_lossy().into_owned())
        .collect();

    for table in ["scores.csv", "scores.json"] {
        let out = tmp.path().join(format!("fit-{table}"));
        let stderr = ok(&tokenscale(&[
            "fit",
            run.join(table).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--bootstrap",
            "0",
            "--laws",
            "power,loglinear",
        ]));
        let series = fitted_series(&out);
        let errors: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(out.join("fit_errors.json")).unwrap())
                .unwrap();
        let unfitted: BTreeSet<&str> =
            errors.iter().map(|e| e["series"].as_str().unwrap()).collect();
        assert!(!series.is_empty(), "{stderr}");
        for (name, ns) in &series {
            assert_eq!(ns, &NS, "{table}: series {name} has n = {ns:?}");
            assert!(!name.contains("category="), "{table}: category row {name} fitted by default");
        }
        // Every dataset is its own series (fitted, or reported as unfittable), never pooled.
        for d in &datasets {
            assert!(
                series
                    .keys()
                    .map(String::as_str)
                    .chain(unfitted.iter().copied())
                    .any(|s| s.ends_with(&format!("Overall@{d}"))),
                "{table}: no Overall series for {d}: {series:?}"
            );
        }
    }

    // Categories on request: more series, still one point per n each.
    let out = tmp.path().join("fit-categories");
    ok(&tokenscale(&[
        "fit",
        run.join("scores.csv").to_str().unwrap(),
        "--categories",
        "--out",
        out.to_str().unwrap(),
        "--bootstrap",
        "0",
        "--laws",
        "power",
        "--no-figures",
    ]));
    let with_categories = fitted_series(&out);
    assert!(with_categories.keys().any(|s| s.contains("category=")), "{with_categories:?}");
    assert!(with_categories.values().all(|ns| ns == &NS));

    // One dataset's overall accuracy alone.
    let first = datasets.iter().next().unwrap();
    let out = tmp.path().join("fit-one");
    let select = format!("dataset={first},metric=Overall");
    ok(&tokenscale(&[
        "fit",
        run.join("scores.json").to_str().unwrap(),
        "--select",
        &select,
        "--out",
        out.to_str().unwrap(),
        "--bootstrap",
        "0",
        "--laws",
        "loglinear",
        "--no-figures",
    ]));
    let fits: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("fits.json")).unwrap()).unwrap();
    let errors: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("fit_errors.json")).unwrap())
            .unwrap();
    let names: BTreeSet<&str> =
        fits.iter().chain(&errors).map(|f| f["series"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 1, "{names:?}");

    // An unknown column is one clear error line.
    let o = tokenscale(&[
        "fit",
        run.join("scores.csv").to_str().unwrap(),
        "--select",
        "colour=red",
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("`colour`") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn a_table_that_pools_two_series_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("pooled.csv");
    // model,n,score without the dataset column: both datasets' rows land in one series.
    std::fs::write(&csv, "model,n,score\nm,1,0.2\nm,1,0.3\nm,4,0.5\nm,4,0.6\n").unwrap();
    let out = tmp.path().join("out");
    let o = tokenscale(&["fit", csv.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("series `m` has several points at n = 1, 4"), "{stderr}");
    assert!(!out.exists());
}
