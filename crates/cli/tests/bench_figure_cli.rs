//! `tokenscale bench` draws bench.svg/.png with the FLOPs model overlaid, and bench.md states the
//! fit and the FLOPs it used, which equal tokenscale-cost's count for the measured prompt.

use std::path::PathBuf;
use std::process::Command;

use tokenscale_cost::read_config;
use tokenscale_cost::timing::first_token_flops;

#[test]
fn bench_draws_time_against_n_with_the_flops_model() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(fixtures.join("preprocess/coffee.png"), images.join("coffee.png")).unwrap();
    let out = tmp.path().join("bench");
    let llava = fixtures.join("llava");
    let o = Command::new(env!("CARGO_BIN_EXE_tokenscale"))
        .args([
            "bench",
            "--model",
            llava.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--vision-tokens",
            "1,16,64",
        ])
        .args([
            "--reducer",
            "pool",
            "--max-new-tokens",
            "2",
            "--repeat",
            "3",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let png = std::fs::read(out.join("bench.png")).unwrap();
    let img = tokenscale_model::image::load_from_memory(&png).unwrap().to_rgb8();
    let background = *img.get_pixel(0, 0);
    assert!(
        img.pixels().filter(|p| **p != background).count()
            > (img.width() * img.height()) as usize / 100,
        "blank figure"
    );
    let svg = std::fs::read_to_string(out.join("bench.svg")).unwrap();
    assert!(
        svg.contains("vision + TTFT") && svg.contains("least squares"),
        "model curve and legend in the SVG"
    );

    // the FLOPs bench.md reports are tokenscale-cost's for the measured prompt length
    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    let line =
        md.lines().find(|l| l.starts_with("Figure bench.svg")).unwrap_or_else(|| panic!("{md}"));
    let first = std::fs::read_to_string(out.join("bench.jsonl"))
        .unwrap()
        .lines()
        .next()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .unwrap();
    let text = first["prompt_tokens"].as_u64().unwrap() - first["n"].as_u64().unwrap();
    let arch = read_config(&llava.join("config.json")).unwrap();
    for n in [1u64, 16, 64] {
        let gflops = first_token_flops(&arch, n, text, Some(tokenscale_cost::Reducer::Pool), None)
            .unwrap() as f64
            / 1e9;
        assert!(
            line.contains(&format!("{n}: {gflops:.3}")),
            "n = {n}: {gflops:.3} GFLOPs not in {line}"
        );
    }
    // (the rate may come out negative on a busy machine with this tiny model: not checked)
    assert!(
        line.contains("fitted by least squares") && line.contains(" s + ") && line.contains("(R² "),
        "{line}"
    );
}
