#![allow(dead_code)]
//! A server on the shipped tiny query-fused model, and a small blocking HTTP client (ureq).

use std::io::Cursor;
use std::path::PathBuf;

use base64::Engine;
use serde_json::{json, Value};
use tokenscale_model::runtime::Runtime;
use tokenscale_serve::{ServeOptions, Server};

pub fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny-imgque")
}

pub fn load() -> Runtime {
    Runtime::load(&model_dir(), tokenscale_model::DType::F32, &tokenscale_model::Device::Cpu)
        .expect("the shipped model loads")
}

pub fn start(options: ServeOptions) -> Server {
    Server::start(load(), ServeOptions { port: 0, model_name: "tiny-imgque".into(), ..options })
        .expect("server starts")
}

pub fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

/// A PNG of `size`×`size` pixels: a gradient shifted by `seed`.
pub fn png(size: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(size, size, |x, y| {
        image::Rgb([(x * 7) as u8 ^ seed, (y * 5) as u8, seed.wrapping_mul(31)])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("png encodes");
    bytes
}

pub fn data_url(bytes: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A one-question request about an image, greedy.
pub fn ask(image: &[u8], question: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": "tiny-imgque",
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(image)}},
            {"type": "text", "text": question},
        ]}],
        "temperature": 0,
        "max_tokens": 24,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    body
}

/// Status, body text and the Retry-After header of a POST.
pub fn post_raw(url: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, String, Option<String>) {
    let mut request = ureq::post(url).set("Content-Type", "application/json");
    for (k, v) in headers {
        request = request.set(k, v);
    }
    let response = match request.send_bytes(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {url}: {e}"),
    };
    let status = response.status();
    let retry = response.header("Retry-After").map(str::to_string);
    (status, response.into_string().expect("body reads"), retry)
}

pub fn post(url: &str, body: &Value) -> (u16, Value) {
    let (status, text, _) = post_raw(url, body.to_string().as_bytes(), &[]);
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}")),
    )
}

pub fn get(url: &str) -> (u16, String) {
    match ureq::get(url).call() {
        Ok(r) => (r.status(), r.into_string().expect("body reads")),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().expect("body reads")),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

pub fn content(answer: &Value) -> String {
    answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {answer}"))
        .to_string()
}

/// The `data:` payloads of a server-sent-events body, in order.
pub fn sse_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}
