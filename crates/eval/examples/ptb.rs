//! Print `ptb::tokenize` of each stdin line (for comparing with CoreNLP's PTBTokenizer).
use std::io::BufRead;
fn main() {
    for line in std::io::stdin().lock().lines() {
        println!("{}", tokenscale_eval::score::ptb::tokenize(&line.unwrap()));
    }
}
