// One module per subcommand.

/// Vision-token budget flags shared by the commands that run a model.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BudgetArgs {
    /// Vision tokens given to the LLM: LLaVA reduces its 576 tokens to N with --reducer; the
    /// query-fused model emits N queries for the first question (n_l).
    #[arg(long)]
    pub vision_tokens: Option<usize>,
    /// Query-fused model: tokens for each later question (n_s).
    #[arg(long)]
    pub short_tokens: Option<usize>,
    /// LLaVA token reducer: pool, uniform, visionzip, fastv.
    #[arg(long)]
    pub reducer: Option<String>,
}

impl BudgetArgs {
    pub fn to_budget(&self) -> tokenscale_model::runtime::VisionBudget {
        tokenscale_model::runtime::VisionBudget {
            tokens: self.vision_tokens,
            short_tokens: self.short_tokens,
            reducer: self.reducer.clone(),
        }
    }
}
pub mod demo;
pub mod forward;
pub mod inspect;
pub mod run;
pub mod bound;
pub mod fit;
pub mod score;
pub mod merge;
