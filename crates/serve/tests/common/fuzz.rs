//! Malformed requests for the server, from a seed: valid requests mutated at the byte level
//! (flips, cuts, insertions) and at the JSON level (values replaced by wrong types, extreme
//! numbers, huge or odd strings, deep nesting; keys removed or invented), and image parts
//! replaced by broken ones (bad base64, truncated PNG, a header claiming a huge image, random
//! bytes, network URLs, paths outside the allowed folder).

use base64::Engine;
use serde_json::{json, Value};
use tokenscale_base::rng::SplitMix64;

pub struct Mutator {
    rng: SplitMix64,
    seeds: Vec<Value>,
    images: Vec<String>,
}

fn data_url(bytes: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    chunk.extend_from_slice(&crc.finalize().to_be_bytes());
    chunk
}

/// A well-formed PNG header (valid CRC) claiming `width`×`height` RGB pixels, with a few bytes
/// of compressed data: decoding it would need gigabytes.
pub fn bomb_png(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = width.to_be_bytes().to_vec();
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend(png_chunk(b"IHDR", &header));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

impl Mutator {
    /// `image` is a valid small PNG used by the seed requests.
    pub fn new(seed: u64, image: &[u8]) -> Self {
        let url = data_url(image);
        let part = |url: &str| json!({"type": "image_url", "image_url": {"url": url}});
        let seeds = vec![
            json!({"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 1}),
            json!({"messages": [{"role": "user", "content": [part(&url), {"type": "text", "text": "What shape?"}]}], "max_tokens": 2, "temperature": 0, "vision_tokens": 16}),
            json!({"messages": [{"role": "user", "content": [part(&url), {"type": "text", "text": "Color?"}]}], "max_tokens": 2, "stream": true, "stream_options": {"include_usage": true}}),
            json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [part(&url), {"type": "text", "text": "a"}]},
                {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}], "max_completion_tokens": 1, "short_tokens": 8, "stop": ["x"], "seed": 3}),
        ];
        let mut truncated = image.to_vec();
        truncated.truncate(image.len() / 3);
        let mut corrupt = image.to_vec();
        for i in (20..corrupt.len()).step_by(7) {
            corrupt[i] ^= 0x5a;
        }
        let images = vec![
            "data:image/png;base64,!!!!".to_string(),
            "data:image/png;base64".to_string(),
            "data:,".to_string(),
            data_url(&truncated),
            data_url(&corrupt),
            data_url(&bomb_png(100_000, 100_000)),
            data_url(&bomb_png(5000, 5000)),
            data_url(&bomb_png(0, 7)),
            data_url(b"GIF89a\x01\x00\x01\x00"),
            data_url(&[0u8; 64]),
            "http://example.com/a.png".into(),
            "HTTPS://example.com/a.png".into(),
            "file:///etc/shadow".into(),
            "../../../etc/passwd".into(),
            "/dev/zero".into(),
            String::new(),
        ];
        Self { rng: SplitMix64::new(seed), seeds, images }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.below(items.len())]
    }

    /// A value of a wrong type, an extreme number, or an odd string.
    fn odd_value(&mut self) -> Value {
        match self.rng.below(16) {
            0 => Value::Null,
            1 => json!(true),
            2 => json!(-1),
            3 => json!(0),
            4 => json!(1e308),
            5 => json!(i64::MIN),
            6 => json!(u64::MAX),
            7 => json!(-0.5),
            8 => json!("x".repeat(1 + self.rng.below(200_000))),
            9 => json!("\u{0000}\u{ffff}é😀\\\"\n"),
            10 => json!([]),
            11 => json!({}),
            12 => {
                let depth = 1 + self.rng.below(300);
                serde_json::from_str(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)))
                    .unwrap_or(Value::Null)
            }
            13 => json!([1, "two", null, {"three": 3}]),
            14 => json!(self.rng.next_u64() as i64),
            _ => json!(self.rng.next_f64() * 1e6 - 5e5),
        }
    }

    /// Every path to a value in `v` (object keys and array indices).
    fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
        out.push(prefix.clone());
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    prefix.push(json!(k));
                    Self::paths(child, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    prefix.push(json!(i));
                    Self::paths(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {}
        }
    }

    fn at<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
        path.iter().try_fold(v, |v, key| match key {
            Value::String(k) => v.get_mut(k.as_str()),
            Value::Number(i) => v.get_mut(i.as_u64()? as usize),
            _ => None,
        })
    }

    fn mutate_json(&mut self, mut v: Value) -> Value {
        for _ in 0..1 + self.rng.below(3) {
            let mut all = Vec::new();
            Self::paths(&v, &mut Vec::new(), &mut all);
            let path = self.pick(&all).clone();
            match self.rng.below(5) {
                0 | 1 => {
                    let odd = self.odd_value();
                    if let Some(slot) = Self::at(&mut v, &path) {
                        *slot = odd;
                    }
                }
                2 => {
                    // Remove the last key of the path from its parent.
                    if let (Some((last, parent)), true) = (path.split_last(), !path.is_empty()) {
                        if let (Some(Value::Object(map)), Value::String(k)) =
                            (Self::at(&mut v, parent), last)
                        {
                            map.remove(k);
                        }
                    }
                }
                3 => {
                    let odd = self.odd_value();
                    if let Some(Value::Object(map)) = Self::at(&mut v, &path) {
                        map.insert(format!("unknown_{}", self.rng.below(1000)), odd);
                    }
                }
                _ => {
                    let field = *self.pick(&[
                        "max_tokens",
                        "vision_tokens",
                        "short_tokens",
                        "temperature",
                        "top_p",
                        "seed",
                        "n",
                        "max_completion_tokens",
                    ]);
                    let value = self
                        .pick(&[
                            json!(-1),
                            json!(0),
                            json!(1u64 << 62),
                            json!(1e300),
                            json!(512),
                            json!(100_000),
                            json!(2.5),
                            json!("7"),
                        ])
                        .clone();
                    if let Some(map) = v.as_object_mut() {
                        map.insert(field.to_string(), value);
                    }
                }
            }
        }
        v
    }

    fn mutate_image(&mut self, mut v: Value) -> Value {
        let url = self.pick(&self.images.clone()).clone();
        let mut all = Vec::new();
        Self::paths(&v, &mut Vec::new(), &mut all);
        if let Some(path) = all.iter().find(|p| p.last() == Some(&json!("url"))) {
            if let Some(slot) = Self::at(&mut v, path) {
                *slot = json!(url);
            }
        }
        v
    }

    fn mutate_bytes(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
        for _ in 0..1 + self.rng.below(8) {
            if bytes.is_empty() {
                break;
            }
            let at = self.rng.below(bytes.len());
            match self.rng.below(4) {
                0 => bytes[at] ^= 1 << self.rng.below(8),
                1 => bytes.truncate(at),
                2 => bytes.insert(at, *self.pick(b"{}[]\",:\\0-e.")),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        bytes
    }

    /// The next malformed (or, now and then, accidentally valid) request body.
    pub fn next_body(&mut self) -> Vec<u8> {
        let seed = self.pick(&self.seeds.clone()).clone();
        match self.rng.below(10) {
            0..=2 => self.mutate_bytes(seed.to_string().into_bytes()),
            3..=5 => self.mutate_json(seed).to_string().into_bytes(),
            6..=7 => self.mutate_image(seed).to_string().into_bytes(),
            8 => {
                let mutated = self.mutate_json(seed);
                self.mutate_image(mutated).to_string().into_bytes()
            }
            _ => {
                let cut = self.rng.below(64);
                format!("{{\"messages\": {}", "[".repeat(cut)).into_bytes()
            }
        }
    }
}
