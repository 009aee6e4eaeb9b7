//! How long a chat's prompt will be, known before any image work: the conversation is templated
//! and tokenised with the vision tokens its budget gives, so a server can refuse a prompt over
//! its limit (or past the model's context) before it decodes an image or runs the vision
//! encoder. [`Runtime::prepare_chat`] then builds exactly this many positions
//! (`tests/prompt_plan.rs` checks it for every model kind and budget).

use anyhow::{bail, Result};

use crate::chat::Conversation;
use crate::llava::vicuna_v1_prompt;
use crate::reduce::{self, Reducer};
use crate::runtime::{
    imgque_budget_checked, llava_reduction, lm_input_ids, single_message, Runtime, VisionBudget,
};

/// What a chat's prompt will be, before its image is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPlan {
    /// Positions the LLM's prefill will read (the length of `Prepared::embeds`), vision tokens
    /// included; FastV prompts count every image token (the pruning happens inside the LLM).
    pub prompt_tokens: usize,
    /// Set when the query-fused model will run at an n_l or n_s it was not trained with.
    pub budget_warning: Option<String>,
}

impl Runtime {
    /// The plan of [`Runtime::prepare_chat`] for the same arguments (`has_image`: whether an
    /// image comes with the conversation). Refuses what `prepare_chat` would refuse for the
    /// text or the budget, with the same messages.
    pub fn plan_chat(
        &self,
        has_image: bool,
        conversation: &Conversation,
        budget: &VisionBudget,
        drop_query: Option<bool>,
    ) -> Result<PromptPlan> {
        match self {
            Runtime::ImgQue(p) => {
                let drop_query = drop_query.unwrap_or(p.drop_query);
                // Without an image the budget is not used (as `prepare_chat` does).
                let (tokens, budget_warning) = if has_image {
                    imgque_budget_checked(p, budget)?
                } else {
                    (p.trained_tokens(), None)
                };
                let record = p.parser_with(tokens.0, tokens.1, drop_query)?.parse(
                    &p.tokenizer,
                    &p.clip_tokenizer,
                    &conversation.clone().for_generation(),
                    has_image,
                )?;
                Ok(PromptPlan { prompt_tokens: record.llm.input_ids.len(), budget_warning })
            }
            Runtime::Llava(p) => {
                let question = single_message(conversation, drop_query)?;
                if !has_image {
                    bail!("this model needs an image");
                }
                let native = p.model.config.image_tokens();
                let image_tokens = match llava_reduction(p, budget)? {
                    None => native,
                    Some((n, reducer)) => {
                        reduce::check_budget(n, native)?;
                        // FastV's prompt holds every image token; the LLM drops them at layer K.
                        if matches!(reducer, Reducer::FastV { .. }) {
                            native
                        } else {
                            n
                        }
                    }
                };
                Ok(PromptPlan {
                    prompt_tokens: p.input_ids(&vicuna_v1_prompt(question), image_tokens)?.len(),
                    budget_warning: None,
                })
            }
            Runtime::Lm { tokenizer, .. } => {
                let question = single_message(conversation, drop_query)?;
                Ok(PromptPlan {
                    prompt_tokens: lm_input_ids(tokenizer, has_image, question, budget)?.len(),
                    budget_warning: None,
                })
            }
        }
    }
}
