//! `tokenscale eval` (sweep on the synthetic benchmark, resume) and `tokenscale probe`
//! (D(n) against a direct computation from the model's hidden states).

use std::path::PathBuf;
use std::process::{Command, Output};
use tokenscale_model::{Forward, ForwardOptions};

use tokenscale_model::checkpoint::load_causal_lm;
use tokenscale_model::{DType, Device, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures")
}

fn tokenscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenscale")).args(args).output().expect("binary runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn eval_sweeps_llava_and_the_query_fused_model_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tokenscale_synth::generate(&tmp.path().join("synth"), 3, 4, 64).unwrap();
    let mcq = data
        .iter()
        .find(|p| p.to_string_lossy().contains("MCQ"))
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let run = tmp.path().join("run");
    let llava = fixtures().join("llava");
    let args = [
        "eval",
        "--model",
        llava.to_str().unwrap(),
        "--data",
        &mcq,
        "--vision-tokens",
        "1,16,576",
        "--reducer",
        "pool",
        "--out",
        run.to_str().unwrap(),
    ];
    let first = ok(&tokenscale(&args));
    assert!(first.contains("12 answered, 0 failed, 0 already stored"), "{first}");
    let again = ok(&tokenscale(&args));
    assert!(again.contains("0 answered, 0 failed, 12 already stored"), "{again}");
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("scores.json")).unwrap()).unwrap();
    for n in [1, 16, 576] {
        assert!(
            scores
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["n"] == n && r["metric"] == "Overall" && r["reducer"] == "pool"),
            "no Overall row for n = {n}"
        );
    }

    let imgque = fixtures().join("imgque");
    let run2 = tmp.path().join("run2");
    let out = ok(&tokenscale(&[
        "eval",
        "--model",
        imgque.to_str().unwrap(),
        "--data",
        &mcq,
        "--vision-tokens",
        "1,8",
        "--out",
        run2.to_str().unwrap(),
    ]));
    assert!(out.contains("8 answered"), "{out}");
    let o = tokenscale(&[
        "eval",
        "--model",
        imgque.to_str().unwrap(),
        "--data",
        &mcq,
        "--vision-tokens",
        "17",
        "--out",
        run2.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("n_l ≤ 16"));
}

#[test]
fn probe_distance_equals_the_hidden_state_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = tmp.path().join("pairs.jsonl");
    let (prompt, chosen, rejected) =
        ("The quick brown fox", " jumps over the lazy dog.", " sleeps under the big tree.");
    std::fs::write(
        &pairs,
        serde_json::json!({"prompt": prompt, "chosen": chosen, "rejected": rejected}).to_string(),
    )
    .unwrap();
    let dir = fixtures().join("llama_gqa");
    let out = tmp.path().join("probe");
    ok(&tokenscale(&[
        "probe",
        "--model",
        dir.to_str().unwrap(),
        "--pairs",
        pairs.to_str().unwrap(),
        "--max-len",
        "32",
        "--out",
        out.to_str().unwrap(),
        "--no-figures",
    ]));
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("probe.json")).unwrap()).unwrap();

    // The same quantity straight from the model: last-layer states of the diverging positions.
    let llm = load_causal_lm(&dir, DType::F32, &Device::Cpu).unwrap();
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let ids = |s: String| tok.encode(s, true).unwrap().get_ids().to_vec();
    let (a, b) = (ids(format!("{prompt}{chosen}")), ids(format!("{prompt}{rejected}")));
    let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let n = a.len().min(b.len()) - shared;
    let last = |ids: &[u32]| -> Vec<Vec<f32>> {
        let t = Tensor::new(&ids[..shared + n], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let out = llm
            .forward_ids(
                &Forward::INFERENCE,
                &t,
                &mut llm.new_cache(),
                ForwardOptions::LAST.with_hidden_states(),
            )
            .unwrap();
        out.hidden_states.last().unwrap().squeeze(0).unwrap().to_vec2().unwrap()
    };
    let (ha, hb) = (last(&a), last(&b));
    let rows = stats["rows"].as_array().unwrap();
    assert_eq!(rows.len(), n);
    let mut sum = vec![0f64; ha[0].len()];
    for (i, row) in rows.iter().enumerate() {
        for (s, (x, y)) in sum.iter_mut().zip(ha[shared + i].iter().zip(&hb[shared + i])) {
            *s += (*x - *y) as f64;
        }
        let d = sum.iter().map(|v| v * v).sum::<f64>().sqrt();
        let got = row["d_mean"].as_f64().unwrap();
        assert!((got - d).abs() <= 1e-4 * d.max(1.0), "D({}) = {got}, direct {d}", i + 1);
    }
    assert!(out.join("bound.json").is_file());
}

#[test]
fn bench_times_every_image_and_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for name in ["coffee.png", "chelsea.png"] {
        std::fs::copy(fixtures().join("preprocess").join(name), images.join(name)).unwrap();
    }
    let out = tmp.path().join("bench");
    let llava = fixtures().join("llava");
    ok(&tokenscale(&[
        "bench",
        "--model",
        llava.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--vision-tokens",
        "4,64",
        "--reducer",
        "uniform",
        "--max-new-tokens",
        "5",
        "--repeat",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]));
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(out.join("bench.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2 * 2 * 2);
    for r in &rows {
        assert_eq!(r["new_tokens"], 5, "decoding runs to max_new_tokens");
        assert!(r["ttft_s"].as_f64().unwrap() > 0.0 && r["vision_s"].as_f64().unwrap() > 0.0);
    }
    let prompt =
        |n: u64| rows.iter().find(|r| r["n"] == n).unwrap()["prompt_tokens"].as_u64().unwrap();
    assert_eq!(prompt(64) - prompt(4), 60, "the prompt grows by exactly the extra vision tokens");
    assert!(std::fs::read_to_string(out.join("bench.md")).unwrap().contains("| 64 |"));
}
