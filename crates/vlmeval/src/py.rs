//! Small re-implementations of the Python / NumPy behaviour that VLMEvalKit's numbers depend on.

/// Python's `str.isspace()` for one character (Unicode White_Space plus the ASCII separators
/// U+001C..U+001F, which Python also treats as whitespace).
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()` (no argument).
pub fn split(s: &str) -> Vec<&str> {
    s.split(is_space).filter(|t| !t.is_empty()).collect()
}

/// Python's `s.strip()` (no argument).
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Python's `len(s)` (code points).
pub fn len(s: &str) -> usize {
    s.chars().count()
}

/// `\d` of Python's `re` on a `str` pattern: Unicode decimal digits (category Nd).
pub fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    thread_local! {
        static RE: regex::Regex = regex::Regex::new(r"^\d$").unwrap();
    }
    let mut buf = [0u8; 4];
    let s = c.encode_utf8(&mut buf);
    RE.with(|re| re.is_match(s))
}

/// NumPy's pairwise summation (`np.add.reduce` on a contiguous float64 array).
pub fn np_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = -0.0;
        for x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_sum(&a[..n2]) + np_sum(&a[n2..])
    }
}

/// `np.mean` of a float64 array (NaN for an empty array, as NumPy gives).
pub fn np_mean(a: &[f64]) -> f64 {
    if a.is_empty() {
        return f64::NAN;
    }
    np_sum(a) / a.len() as f64
}

/// Python's `float(text)`: surrounding whitespace allowed, `_` between digits, inf/nan words.
pub fn float(text: &str) -> Option<f64> {
    let t = strip(text);
    if t.is_empty() {
        return None;
    }
    // Underscores are allowed only between two digits.
    let mut cleaned = String::with_capacity(t.len());
    let chars: Vec<char> = t.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            let ok = i > 0
                && i + 1 < chars.len()
                && chars[i - 1].is_ascii_digit()
                && chars[i + 1].is_ascii_digit();
            if !ok {
                return None;
            }
            continue;
        }
        if !c.is_ascii() {
            return None;
        }
        cleaned.push(c);
    }
    let body = cleaned.trim_start_matches(['+', '-']);
    if cleaned.len() - body.len() > 1 {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" || lower == "nan" {
        let v = if lower == "nan" { f64::NAN } else { f64::INFINITY };
        return Some(if cleaned.starts_with('-') { -v } else { v });
    }
    // Python's grammar: digits [. digits] [e [sign] digits], at least one digit in the mantissa.
    let b = body.as_bytes();
    let mut i = 0;
    let mut mant_digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        mant_digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            mant_digits += 1;
        }
    }
    if mant_digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

/// Parse the text of a flat Python list literal (`"['a', \"b\", 3]"`), as `eval` would.
/// Strings are unescaped; numbers and other bare literals keep their text.
/// Returns `None` when the text is not a list literal.
pub fn parse_list(text: &str) -> Option<Vec<String>> {
    let s = strip(text);
    let chars: Vec<char> = s.chars().collect();
    if chars.first() != Some(&'[') || chars.last() != Some(&']') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 1;
    let end = chars.len() - 1;
    let skip_ws = |i: &mut usize| {
        while *i < end && is_space(chars[*i]) {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= end {
            break;
        }
        let c = chars[i];
        // Optional string prefix (r, u, R, U).
        let mut raw = false;
        let mut j = i;
        if matches!(c, 'r' | 'R' | 'u' | 'U') && j + 1 < end && matches!(chars[j + 1], '\'' | '"') {
            raw = matches!(c, 'r' | 'R');
            j += 1;
        }
        let q = chars[j];
        if q == '\'' || q == '"' {
            // Strings; adjacent literals concatenate.
            let mut val = String::new();
            let mut k = j;
            loop {
                let q = chars[k];
                let triple = k + 2 < end && chars[k + 1] == q && chars[k + 2] == q;
                let qlen = if triple { 3 } else { 1 };
                k += qlen;
                loop {
                    if k >= end {
                        return None;
                    }
                    let ch = chars[k];
                    if ch == q
                        && (!triple || (k + 2 < end && chars[k + 1] == q && chars[k + 2] == q))
                    {
                        k += qlen;
                        break;
                    }
                    if ch == '\\' && k + 1 < end {
                        if raw {
                            val.push('\\');
                            val.push(chars[k + 1]);
                            k += 2;
                            continue;
                        }
                        let e = chars[k + 1];
                        k += 2;
                        match e {
                            'n' => val.push('\n'),
                            't' => val.push('\t'),
                            'r' => val.push('\r'),
                            '\\' => val.push('\\'),
                            '\'' => val.push('\''),
                            '"' => val.push('"'),
                            'a' => val.push('\u{7}'),
                            'b' => val.push('\u{8}'),
                            'f' => val.push('\u{c}'),
                            'v' => val.push('\u{b}'),
                            '0' => val.push('\0'),
                            '\n' => {}
                            'x' | 'u' | 'U' => {
                                let n = match e {
                                    'x' => 2,
                                    'u' => 4,
                                    _ => 8,
                                };
                                if k + n > end {
                                    return None;
                                }
                                let hex: String = chars[k..k + n].iter().collect();
                                let cp = u32::from_str_radix(&hex, 16).ok()?;
                                val.push(char::from_u32(cp)?);
                                k += n;
                            }
                            other => {
                                val.push('\\');
                                val.push(other);
                            }
                        }
                        continue;
                    }
                    if !triple && ch == '\n' {
                        return None;
                    }
                    val.push(ch);
                    k += 1;
                }
                // Adjacent string literal?
                let mut m = k;
                while m < end && is_space(chars[m]) {
                    m += 1;
                }
                if m < end && (chars[m] == '\'' || chars[m] == '"') {
                    k = m;
                    continue;
                }
                break;
            }
            out.push(val);
            i = k;
        } else {
            // Bare literal (number, None, True...): up to the next comma.
            let mut k = i;
            while k < end && chars[k] != ',' {
                if matches!(chars[k], '[' | ']' | '(' | ')' | '{' | '}' | '\'' | '"') {
                    return None;
                }
                k += 1;
            }
            let lit: String = chars[i..k].iter().collect::<String>();
            let lit = strip(&lit).to_string();
            if lit.is_empty() {
                return None;
            }
            if float(&lit).is_none() && !matches!(lit.as_str(), "None" | "True" | "False") {
                return None;
            }
            out.push(lit);
            i = k;
        }
        skip_ws(&mut i);
        if i >= end {
            break;
        }
        if chars[i] != ',' {
            return None;
        }
        i += 1;
    }
    Some(out)
}

/// Python's `repr` of a list of strings (`['a', "b'c"]`), used when writing list cells back.
pub fn repr_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| repr_str(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// Python's `repr(str)` for printable text.
pub fn repr_str(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::new();
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("['a', \"b\"]").unwrap(), vec!["a", "b"]);
        assert_eq!(parse_list("['it\\'s', 'x\\ny']").unwrap(), vec!["it's", "x\ny"]);
        assert_eq!(parse_list("[]").unwrap(), Vec::<String>::new());
        assert_eq!(parse_list("[1, 2.5]").unwrap(), vec!["1", "2.5"]);
        assert!(parse_list("['a'").is_none());
        assert!(parse_list("hello").is_none());
        assert!(parse_list("[abc]").is_none());
        let v = vec!["it's".to_string(), "a\"b".into(), "x\\y".into()];
        assert_eq!(parse_list(&repr_list(&v)).unwrap(), v);
    }

    #[test]
    fn floats() {
        assert_eq!(float(" 1_000.5 "), Some(1000.5));
        assert_eq!(float("1e3"), Some(1000.0));
        assert_eq!(float(".5"), Some(0.5));
        assert_eq!(float("5."), Some(5.0));
        assert!(float("-inf").unwrap().is_infinite());
        assert!(float("nan").unwrap().is_nan());
        assert_eq!(float("1__0"), None);
        assert_eq!(float("abc"), None);
        assert_eq!(float("1e"), None);
        assert_eq!(float("."), None);
        assert_eq!(float("+-1"), None);
    }

    #[test]
    fn pairwise() {
        let a: Vec<f64> = (0..1000).map(|i| (i % 3) as f64 / 3.0).collect();
        let s = np_sum(&a);
        assert!((s - a.iter().sum::<f64>()).abs() < 1e-9);
    }
}
