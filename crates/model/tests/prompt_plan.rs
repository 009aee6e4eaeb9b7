//! `Runtime::plan_chat` (the prompt length known before any image work) equals the length
//! `Runtime::prepare_chat` builds, for LLaVA under every reducer, the query-fused model with
//! several budgets, multi-turn chats and DropQuery, and a causal LM; both refuse the same
//! requests with the same messages; the query-fused model's untrained budgets carry a warning.

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device};
use common::fixture;
use tokenscale_model::chat::Conversation;
use tokenscale_model::preprocess::load_image;
use tokenscale_model::runtime::{Runtime, VisionBudget};

fn budget(
    tokens: Option<usize>,
    short_tokens: Option<usize>,
    reducer: Option<&str>,
) -> VisionBudget {
    VisionBudget { tokens, short_tokens, reducer: reducer.map(str::to_string) }
}

/// Plans and prepares each case; both succeed with the same length or fail with the same message.
fn assert_plans_match(
    runtime: &Runtime,
    cases: &[(bool, Conversation, VisionBudget, Option<bool>)],
) -> Vec<Option<String>> {
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let mut warnings = Vec::new();
    for (i, (has_image, conversation, budget, drop_query)) in cases.iter().enumerate() {
        let plan = runtime.plan_chat(*has_image, conversation, budget, *drop_query);
        let prepared = runtime.prepare_chat(
            &tokenscale_model::Forward::INFERENCE,
            has_image.then_some(&image),
            conversation,
            budget,
            *drop_query,
        );
        match (plan, prepared) {
            (Ok(plan), Ok(prepared)) => {
                assert_eq!(
                    plan.prompt_tokens,
                    prepared.embeds.dim(1).unwrap(),
                    "case {i}: {budget:?}"
                );
                assert_eq!(plan.prompt_tokens, prepared.input_ids.len(), "case {i}");
                warnings.push(plan.budget_warning);
            }
            (Err(planned), Err(prepared)) => {
                assert_eq!(format!("{planned:#}"), format!("{prepared:#}"), "case {i}");
                warnings.push(None);
            }
            (plan, prepared) => panic!(
                "case {i} ({budget:?}): plan {:?}, prepare {:?}",
                plan.map(|p| p.prompt_tokens),
                prepared.map(|p| p.input_ids.len())
            ),
        }
    }
    warnings
}

#[test]
fn llava_plans_every_reducer() {
    let runtime = Runtime::load(&fixture("llava"), DType::F32, &Device::Cpu).unwrap();
    let ask = || Conversation::new().user("What is shown in this image?");
    let mut cases = vec![
        (true, ask(), budget(None, None, None), None),
        (true, ask(), budget(Some(576), None, None), None),
    ];
    for reducer in ["pool", "uniform", "visionzip", "fastv:1"] {
        for n in [1, 64, 575] {
            cases.push((true, ask(), budget(Some(n), None, Some(reducer)), None));
        }
    }
    // Refused the same way: no reducer, an out-of-range N, n_s, no image, two turns, DropQuery.
    cases.push((true, ask(), budget(Some(64), None, None), None));
    cases.push((true, ask(), budget(Some(5000), None, Some("pool")), None));
    cases.push((true, ask(), budget(None, Some(8), None), None));
    cases.push((false, ask(), budget(None, None, None), None));
    cases.push((
        true,
        ask().assistant("a cup").user("What color?"),
        budget(None, None, None),
        None,
    ));
    cases.push((true, ask(), budget(None, None, None), Some(true)));
    assert_plans_match(&runtime, &cases);
}

#[test]
fn the_query_fused_model_plans_budgets_turns_and_drop_query() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny-imgque");
    let runtime = Runtime::load(&dir, DType::F32, &Device::Cpu).unwrap();
    let ask = || Conversation::new().user("What shape is in the image?");
    let chat = || {
        Conversation::new()
            .with_system("Be brief.")
            .user("What shape?")
            .assistant("a circle")
            .user("What color?")
    };
    let cases = vec![
        (true, ask(), budget(None, None, None), None),
        (true, ask(), budget(Some(16), None, None), None),
        (true, ask(), budget(Some(64), Some(64), None), None),
        (true, chat(), budget(Some(32), Some(8), None), None),
        (true, chat(), budget(Some(32), Some(8), None), Some(true)),
        (false, chat(), budget(Some(32), None, None), None),
        (true, ask(), budget(Some(5000), None, None), None),
        (true, ask(), budget(Some(16), None, Some("pool")), None),
    ];
    let warnings = assert_plans_match(&runtime, &cases);
    // Trained with n_l = n_s = 64: the default and (64, 64) are quiet, the others warn.
    assert_eq!(warnings[0], None);
    assert_eq!(warnings[2], None);
    assert_eq!(warnings[5], None, "without an image the budget is not used");
    let warned = warnings[1].as_deref().unwrap_or_default();
    assert!(
        warned.contains("trained with n_l = 64, n_s = 64")
            && warned.contains("running with n_l = 16, n_s = 16"),
        "{warned}"
    );
    assert!(warnings[3].as_deref().is_some_and(|w| w.contains("n_l = 32, n_s = 8")));
}

#[test]
fn a_causal_lm_plans_its_prompt() {
    let runtime = Runtime::load(&fixture("llama_gqa"), DType::F32, &Device::Cpu).unwrap();
    let ask = || Conversation::new().user("Once upon a time");
    let cases = vec![
        (false, ask(), budget(None, None, None), None),
        (true, ask(), budget(None, None, None), None),
        (false, ask(), budget(Some(16), None, None), None),
        (false, ask().assistant("there").user("was"), budget(None, None, None), None),
    ];
    assert_plans_match(&runtime, &cases);
}
