//! pycocoevalcap's `PTBTokenizer` path: Stanford CoreNLP 3.4.1 `PTBTokenizer -preserveLines
//! -lowerCase`, then removal of the punctuation tokens pycocoevalcap lists.
//!
//! This is a re-implementation of the common English cases of the CoreNLP lexer (quotes,
//! brackets, clitics, sentence-final periods, abbreviations, currency/percent, ellipses); it
//! matches the Java tokenizer on the committed fixtures. Py quirk kept: pycocoevalcap's list
//! has `-LRB-`/`-RRB-` in upper case while `-lowerCase` produces `-lrb-`, so bracket tokens
//! survive into the scores.

/// pycocoevalcap's PUNCTUATIONS.
const PUNCTUATIONS: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

const ABBREVIATIONS: &[&str] = &[
    "mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "etc.", "inc.", "ltd.",
    "co.", "corp.", "mt.", "jan.", "feb.", "mar.", "apr.", "jun.", "jul.", "aug.", "sep.", "sept.",
    "oct.", "nov.", "dec.", "no.", "ft.", "gen.", "gov.", "sen.", "rep.", "rev.", "capt.", "col.",
    "lt.", "sgt.", "ave.", "blvd.", "e.g.", "i.e.",
];

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// Split a chunk (no whitespace) into PTB tokens (lower-cased).
fn split_chunk(chunk: &str, out: &mut Vec<String>, last_in_line: bool) {
    let mut s: Vec<char> = chunk.chars().collect();
    let mut tail: Vec<String> = Vec::new();
    // Leading punctuation.
    loop {
        if s.is_empty() {
            break;
        }
        let c = s[0];
        let tok = match c {
            '(' => Some("-lrb-".to_string()),
            '[' => Some("-lsb-".to_string()),
            '{' => Some("-lcb-".to_string()),
            '"' => Some("``".to_string()),
            '$' | '#' => Some(c.to_string()),
            '\'' if s.len() > 1
                && !(s.len() >= 3 && s[1].is_ascii_digit() && s[2].is_ascii_digit()) =>
            {
                if s.len() > 1 && s[1] == '\'' {
                    s.remove(0);
                    Some("``".to_string())
                } else {
                    Some("`".to_string())
                }
            }
            '`' => Some("`".to_string()),
            _ => None,
        };
        match tok {
            Some(t) => {
                out.push(t);
                s.remove(0);
            }
            None => break,
        }
    }
    // Trailing punctuation.
    loop {
        if s.is_empty() {
            break;
        }
        let n = s.len();
        let c = s[n - 1];
        if n >= 3 && s[n - 3..].iter().all(|&x| x == '.') {
            tail.push("...".into());
            s.truncate(n - 3);
            continue;
        }
        if n >= 2 && s[n - 2] == '-' && c == '-' {
            tail.push("--".into());
            s.truncate(n - 2);
            continue;
        }
        let tok = match c {
            ')' => Some("-rrb-".to_string()),
            ']' => Some("-rsb-".to_string()),
            '}' => Some("-rcb-".to_string()),
            '"' => Some("''".to_string()),
            ',' | ';' | ':' | '!' | '?' | '%' => Some(c.to_string()),
            '\'' if n >= 2 && s[n - 2] == '\'' => {
                s.pop();
                Some("''".to_string())
            }
            '\'' if n >= 2 && (s[n - 2] == 's' || s[n - 2] == 'S') => Some("'".to_string()),
            '\'' if n >= 2 && is_word_char(s[n - 2]) => Some("'".to_string()),
            '.' => {
                let word: String = s.iter().collect::<String>().to_lowercase();
                let letters_and_dots = word.len() > 1
                    && word.chars().all(|x| x.is_alphabetic() || x == '.')
                    && word[..word.len() - 1].contains('.');
                let abbrev = ABBREVIATIONS.contains(&word.as_str()) || letters_and_dots;
                if abbrev && !last_in_line {
                    None
                } else if abbrev {
                    // CoreNLP keeps the abbreviation and adds a sentence-final period.
                    tail.push(".".into());
                    None
                } else if n == 1 {
                    None
                } else {
                    Some(".".to_string())
                }
            }
            _ => None,
        };
        match tok {
            Some(t) => {
                tail.push(t);
                s.pop();
            }
            None => break,
        }
    }
    if !s.is_empty() {
        let word: String = s.iter().collect::<String>().to_lowercase();
        out.extend(split_clitics(&word));
    }
    tail.reverse();
    out.extend(tail);
}

fn split_clitics(w: &str) -> Vec<String> {
    // Times glued to am/pm ("5:00pm", "10.30pm") are split; "7am" is not.
    for suf in ["am", "pm"] {
        if let Some(stem) = w.strip_suffix(suf) {
            if !stem.is_empty()
                && stem.chars().all(|c| c.is_ascii_digit() || c == ':' || c == '.')
                && stem.chars().next().unwrap().is_ascii_digit()
                && stem.contains([':', '.'])
            {
                return vec![stem.into(), suf.into()];
            }
        }
    }
    for (full, a, b) in [
        ("cannot", "can", "not"),
        ("gonna", "gon", "na"),
        ("gotta", "got", "ta"),
        ("wanna", "wan", "na"),
    ] {
        if w == full {
            return vec![a.into(), b.into()];
        }
    }
    if let Some(stem) = w.strip_suffix("n't") {
        if !stem.is_empty() {
            return vec![stem.into(), "n't".into()];
        }
    }
    for suf in ["'s", "'m", "'d", "'re", "'ve", "'ll"] {
        if let Some(stem) = w.strip_suffix(suf) {
            if !stem.is_empty() && stem.chars().last().map(is_word_char).unwrap_or(false) {
                return vec![stem.into(), suf.into()];
            }
        }
    }
    vec![w.to_string()]
}

/// Tokenise one caption and drop pycocoevalcap's punctuation tokens; returns the tokens joined
/// by single spaces.
pub fn tokenize(caption: &str) -> String {
    let line = caption.replace('\n', " ");
    let chunks: Vec<&str> = line.split_whitespace().collect();
    let mut toks = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        split_chunk(c, &mut toks, i + 1 == chunks.len());
    }
    toks.into_iter().filter(|t| !PUNCTUATIONS.contains(&t.as_str())).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn examples_from_corenlp() {
        assert_eq!(
            tokenize("A man (wearing a hat) rides a horse. \"Hello,\" she said."),
            "a man -lrb- wearing a hat -rrb- rides a horse hello she said"
        );
        assert_eq!(
            tokenize("Don't can't won't it's the dog's bone; dogs' toys: yes!"),
            "do n't ca n't wo n't it 's the dog 's bone dogs toys yes"
        );
        assert_eq!(
            tokenize("I'm we're cannot gonna 'quoted' word's end."),
            "i 'm we 're can not gon na quoted word 's end"
        );
    }
}
