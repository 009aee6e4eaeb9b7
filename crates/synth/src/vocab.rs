//! The benchmark's closed vocabulary: every word of its questions, options and answers and of
//! the text VLMEvalKit's prompts add around them (`tokenscale_vlmeval::prompt`), so a tiny model can be
//! trained with a word-level tokenizer that never meets an unknown word.

/// Punctuation kept as separate symbols by `split_words`.
pub const PUNCTUATION: [char; 4] = ['?', ',', '.', ':'];

/// The words, lower-cased (prompts contain capitalised forms such as "What", "Question" and the
/// option letters "A"–"D": a tokenizer built from this list must fold case, or add those forms).
const WORDS: &[&str] = &[
    // punctuation
    "?",
    ",",
    ".",
    ":",
    // question templates
    "what",
    "colour",
    "is",
    "the",
    "background",
    "border",
    "shape",
    "shapes",
    "in",
    "row",
    "column",
    "there",
    "a",
    "how",
    "many",
    "are",
    "number",
    "of",
    "directly",
    "left",
    "right",
    "above",
    "below",
    // yes/no suffix and answers
    "please",
    "answer",
    "yes",
    "or",
    "no",
    // colours, tints, shapes, counts (also the row and column numbers), the empty cell
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "white",
    "grey",
    "pink",
    "circle",
    "square",
    "triangle",
    "cross",
    "circles",
    "squares",
    "triangles",
    "crosses",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "none",
    // MCQ prompt (VLMEvalKit default): "Question:", "Options:", "A." … "D.", the closing line
    "question",
    "options",
    "b",
    "c",
    "d",
    "select",
    "correct",
    "from",
    // MCQ prompt (LLaVA): "Answer with the option's letter from the given choices directly."
    "with",
    "option's",
    "letter",
    "given",
    "choices",
    // VQA suffix: "Answer the question using a single word or phrase."
    "using",
    "single",
    "word",
    "phrase",
];

/// Every word that can appear in a prompt, option or answer of the benchmark, lower-cased and
/// without duplicates, punctuation `?,.:` included as separate symbols.
pub fn words() -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(WORDS.len());
    for w in WORDS {
        if !out.iter().any(|o| o == w) {
            out.push(w.to_string());
        }
    }
    out
}

/// Split text into lower-cased words and punctuation symbols: whitespace separates words, and
/// each of `?,.:` is a word of its own.
pub fn split_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in text.split_whitespace() {
        let mut word = String::new();
        for ch in chunk.chars() {
            if PUNCTUATION.contains(&ch) {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                out.push(ch.to_string());
            } else {
                word.extend(ch.to_lowercase());
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}
