//! `tokenscale advise` through the binary on the paper's published scores and the LLaVA-1.5-7B
//! config: the cost-table route (`tokenscale cost --format csv`) and the --config route agree, the
//! smallest n equals a scan of the fitted law, bad input gives one `error:` line and no file.

use std::path::PathBuf;
use std::process::{Command, Output};

use tokenscale_law::data::read_scores;
use tokenscale_law::fit::{fit_series, FitOptions};
use tokenscale_law::Law;

fn paper_scores() -> PathBuf {
    // the same file as the design folder's paper-scores.csv
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../law/tests/fixtures/paper-scores.csv")
}

fn llava_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../cost/tests/fixtures/llava-1.5-7b-hf/config.json")
}

fn tokenscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenscale")).args(args).output().expect("binary runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn one_line_error(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn advise_on_the_paper_scores_and_llava_7b() {
    let tmp = tempfile::tempdir().unwrap();
    let cost = tmp.path().join("cost.csv");
    let (scores, config) = (paper_scores(), llava_config());
    let (scores, config, cost_s) =
        (scores.to_str().unwrap(), config.to_str().unwrap(), cost.to_str().unwrap());
    ok(&tokenscale(&[
        "cost",
        "--config",
        config,
        "--vision-tokens",
        "1,16,64,144,256,576",
        "--format",
        "csv",
        "--out",
        cost_s,
    ]));
    let target = ["--benchmark", "Overall@MMStar", "--min-score", "33", "--format", "json"];
    let by_table: serde_json::Value = serde_json::from_str(&ok(&tokenscale(
        &[&["advise", "--scores", scores, "--cost", cost_s][..], &target].concat(),
    )))
    .unwrap();
    let by_config: serde_json::Value = serde_json::from_str(&ok(&tokenscale(
        &[&["advise", "--scores", scores, "--config", config][..], &target].concat(),
    )))
    .unwrap();
    let benches = by_config["benchmarks"].as_array().unwrap();
    assert_eq!(benches.len(), 2, "both figures' MMStar series");
    for (a, b) in benches.iter().zip(by_table["benchmarks"].as_array().unwrap()) {
        assert_eq!(a["target"], b["target"], "same answer from the table and the analytic model");
        assert_eq!(
            a["points"].as_array().unwrap().iter().map(|p| &p["flops"]).collect::<Vec<_>>(),
            b["points"].as_array().unwrap().iter().map(|p| &p["flops"]).collect::<Vec<_>>()
        );
    }

    // question-conditioned MMStar: the first n of 1..=576 where the fitted paper law reaches 33
    let series = read_scores(&paper_scores())
        .unwrap()
        .into_iter()
        .find(|s| s.name == "scaling_fit_vqq/Overall@MMStar")
        .unwrap();
    let fit = fit_series(
        &series.name,
        &series.points,
        &[],
        Law::Paper,
        &FitOptions { bootstrap: 0, ..Default::default() },
    )
    .unwrap();
    let expected = (1..=576u64).find(|&n| fit.eval(n as f64) >= 33.0).unwrap();
    let vqq = &benches[0];
    assert_eq!(vqq["series"], "scaling_fit_vqq/Overall@MMStar");
    let law = &vqq["target"]["by_law"];
    assert_eq!(law["n"].as_u64(), Some(expected));
    assert_eq!(law["extrapolated"], false);
    assert_eq!(vqq["target"]["by_measurement"]["n"], 256);
    // n = 768 is beyond LLaVA's 576 tokens: no cost, off the frontier, said in a note
    let last = vqq["points"].as_array().unwrap().last().unwrap();
    assert!(last["n"] == 768 && last["flops"].is_null() && last["pareto_flops"] == false);
    assert!(vqq["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("n = 768 has no cost")));
    // the vision-query (ft) series never reaches 33 within LLaVA's range: said so
    let ft = &benches[1]["target"];
    assert!(
        ft["by_law"].is_null()
            && ft["summary"].as_str().unwrap().starts_with("no n in 1 … 576 reaches 33"),
        "{ft}"
    );

    // Markdown to a file, all benchmarks of one figure, a FLOPs budget
    let md = tmp.path().join("advice.md");
    ok(&tokenscale(&[
        "advise",
        "--scores",
        scores,
        "--config",
        config,
        "--max-flops",
        "3e12",
        "--law",
        "power",
        "--out",
        md.to_str().unwrap(),
    ]));
    let text = std::fs::read_to_string(&md).unwrap();
    assert_eq!(text.matches("\n## ").count(), 36, "every series of paper-scores.csv");
    assert!(text.contains("best n within it: n = "));
}

#[test]
fn advise_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (scores, config) = (paper_scores(), llava_config());
    let (scores, config) = (scores.to_str().unwrap(), config.to_str().unwrap());
    let out = tmp.path().join("advice.md");
    let out_s = out.to_str().unwrap();
    let o = tokenscale(&[
        "advise",
        "--scores",
        scores,
        "--config",
        config,
        "--benchmark",
        "MMBench",
        "--out",
        out_s,
    ]);
    one_line_error(&o, "benchmark `MMBench`: no series or benchmark of that name");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Overall@MMStar"), "lists the benchmarks");
    let bad = tmp.path().join("cost.csv");
    std::fs::write(&bad, "n,component,macs\n1,total,5\n").unwrap();
    one_line_error(
        &tokenscale(&[
            "advise",
            "--scores",
            scores,
            "--cost",
            bad.to_str().unwrap(),
            "--out",
            out_s,
        ]),
        "no `flops` column",
    );
    one_line_error(
        &tokenscale(&[
            "advise",
            "--scores",
            scores,
            "--config",
            config,
            "--max-latency",
            "2",
            "--out",
            out_s,
        ]),
        "maximum-latency target needs",
    );
    one_line_error(
        &tokenscale(&[
            "advise", "--scores", scores, "--config", config, "--law", "cubic", "--out", out_s,
        ]),
        "--law cubic",
    );
    assert!(!out.exists());
    // exactly one cost source, at most one target (clap's usage errors)
    assert_eq!(tokenscale(&["advise", "--scores", scores]).status.code(), Some(2));
    assert_eq!(
        tokenscale(&[
            "advise",
            "--scores",
            scores,
            "--config",
            config,
            "--min-score",
            "1",
            "--max-flops",
            "1"
        ])
        .status
        .code(),
        Some(2)
    );
}
