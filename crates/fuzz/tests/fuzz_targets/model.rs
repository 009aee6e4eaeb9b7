//! Readers of checkpoint folders: safetensors files and indexes, config.json of every supported
//! model_type, tokenizer.json, conversation records and images.

use std::path::Path;

use anyhow::Result;
use tokenscale_fuzz::runner::Target;
use tokenscale_model::candle_core::{DType, Device};
use tokenscale_model::checkpoint::load_clip_vision;
use tokenscale_model::runtime::Runtime;
use tokenscale_model::weights::Weights;

use super::{copy_fixture, folder, nothing};

const SAFETENSORS_WORDS: &[&[u8]] = &[
    b"\"dtype\"",
    b"\"shape\"",
    b"\"data_offsets\"",
    b"\"F32\"",
    b"\"BF16\"",
    b"\"F16\"",
    b"\"I64\"",
    b"\"__metadata__\"",
    b"[4294967296, 4294967296]",
    b"[0, 18446744073709551615]",
    b"[1000000, 1000000, 1000000]",
    b"{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
];

const CONFIG_WORDS: &[&[u8]] = &[
    b"\"model_type\"",
    b"\"llava\"",
    b"\"llama\"",
    b"\"qwen2\"",
    b"\"mistral\"",
    b"\"clip\"",
    b"\"clip_vision_model\"",
    b"\"modeling_query_adapt_clip_llm\"",
    b"\"hidden_size\"",
    b"\"intermediate_size\"",
    b"\"num_attention_heads\"",
    b"\"num_key_value_heads\"",
    b"\"num_hidden_layers\"",
    b"\"vocab_size\"",
    b"\"max_position_embeddings\"",
    b"\"head_dim\"",
    b"\"image_size\"",
    b"\"patch_size\"",
    b"\"rope_theta\"",
    b"\"rope_scaling\"",
    b"\"vision_config\"",
    b"\"text_config\"",
    b"\"llm_config\"",
    b"\"imgque_config\"",
    b"\"length_que_end\"",
    b"\"length_que_end_short\"",
    b"\"image_token_index\"",
    b"\"vision_feature_layer\"",
    b"\"torch_dtype\"",
    b"null",
    b"-1",
    b"0",
    b"4294967296",
    b"1e300",
    b"[]",
    b"{}",
];

const TOKENIZER_WORDS: &[&[u8]] = &[
    b"\"model\"",
    b"\"vocab\"",
    b"\"merges\"",
    b"\"added_tokens\"",
    b"\"pre_tokenizer\"",
    b"\"normalizer\"",
    b"\"decoder\"",
    b"\"post_processor\"",
    b"\"type\"",
    b"\"BPE\"",
    b"\"WordPiece\"",
    b"\"Unigram\"",
    b"\"WordLevel\"",
    b"\"ByteLevel\"",
    b"\"Split\"",
    b"\"Regex\"",
    b"\"pattern\"",
    b"\"id\"",
    b"\"content\"",
    b"\"special\"",
    b"4294967295",
    b"\"(?<=a)\"",
    b"\"[\"",
];

const RECORD_WORDS: &[&[u8]] = &[
    b"\"image\"",
    b"\"messages\"",
    b"\"role\"",
    b"\"content\"",
    b"\"user\"",
    b"\"assistant\"",
    b"\"system\"",
    b"\"type\"",
    b"\"value\"",
    b"\"text\"",
    b"null",
    b"\"none\"",
    b"[]",
    b"{}",
    b"\"../../../etc/passwd\"",
];

const IMAGE_WORDS: &[&[u8]] = &[
    b"IHDR",
    b"IDAT",
    b"IEND",
    b"PLTE",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03",
    b"\x00\x00\xff\xff\x00\x00\xff\xff",
    b"\x7f\xff\xff\xff\x7f\xff\xff\xff",
    b"\xff\xd9",
    b"\xff\xda",
];

pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "safetensors",
            input: "model/model.safetensors",
            seeds: &[
                "crates/fuzz/seeds/safetensors",
                "crates/model/tests/fixtures/bf16/llava.safetensors",
            ],
            dictionary: SAFETENSORS_WORDS,
            prepare: nothing,
            read: read_weights,
        },
        Target {
            name: "safetensors_index",
            input: "model/model.safetensors.index.json",
            seeds: &["crates/fuzz/seeds/safetensors_index"],
            dictionary: &[
                b"\"weight_map\"",
                b"\"metadata\"",
                b"\"total_size\"",
                b"\"model-00001-of-00002.safetensors\"",
                b"\"../x\"",
                b"\"\"",
            ],
            prepare: shards_for_index,
            read: read_weights,
        },
        Target {
            name: "config_llava",
            input: "model/config.json",
            seeds: &[
                "crates/model/tests/fixtures/llava/config.json",
                "crates/fuzz/seeds/config_llava",
            ],
            dictionary: CONFIG_WORDS,
            prepare: |w| {
                copy_fixture("crates/model/tests/fixtures/llava", &w.join("model"), "config.json")
            },
            read: load_runtime,
        },
        Target {
            name: "config_imgque",
            input: "model/config.json",
            seeds: &[
                "crates/model/tests/fixtures/imgque/config.json",
                "crates/fuzz/seeds/config_imgque",
            ],
            dictionary: CONFIG_WORDS,
            prepare: |w| {
                copy_fixture("crates/model/tests/fixtures/imgque", &w.join("model"), "config.json")
            },
            read: load_runtime,
        },
        Target {
            name: "config_llama",
            input: "model/config.json",
            seeds: &[
                "crates/model/tests/fixtures/llama_gqa/config.json",
                "crates/model/tests/fixtures/llama3/config.json",
            ],
            dictionary: CONFIG_WORDS,
            prepare: |w| {
                copy_fixture(
                    "crates/model/tests/fixtures/llama_gqa",
                    &w.join("model"),
                    "config.json",
                )
            },
            read: load_runtime,
        },
        Target {
            name: "config_qwen2",
            input: "model/config.json",
            seeds: &["crates/model/tests/fixtures/qwen2/config.json"],
            dictionary: CONFIG_WORDS,
            prepare: |w| {
                copy_fixture("crates/model/tests/fixtures/qwen2", &w.join("model"), "config.json")
            },
            read: load_runtime,
        },
        Target {
            name: "config_mistral",
            input: "model/config.json",
            seeds: &["crates/fuzz/seeds/config_mistral"],
            dictionary: CONFIG_WORDS,
            prepare: |w| {
                copy_fixture(
                    "crates/model/tests/fixtures/llama_gqa",
                    &w.join("model"),
                    "config.json",
                )
            },
            read: load_runtime,
        },
        Target {
            name: "config_clip",
            input: "model/config.json",
            seeds: &[
                "crates/model/tests/fixtures/clip_vision/config.json",
                "crates/model/tests/fixtures/clip_full/config.json",
            ],
            dictionary: CONFIG_WORDS,
            prepare: |w| {
                copy_fixture(
                    "crates/model/tests/fixtures/clip_vision",
                    &w.join("model"),
                    "config.json",
                )
            },
            read: load_clip,
        },
        Target {
            name: "tokenizer",
            input: "tokenizer.json",
            seeds: &["models/tiny-imgque/tokenizer.json", "models/tiny-imgque/clip/tokenizer.json"],
            dictionary: TOKENIZER_WORDS,
            prepare: nothing,
            read: read_tokenizer,
        },
        Target {
            name: "chat_record",
            input: "record.json",
            seeds: &["crates/fuzz/seeds/chat_record"],
            dictionary: RECORD_WORDS,
            prepare: nothing,
            read: |p| tokenscale_model::chat::read_record_file(p).map(|_| ()),
        },
        Target {
            name: "image",
            input: "image.png",
            seeds: &[
                "crates/fuzz/seeds/image",
                "crates/model/tests/fixtures/original/30x20_n4_t3.png",
            ],
            dictionary: IMAGE_WORDS,
            prepare: nothing,
            read: |p| tokenscale_model::preprocess::load_image(p).map(|_| ()),
        },
    ]
}

/// Every tensor of the folder's checkpoint read and converted, as a model load does.
fn read_weights(input: &Path) -> Result<()> {
    let weights = Weights::from_dir(folder(input), DType::F32, &Device::Cpu)?;
    for key in weights.all_keys().to_vec() {
        weights.get_unchecked(&key)?;
    }
    Ok(())
}

/// Two small shards beside the fuzzed index (the seeds name them).
fn shards_for_index(work: &Path) -> Result<()> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/safetensors");
    std::fs::create_dir_all(work.join("model"))?;
    std::fs::copy(
        seeds.join("two_f32.safetensors"),
        work.join("model/model-00001-of-00002.safetensors"),
    )?;
    std::fs::copy(
        seeds.join("bf16_and_i64.safetensors"),
        work.join("model/model-00002-of-00002.safetensors"),
    )?;
    Ok(())
}

fn load_runtime(input: &Path) -> Result<()> {
    Runtime::load(folder(input), DType::F32, &Device::Cpu).map(|_| ())
}

fn load_clip(input: &Path) -> Result<()> {
    load_clip_vision(folder(input), DType::F32, &Device::Cpu).map(|_| ())
}

fn read_tokenizer(input: &Path) -> Result<()> {
    let tokenizer = tokenscale_model::tokenizer::Tokenizer::from_file(input)?;
    let ids = tokenizer.encode("USER: <image>\nWhat is shown? ASSISTANT: a cat, 42 ü", true)?;
    tokenizer.decode(&ids, false)?;
    Ok(())
}
