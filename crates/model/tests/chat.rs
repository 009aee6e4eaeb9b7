//! Chat parsing: templates, per-segment tokenisation, QED / IMG slots and the query row against
//! fixtures from tools/fixtures/chat/make_chat_fixtures.py (a Python re-implementation of
//! the original's segment rules, tokenised with the Python `tokenizers`), plus token types and bad
//! records.

mod common;

use std::path::{Path, PathBuf};

use common::LlmRowCase;

use serde::Deserialize;
use tokenscale_model::chat::token_type::*;
use tokenscale_model::chat::{
    image_token_id, parse_any_record, parse_chat_jsonl, parse_chat_record, parse_simple_record,
    parse_vlmeval_message, record_shape, resolve_token_id, validate_query_lengths,
    ChatAndQueryParser, ChatParser, ChatTemplate, Conversation, QueryParser, RecordShape, Role,
    TEMPLATE_NAMES,
};
use tokenscale_model::tokenizer::Tokenizer;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn llm_tokenizer(name: &str) -> Tokenizer {
    let p = match name {
        "llama_gqa" => fixtures().join("llama_gqa/tokenizer.json"),
        "llm_special" => fixtures().join("chat/llm_special_tokenizer.json"),
        other => panic!("unknown tokenizer {other}"),
    };
    Tokenizer::from_file(&p).unwrap()
}

fn clip_tokenizer() -> Tokenizer {
    Tokenizer::from_file(&fixtures().join("chat/clip_tokenizer.json")).unwrap()
}

#[derive(Deserialize)]
struct Expected {
    clip: ClipInfo,
    chat: Vec<ChatCase>,
    query: Vec<QueryCase>,
}

#[derive(Deserialize)]
struct ClipInfo {
    vocab_size: usize,
    eos_id: u32,
}

#[derive(Deserialize)]
struct ChatCase {
    #[serde(flatten)]
    row: LlmRowCase,
    mode: String,
    num_img_tokens: usize,
    img_token_id: u32,
}

