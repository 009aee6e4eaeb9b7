//! Fixed-choice flag values as clap enums, so `--help` lists them and a wrong value is refused
//! with the list; each converts to the library's own type or name.

use clap::ValueEnum;

/// `--format` of tables written by `cost` and `advise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Markdown table.
    #[value(alias = "markdown")]
    Md,
    Json,
    Csv,
}

/// Fitting space of a law (`advise`; `fit` also has `both`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LawSpace {
    /// Least squares on the scores.
    Score,
    /// Least squares on ln(score).
    Log,
}

impl From<LawSpace> for tokenscale_law::Space {
    fn from(space: LawSpace) -> Self {
        match space {
            LawSpace::Score => tokenscale_law::Space::Score,
            LawSpace::Log => tokenscale_law::Space::Log,
        }
    }
}

/// `--kind` of a benchmark (VLMEvalKit's dataset type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatasetKind {
    /// Multiple choice.
    Mcq,
    /// Yes / no.
    #[value(alias = "y/n", alias = "yn", alias = "yesno")]
    Yorn,
    /// Short-answer VQA.
    Vqa,
    Ocrbench,
    Caption,
}

impl From<DatasetKind> for tokenscale_eval::Kind {
    fn from(kind: DatasetKind) -> Self {
        match kind {
            DatasetKind::Mcq => Self::Mcq,
            DatasetKind::Yorn => Self::Yorn,
            DatasetKind::Vqa => Self::Vqa,
            DatasetKind::Ocrbench => Self::Ocrbench,
            DatasetKind::Caption => Self::Caption,
        }
    }
}

/// `--template`: the query-fused model's chat templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Template {
    #[value(name = "llama-2")]
    Llama2,
    #[value(name = "llama-2-vision")]
    Llama2Vision,
    #[value(name = "vicuna_v1.1")]
    VicunaV11,
    #[value(name = "qwen-7b-chat")]
    Qwen7bChat,
    #[value(name = "phi-3")]
    Phi3,
    #[value(name = "microsoft-phi-3")]
    MicrosoftPhi3,
    #[value(name = "llama-3")]
    Llama3,
    #[value(name = "llama-3-vision")]
    Llama3Vision,
    /// vicuna_v1.1 without a system prompt (the small models trained here).
    #[value(name = "plain")]
    Plain,
}

impl Template {
    /// The name the model library knows the template by.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama2 => "llama-2",
            Self::Llama2Vision => "llama-2-vision",
            Self::VicunaV11 => "vicuna_v1.1",
            Self::Qwen7bChat => "qwen-7b-chat",
            Self::Phi3 => "phi-3",
            Self::MicrosoftPhi3 => "microsoft-phi-3",
            Self::Llama3 => "llama-3",
            Self::Llama3Vision => "llama-3-vision",
            Self::Plain => "plain",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_the_library_knows_is_a_choice() {
        let names: Vec<&str> = Template::value_variants().iter().map(|t| t.name()).collect();
        use tokenscale_model::chat::template::{EXTRA_TEMPLATE_NAMES, TEMPLATE_NAMES};
        assert_eq!(names, [TEMPLATE_NAMES.as_slice(), EXTRA_TEMPLATE_NAMES.as_slice()].concat());
        for t in Template::value_variants() {
            assert_eq!(t.to_possible_value().unwrap().get_name(), t.name());
        }
    }
}
