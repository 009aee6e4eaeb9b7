//! Hand-derived checks of the analytic model: LLaVA-1.5-7B's published shapes, FastV, errors,
//! output formats.

use std::path::{Path, PathBuf};

use tokenscale_cost::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn llava7b() -> Arch {
    read_config(&fixtures().join("llava-1.5-7b-hf/config.json")).unwrap()
}

fn row(rows: &[Row], c: &str) -> Row {
    rows.iter().find(|r| r.component == c).unwrap_or_else(|| panic!("no row {c}")).clone()
}

#[test]
fn llava_7b_parameter_count() {
    let rows = cost(&llava7b(), 576, &Workload::default()).unwrap();
    // CLIP ViT-L/14-336 vision tower as stored in llava-hf (24 layers + post_layernorm)
    assert_eq!(row(&rows, "vision_tower").params, 303_507_456);
    // 1024→4096→4096 with biases
    assert_eq!(row(&rows, "projector").params, 20_979_712);
    // Vicuna-7B (Llama-2-7B shape) with the 32064-token vocabulary: 6_738_415_616 + 2·64·4096
    assert_eq!(row(&rows, "llm_prefill").params, 6_738_939_904);
    assert_eq!(row(&rows, "total").params, 7_063_427_072);
}

#[test]
fn llava_7b_prefill_by_hand() {
    let w = Workload { text_tokens: 64, new_tokens: 0, ..Workload::default() };
    let rows = cost(&llava7b(), 576, &w).unwrap();
    let p: u64 = 640;
    let (h, i, v, layers) = (4096u64, 11008u64, 32064u64, 32u64);
    let per_layer = 4 * p * h * h + 2 * p * p * h + 3 * p * h * i;
    assert_eq!(row(&rows, "llm_prefill").macs, layers * per_layer + h * v);
    // CLIP: 23 of 24 layers over 577 tokens + the 14×14 patch conv
    let t: u64 = 577;
    let clip = 576 * 1024 * 3 * 14 * 14
        + 23 * (4 * t * 1024 * 1024 + 2 * t * t * 1024 + 2 * t * 1024 * 4096);
    assert_eq!(row(&rows, "vision_tower").macs, clip);
    assert_eq!(row(&rows, "projector").macs, 576 * (1024 * 4096 + 4096 * 4096));
    // bf16 KV cache: 2 · 32 layers · 4096 · 2 bytes = 512 KiB per position
    assert_eq!(row(&rows, "llm_prefill").kv_cache_bytes, 640 * 524_288);
}

#[test]
fn fewer_tokens_cost_less_and_decode_grows() {
    let w = Workload { text_tokens: 64, new_tokens: 16, ..Workload::default() };
    let a = cost(&llava7b(), 64, &w).unwrap();
    let b = cost(&llava7b(), 576, &w).unwrap();
    assert_eq!(row(&a, "vision_tower").macs, row(&b, "vision_tower").macs);
    assert!(row(&a, "llm_prefill").macs < row(&b, "llm_prefill").macs);
    assert!(row(&a, "llm_decode").macs < row(&b, "llm_decode").macs);
    assert_eq!(row(&b, "total").kv_cache_bytes, (64 + 576 + 16) * 524_288);
    assert_eq!(
        row(&b, "total").macs,
        b.iter().filter(|r| r.component != "total").map(|r| r.macs).sum::<u64>()
    );
}

#[test]
fn fastv_prunes_after_layer_k() {
    let arch = llava7b();
    let Arch::Llava(s) = &arch else { panic!() };
    let base = Workload { text_tokens: 64, new_tokens: 4, ..Workload::default() };
    let fast = Workload { reducer: Some(Reducer::FastV { layer: 2 }), ..base.clone() };
    let rows = cost(&arch, 64, &fast).unwrap();
    let full = 640u64;
    let kept = 128u64;
    let lens: Vec<u64> = (0..32).map(|i| if i < 2 { full } else { kept }).collect();
    let spans: Vec<LayerSpan> = lens.iter().map(|&p| (p, p)).collect();
    assert_eq!(row(&rows, "llm_prefill").macs, llm_pass_macs(&s.llm, &spans, 1));
    let decode: u64 = (1..=4)
        .map(|i| llm_pass_macs(&s.llm, &lens.iter().map(|&p| (1, p + i)).collect::<Vec<_>>(), 1))
        .sum();
    assert_eq!(row(&rows, "llm_decode").macs, decode);
    // the projector still maps all 576 tokens; the vision tower is unchanged
    assert_eq!(row(&rows, "projector").macs, 576 * (1024 * 4096 + 4096 * 4096));
    assert_eq!(row(&rows, "llm_prefill").kv_cache_bytes, (2 * full + 30 * kept) * 2 * 4096 * 2);
    // at n = 576 FastV keeps everything: same as no reducer
    assert_eq!(cost(&arch, 576, &fast).unwrap(), cost(&arch, 576, &base).unwrap());
    // pool/uniform/visionzip change only the LLM sequence: same as no reducer
    let pool = Workload { reducer: Some(Reducer::Pool), ..base.clone() };
    assert_eq!(cost(&arch, 64, &pool).unwrap(), cost(&arch, 64, &base).unwrap());
    assert!(
        cost(&arch, 64, &Workload { reducer: Some(Reducer::FastV { layer: 33 }), ..base }).is_err()
    );
}