#[derive(Deserialize)]
struct QueryCase {
    name: String,
    questions: Vec<String>,
    n_l: usize,
    n_s: usize,
    append_special_padding: bool,
    drop_query: bool,
    fill_ends: usize,
    input_ids: Vec<u32>,
    input_tps: Vec<u32>,
    attention_mask: Vec<u32>,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixtures().join("chat/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn token_type_flags() {
    assert_eq!(
        [PAD, INST, SYS, IMG, QUE, ANS, BOS, EOS, QED, TXT],
        [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    );
    assert_eq!(
        [CTL, QUE_ANS, ANS_EOS, IMG_QED, QUE_QED, QUE_ANS_EOS, QED_EOS, QED_ANS_EOS],
        [199, 48, 160, 264, 272, 176, 384, 416]
    );
    // constants_test.py: is_ctl equals the explicit OR, over every combination of the 10 bits.
    for t in 0u32..1024 {
        let explicit =
            t & PAD != 0 || t & INST != 0 || t & SYS != 0 || t & BOS != 0 || t & EOS != 0;
        assert_eq!(is_ctl(t), explicit, "{t}");
        assert_eq!(not_ctl(t), !explicit, "{t}");
        assert_eq!(is_the_type(t, QED_EOS), t & QED != 0 || t & EOS != 0, "{t}");
        assert_eq!(not_the_type(t, ANS), t & ANS == 0, "{t}");
    }
    assert_eq!(count(&[QED, EOS, QUE, PAD, QED], QED_EOS), 3);
}

#[test]
fn chat_cases_match_python_reference() {
    let exp = expected();
    assert_eq!(exp.chat.len(), 2 * TEMPLATE_NAMES.len() * 13);
    let toks =
        [("llama_gqa", llm_tokenizer("llama_gqa")), ("llm_special", llm_tokenizer("llm_special"))];
    let mut seen_templates = std::collections::BTreeSet::new();
    for case in &exp.chat {
        let c = &case.row;
        let tok = &toks.iter().find(|(n, _)| *n == c.tokenizer).unwrap().1;
        let template = ChatTemplate::by_name(&c.template).unwrap();
        seen_templates.insert(template.name);
        let conv = c.conversation();
        let parser = match case.mode.as_str() {
            "qed" => ChatParser::qed(template, c.n_l, c.n_s, c.pad_id).unwrap(),
            "img" => ChatParser::img(template, case.num_img_tokens, case.img_token_id),
            m => panic!("mode {m}"),
        }
        .with_add_endoftext(c.add_endoftext);
        let segs: Vec<(String, u32)> =
            parser.segments(&conv).unwrap().into_iter().map(|s| (s.text, s.tp)).collect();
        assert_eq!(segs, c.segments, "{}: segments", c.name);
        let out = parser.parse(tok, &conv, c.image).unwrap();
        assert_eq!(out.input_ids, c.input_ids, "{}: input_ids", c.name);
        assert_eq!(out.input_tps, c.input_tps, "{}: input_tps", c.name);
        assert_eq!(out.attention_mask, c.attention_mask, "{}: attention_mask", c.name);
        // QED slots: n_l for the first question, n_s for each later one (only with an image).
        let nq = conv.questions().len();
        let want_qed =
            if c.image && case.mode == "qed" && nq > 0 { c.n_l + (nq - 1) * c.n_s } else { 0 };
        assert_eq!(out.count_type(QED), want_qed, "{}", c.name);
        let want_img = if c.image && case.mode == "img" { case.num_img_tokens } else { 0 };
        assert_eq!(out.count_type(IMG), want_img, "{}", c.name);
    }
    assert_eq!(seen_templates.len(), TEMPLATE_NAMES.len());
}

#[test]
fn query_cases_match_python_reference() {
    let exp = expected();
    let clip = clip_tokenizer();
    assert_eq!(clip.vocab_size(), exp.clip.vocab_size);
    assert!(!exp.query.is_empty());
    for c in &exp.query {
        let q =
            QueryParser::from_clip_tokenizer(&clip, c.n_l, c.n_s, c.append_special_padding, None)
                .unwrap()
                .with_drop_query(c.drop_query)
                .with_fill_ends(c.fill_ends);
        assert_eq!(q.eos_id, exp.clip.eos_id);
        assert_eq!(q.pad_id, exp.clip.eos_id, "pad := eos when the CLIP tokenizer has none");
        let qs: Vec<&str> = c.questions.iter().map(String::as_str).collect();
        let out = q.parse(&clip, &qs).unwrap();
        assert_eq!(out.input_ids, c.input_ids, "{}: input_ids", c.name);
        assert_eq!(out.input_tps, c.input_tps, "{}: input_tps", c.name);
        assert_eq!(out.attention_mask, c.attention_mask, "{}: attention_mask", c.name);
        assert_eq!(out.count_type(QED_EOS), q.outputs_for(qs.len()), "{}", c.name);
        assert_eq!(out.count_type(EOS), qs.len(), "{}", c.name);
        if c.append_special_padding {
            assert_eq!(q.required_vocab_size(), Some(exp.clip.vocab_size + c.n_l - 1));
        }
    }
}

#[test]
fn query_layout_by_hand() {
    // §9: one question with n_l = 8 -> 7 placeholders + eos; a second with n_s = 4 -> 3 + eos.
    let clip = clip_tokenizer();
    let base = clip.vocab_size() as u32;
    let eos = clip.token_id("<|endoftext|>").unwrap();
    let q = QueryParser::from_clip_tokenizer(&clip, 8, 4, true, None).unwrap();
    let q1 = clip.encode("What is shown in this image?", false).unwrap();
    let q2 = clip.encode("yes or no?", false).unwrap();
    let out = q.parse(&clip, &["What is shown in this image?", "yes or no?"]).unwrap();
    let mut ids = q1.clone();
    ids.extend((0..7).map(|i| base + i));
    ids.push(eos);
    ids.extend(&q2);
    ids.extend((0..3).map(|i| base + i));
    ids.push(eos);
    assert_eq!(out.input_ids, ids);
    let mut tps = vec![QUE; q1.len()];
    tps.extend([QED; 7]);
    tps.push(EOS);
    tps.extend(vec![QUE; q2.len()]);
    tps.extend([QED; 3]);
    tps.push(EOS);
    assert_eq!(out.input_tps, tps);
    // DropQuery: no question text; pad-id placeholders without special padding.
    let d =
        QueryParser::from_clip_tokenizer(&clip, 3, 1, false, None).unwrap().with_drop_query(true);
    let out = d.parse(&clip, &["anything", "else"]).unwrap();
    assert_eq!(out.input_ids, vec![eos, eos, eos, eos]);
    assert_eq!(out.input_tps, vec![QED, QED, EOS, EOS]);
    // An explicit pad token is used for the placeholders.
    let p = QueryParser::from_clip_tokenizer(&clip, 2, 1, false, Some("<|startoftext|>")).unwrap();
    assert_eq!(p.placeholder_id(0), clip.token_id("<|startoftext|>").unwrap());
}

#[test]
fn n_l_n_s_validation() {
    let clip = clip_tokenizer();
    let e = QueryParser::from_clip_tokenizer(&clip, 8, 16, true, None).unwrap_err().to_string();
    assert!(
        e.contains("n_s (length_que_end_short) = 16") && e.contains("n_l (length_que_end) = 8"),
        "{e}"
    );
    let e = validate_query_lengths(0, 0).unwrap_err().to_string();
    assert!(e.contains("n_l") && e.contains("at least 1"), "{e}");
    let e = validate_query_lengths(4, 0).unwrap_err().to_string();
    assert!(e.contains("n_s") && e.contains("at least 1"), "{e}");
    let t = ChatTemplate::by_name("llama-2").unwrap();
    assert!(ChatParser::qed(t.clone(), 2, 3, 0).is_err());
    assert!(ChatParser::qed(t, 1, 1, 0).is_ok());
    assert!(validate_query_lengths(1, 1).is_ok());
    let e = format!(
        "{:#}",
        QueryParser::from_clip_tokenizer(&clip, 2, 1, false, Some("<nope>")).unwrap_err()
    );
    assert!(
        e.contains("CLIP pad token") && e.contains("\"<nope>\" is not in the tokenizer"),
        "{e}"
    );
}

#[test]
fn token_resolution() {
    let special = llm_tokenizer("llm_special");
    let plain = llm_tokenizer("llama_gqa");
    assert_eq!(image_token_id(&special, 2), special.token_id("<image>").unwrap());
    assert_eq!(image_token_id(&plain, 2), 2, "no image token: eos");
    assert_eq!(resolve_token_id(&plain, Some("<pad>"), 2).unwrap(), 3);
    assert_eq!(resolve_token_id(&plain, None, 2).unwrap(), 2);
    assert!(resolve_token_id(&plain, Some("<|im_end|>"), 2).is_err());
}

#[test]
fn unknown_template_is_refused() {
    let e = ChatTemplate::by_name("llama-4").unwrap_err().to_string();
    assert!(
        e.contains("llama-4") && e.contains("vicuna_v1.1") && e.contains("qwen-7b-chat"),
        "{e}"
    );
    for n in TEMPLATE_NAMES {
        assert_eq!(ChatTemplate::by_name(n).unwrap().name, n);
    }
}

#[test]
fn llama2_prompts_and_quirks() {
    let t = ChatTemplate::by_name("llama-2").unwrap();
    let conv = Conversation::from_turns(&["Hi", "Hello", "Bye"]).for_generation();
    assert_eq!(t.prompt(&conv, false).unwrap(), "<s>[INST] Hi[/INST]Hello </s><s>[INST]Bye[/INST]");
    let segs = t.segments(&conv, false).unwrap();
    // §9: "</s>" inside the answer is ANS; the later "<s>[INST]" is INST.
    assert_eq!(segs[3].text, "Hello </s>");
    assert_eq!(segs[3].tp, ANS);
    assert_eq!((segs[4].text.as_str(), segs[4].tp), ("<s>[INST]", INST));
    let v = ChatTemplate::by_name("llama-2-vision").unwrap();
    let p = v.prompt(&Conversation::from_turns(&["Q", ""]), false).unwrap();
    assert!(
        p.starts_with("<s>[INST] <<SYS>>\nA chat between a curious user")
            && p.ends_with("<</SYS>>\n\nQ[/INST]"),
        "{p}"
    );
    // The same with an explicitly empty system: no system prompt.
    let p = v.prompt(&Conversation::from_turns(&["Q", ""]).with_system(""), false).unwrap();
    assert_eq!(p, "<s>[INST] Q[/INST]");
}

#[test]
fn full_record_parse_counts_match() {
    let llm = llm_tokenizer("llm_special");
    let clip = clip_tokenizer();
    let q = QueryParser::from_clip_tokenizer(&clip, 8, 3, true, None).unwrap();
    let p =
        ChatAndQueryParser::new(ChatTemplate::by_name("llama-2-vision").unwrap(), 3, q).unwrap();
    let conv = parse_chat_record(
        r#"{"image": "a.jpg", "messages": [{"role":"user","content":"What is shown?"},{"role":"assistant","content":"A cat."},{"role":"user","content":"Is it small?"}]}"#,
    )
    .unwrap()
    .for_generation();
    assert_eq!(conv.image.as_deref(), Some("a.jpg"));
    let r = p.parse(&llm, &clip, &conv, true).unwrap();
    let query = r.query.unwrap();
    assert_eq!(r.llm.count_type(QED), 8 + 3);
    assert_eq!(query.count_type(QED_EOS), 8 + 3);
    let (ids, tps, mask) = r.llm.to_tensors(&tokenscale_model::Device::Cpu).unwrap();
    assert_eq!(ids.dims(), &[1, r.llm.len()]);
    assert_eq!(tps.to_vec2::<u32>().unwrap()[0], r.llm.input_tps);
    assert_eq!(mask.to_vec2::<u32>().unwrap()[0], vec![1; r.llm.len()]);
    // Text only: no QED slots, no query row.
    let r = p.parse(&llm, &clip, &conv, false).unwrap();
    assert!(r.query.is_none());
    assert_eq!(r.llm.count_type(QED), 0);
    // An image without any question is refused.
    let e =
        p.parse(&llm, &clip, &Conversation::from_turns(&["", ""]), true).unwrap_err().to_string();
    assert!(e.contains("no non-empty user message"), "{e}");
}

#[test]
fn chat_jsonl_records() {
    let text = concat!(
        r#"{"image": "x.png", "messages": [{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#,
        "\n\n",
        r#"{"image": null, "messages": [{"role":"user","content":"c"}], "id": 7}"#,
        "\n",
        r#"{"image": "none", "messages": [{"role":"user","content":"d"}]}"#,
        "\n",
        r#"{"messages": [{"role":"user","content":"e"}]}"#,
        "\n",
    );
    let convs = parse_chat_jsonl(text).unwrap();
    assert_eq!(convs.len(), 4);
    assert_eq!(convs[0].image.as_deref(), Some("x.png"));
    assert_eq!(convs[0].messages[1].role, Role::Assistant);
    assert!(convs[1..].iter().all(|c| c.image.is_none()));
}

#[test]
fn bad_chat_jsonl_records() {
    let good = r#"{"image": null, "messages": [{"role":"user","content":"c"}]}"#;
    let cases = [
        (
            r#"{"image": null, "messages": [{"role":"user","content":"a"},{"role":"user","content":"b"}]}"#,
            "line 2: messages[1]: role \"user\" where \"assistant\" was expected",
        ),
        (
            r#"{"image": null, "messages": [{"role":"assistant","content":"a"}]}"#,
            "line 2: messages[0]: role \"assistant\" where \"user\" was expected",
        ),
        (
            r#"{"image": null, "messages": [{"role":"bot","content":"a"}]}"#,
            "line 2: messages[0]: unknown role \"bot\"",
        ),
        (r#"{"image": null, "messages": []}"#, "line 2: \"messages\" is empty"),
        (r#"{"image": null}"#, "line 2: not a chat record"),
        (
            r#"{"image": 3, "messages": [{"role":"user","content":"a"}]}"#,
            "line 2: not a chat record",
        ),
        (r#"{"messages": [{"role":"user"}]}"#, "line 2: not a chat record"),
        ("not json", "line 2: not a chat record"),
    ];
    for (bad, want) in cases {
        let e = format!("{:#}", parse_chat_jsonl(&format!("{good}\n{bad}\n{good}\n")).unwrap_err());
        assert!(e.starts_with(want), "{bad}: {e}");
    }
}

#[test]
fn simple_role_list() {
    let (c, w) = parse_simple_record(
        r#"[{"role":"system","content":"Be brief."},{"role":"image","content":"i.jpg"},{"role":"user","content":"q1"},
            {"role":"assistant","content":"a1"},{"role":"system","content":"late"},{"role":"assistant","content":"again"},
            {"role":"user","content":"q2"},{"role":"user","content":"q3"},{"role":"image","content":"j.jpg"},{"role":"narrator","content":"x"}]"#,
    )
    .unwrap();
    assert_eq!(c.system.as_deref(), Some("Be brief."));
    assert_eq!(c.image.as_deref(), Some("i.jpg"));
    let msgs: Vec<(Role, &str)> = c.messages.iter().map(|m| (m.role, m.content.as_str())).collect();
    assert_eq!(msgs, vec![(Role::User, "q1"), (Role::Assistant, "a1"), (Role::User, "q2")]);
    assert_eq!(w.len(), 5, "{w:?}");
    assert!(w[0].contains("entry 4") && w[0].contains("system"), "{w:?}");
    assert!(w[1].contains("entry 5") && w[1].contains("assistant entry out of order"), "{w:?}");
    assert!(w[2].contains("entry 7") && w[2].contains("user entry out of order"), "{w:?}");
    assert!(w[3].contains("entry 8") && w[3].contains("second image"), "{w:?}");
    assert!(w[4].contains("entry 9") && w[4].contains("narrator"), "{w:?}");
    // An assistant first is skipped; image "none" is no image.
    let (c, w) =
        parse_simple_record(r#"[{"role":"image","content":"none"},{"role":"assistant","content":"a"},{"role":"user","content":"q"}]"#)
            .unwrap();
    assert!(c.image.is_none());
    assert_eq!(c.messages.len(), 1);
    assert_eq!(w.len(), 1);
    let e = parse_simple_record(r#"{"role":"user"}"#).unwrap_err().to_string();
    assert!(e.contains("not a simple role list"), "{e}");
}

#[test]
fn vlmeval_message_list() {
    let c = parse_vlmeval_message(
        r#"[{"type":"image","value":"/d/1.jpg"},{"type":"text","value":"What is it?"}]"#,
        true,
    )
    .unwrap();
    assert_eq!(c.image.as_deref(), Some("/d/1.jpg"));
    assert_eq!(c.messages.len(), 2);
    assert_eq!((c.messages[1].role, c.messages[1].content.as_str()), (Role::Assistant, ""));
    let c = parse_vlmeval_message(
        r#"[{"type":"text","value":"q"},{"type":"text","value":"a"},{"type":"text","value":"q2"}]"#,
        false,
    )
    .unwrap();
    assert!(c.image.is_none());
    assert_eq!(
        c.messages.iter().map(|m| m.role).collect::<Vec<_>>(),
        vec![Role::User, Role::Assistant, Role::User]
    );
    // An even number of texts already ends with the assistant: nothing appended.
    let c =
        parse_vlmeval_message(r#"[{"type":"text","value":"q"},{"type":"text","value":"a"}]"#, true)
            .unwrap();
    assert_eq!(c.messages.len(), 2);
    for (bad, want) in [
        (r#"[{"type":"video","value":"v.mp4"}]"#, "item 0: unknown type \"video\""),
        (
            r#"[{"type":"image","value":"a"},{"type":"image","value":"b"},{"type":"text","value":"q"}]"#,
            "item 1: a second image",
        ),
        (r#"[{"type":"image","value":"a"}]"#, "no text item"),
        (r#"[{"type":"text"}]"#, "not a VLMEvalKit message list"),
    ] {
        let e = parse_vlmeval_message(bad, true).unwrap_err().to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn conversation_alternation_is_enforced_by_the_templates() {
    let t = ChatTemplate::by_name("vicuna_v1.1").unwrap();
    let conv = Conversation::new().user("a").user("b");
    let e = t.segments(&conv, false).unwrap_err().to_string();
    assert!(e.contains("messages[1]") && e.contains("alternate"), "{e}");
}

/// For the byte-level / special-token templates the concatenated segments are exactly the text
/// HF's `apply_chat_template(..., add_generation_prompt=True)` renders for Qwen2, Llama-3 and
/// Phi-3 (strings written out from those models' chat templates), so per-segment tokenisation with
/// a byte-level tokenizer gives the same ids as the whole prompt wherever the BPE does not merge
/// across segment boundaries (the special tokens always split).
#[test]
fn prompts_equal_hf_chat_template_renderings() {
    let conv = Conversation::from_turns(&["Q1", "A1", "Q2"]).with_system("S").for_generation();
    let cases = [
        (
            "qwen-7b-chat",
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            "llama-3",
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        ("microsoft-phi-3", "<|system|>\nS<|end|>\n<|user|>\nQ1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nQ2<|end|>\n<|assistant|>\n"),
        ("vicuna_v1.1", "<s>S USER: Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:"),
    ];
    for (name, want) in cases {
        let t = ChatTemplate::by_name(name).unwrap();
        assert_eq!(t.prompt(&conv, false).unwrap(), want, "{name}");
    }
    // Without a system message Qwen's default applies unless it is set to "".
    let t = ChatTemplate::by_name("qwen-7b-chat").unwrap();
    let p = t.prompt(&Conversation::from_turns(&["Q", ""]), false).unwrap();
    assert_eq!(p, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n");
    let p = t.prompt(&Conversation::from_turns(&["Q", ""]).with_system(""), false).unwrap();
    assert_eq!(p, "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n");
    // add_endoftext: phi-3 closes with <|endoftext|>, llama-3 opens the assistant turn.
    let c = Conversation::from_turns(&["Q"]);
    let p = ChatTemplate::by_name("microsoft-phi-3").unwrap().prompt(&c, true).unwrap();
    assert_eq!(p, "<|user|>\nQ<|end|>\n<|endoftext|>");
    let p = ChatTemplate::by_name("llama-3").unwrap().prompt(&c, true).unwrap();
    assert!(p.ends_with("Q<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), "{p}");
}

#[test]
fn any_record_shape() {
    let chat = r#"{"image": "a.jpg", "messages": [{"role":"user","content":"q"}]}"#;
    let simple = r#"[{"role":"image","content":"a.jpg"},{"role":"user","content":"q"}]"#;
    let vlm = r#"[{"type":"image","value":"a.jpg"},{"type":"text","value":"q"}]"#;
    assert_eq!(record_shape(chat).unwrap(), RecordShape::Chat);
    assert_eq!(record_shape(simple).unwrap(), RecordShape::Simple);
    assert_eq!(record_shape(vlm).unwrap(), RecordShape::VlmEval);
    for j in [chat, simple, vlm] {
        let (c, w) = parse_any_record(j, false).unwrap();
        assert!(w.is_empty());
        assert_eq!(c.image.as_deref(), Some("a.jpg"));
        assert_eq!(c.questions(), vec!["q"]);
    }
    for bad in ["[]", "3", "[1]", "[{\"x\":1}]", "{"] {
        let e = record_shape(bad).unwrap_err().to_string();
        assert!(e.starts_with("not a record") || e.starts_with("not JSON"), "{bad}: {e}");
    }
}