#[test]
fn dtypes_scale_kv_bytes() {
    let arch = llava7b();
    let f32 = cost(&arch, 576, &Workload { dtype: Dtype::F32, ..Workload::default() }).unwrap();
    let f16 = cost(&arch, 576, &Workload { dtype: Dtype::F16, ..Workload::default() }).unwrap();
    assert_eq!(row(&f32, "total").kv_cache_bytes, 2 * row(&f16, "total").kv_cache_bytes);
    assert_eq!(
        row(&f32, "total").peak_activation_bytes,
        2 * row(&f16, "total").peak_activation_bytes
    );
    assert_eq!(row(&f32, "total").macs, row(&f16, "total").macs);
}

#[test]
fn out_of_range_and_bad_configs_name_the_problem() {
    let arch = llava7b();
    let e = cost(&arch, 577, &Workload::default()).unwrap_err().to_string();
    assert!(e.contains("576"), "{e}");
    let e = cost(&arch, 576, &Workload { text_tokens: 4000, ..Workload::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_position_embeddings"), "{e}");
    let e = cost(&arch, 0, &Workload::default()).unwrap_err().to_string();
    assert!(e.contains("n = 0"), "{e}");

    let bad = serde_json::json!({"model_type": "llava", "text_config": {"hidden_size": "big"}});
    let e = parse_config(&bad, "x/config.json").unwrap_err().to_string();
    assert!(e.starts_with("x/config.json: field `text_config.hidden_size`"), "{e}");
    assert!(!e.contains('\n'));
    let bad = serde_json::json!({"model_type": "modeling_query_adapt_clip_llm", "imgque_config": {}, "llm_config": {}});
    let e = parse_config(&bad, "c.json").unwrap_err().to_string();
    assert!(e.contains("`imgque_vocab_size`"), "{e}");
    let e =
        parse_config(&serde_json::json!({"model_type": "gpt2"}), "c.json").unwrap_err().to_string();
    assert!(e.contains("`model_type`") && e.contains("gpt2"), "{e}");
    let e = parse_config(
        &serde_json::json!({"model_type": "llama", "num_key_value_heads": 5}),
        "c.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("num_key_value_heads"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(&p, "{not json").unwrap();
    let e = read_config(&p).unwrap_err().to_string();
    assert!(e.contains("config.json: invalid JSON"), "{e}");
}

#[test]
fn imgque_defaults_and_limits() {
    // a published-shape imgque: CLIP-L/14-336, 12-layer query decoder, Vicuna-7B
    let cfg = serde_json::json!({
        "model_type": "modeling_query_adapt_clip_llm",
        "imgque_vocab_size": 49408 + 255,
        "append_special_padding": true,
        "imgque_config": {"num_hidden_layers": 12, "vision_config": {"hidden_size": 1024, "intermediate_size": 4096,
            "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14}},
        "llm_config": {"model_type": "llama", "max_position_embeddings": 4096}
    });
    let arch = parse_config(&cfg, "c.json").unwrap();
    let Arch::ImgQue(s) = &arch else { panic!() };
    assert_eq!(s.tokens_per_crop(), 145);
    assert_eq!(s.default_crops(), 17);
    assert_eq!((s.decoder.heads, s.decoder.head_dim, s.decoder.intermediate), (16, 64, 4096));
    let rows = cost(&arch, 256, &Workload::default()).unwrap();
    let len = 17 * 145 + 256;
    let spans = vec![(len, len); 12];
    assert_eq!(row(&rows, "query_decoder").macs, llm_pass_macs(&s.decoder, &spans, 0));
    assert_eq!(row(&rows, "hd_merge").macs, 17 * 144 * 1024 * 1024 * 9);
    assert_eq!(row(&rows, "vision_tower").macs, 17 * clip_macs_per_crop(&s.vision, 24));
    assert_eq!(row(&rows, "projector").macs, 256 * 1024 * 4096);
    assert!(cost(&arch, 257, &Workload::default()).unwrap_err().to_string().contains("n ≤ 256"));
    assert!(
        cost(&arch, 8, &Workload { reducer: Some(Reducer::Pool), ..Workload::default() }).is_err()
    );
}

#[test]
fn formats() {
    let rows = table(&llava7b(), &[1, 576], &Workload::default()).unwrap();
    assert_eq!(rows.iter().filter(|r| r.component == "total").count(), 2);
    let json: serde_json::Value = serde_json::from_str(&to_json(&rows)).unwrap();
    let first = &json.as_array().unwrap()[0];
    for k in ["n", "component", "params", "macs", "flops", "kv_cache_bytes"] {
        assert!(first.get(k).is_some(), "{k}");
    }
    let csv = to_csv(&rows);
    assert_eq!(csv.lines().count(), rows.len() + 1);
    assert!(csv.starts_with("n,component,params,macs,flops,kv_cache_bytes"));
    let md = to_markdown(&rows, Dtype::Bf16);
    assert!(md.contains("**total**") && md.contains("| 576 |"));
    assert_eq!(human(7_063_427_072), "7.063 G");
    assert_eq!(human_bytes(1 << 20), "1.00 MiB");
    assert_eq!(parse_list("1, 64,576").unwrap(), vec![1, 64, 576]);
    assert!(parse_list("1,x").is_err());
}
