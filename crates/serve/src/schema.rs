//! The chat-completions request, read field by field from JSON so that every refusal names the
//! field at fault (OpenAI's `param`). Fields this server does not use (`logprobs`,
//! `frequency_penalty`, `user`, …) are ignored, as OpenAI-compatible servers do, so existing
//! clients work unchanged; fields it uses must have the right type and range.

use serde_json::{Map, Value};
use tokenscale_model::chat::Conversation;
use tokenscale_model::runtime::VisionBudget;

use crate::error::ApiError;
use crate::media::{image_source, ImageSource};
use crate::options::{Limits, ServeOptions};

/// A request, checked.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The turns in order, the image parts taken out.
    pub conversation: Conversation,
    /// The conversation's image (these models take one).
    pub image: Option<ImageSource>,
    /// The vision-token budget asked (`vision_tokens`, `short_tokens`, `reducer`).
    pub budget: VisionBudget,
    /// `drop_query`: leave the question out of the query row (query-fused models; `None`:
    /// the server's setting).
    pub drop_query: Option<bool>,
    /// Most answer tokens (`max_tokens` or `max_completion_tokens`, within the limits).
    pub max_tokens: usize,
    /// Sampling temperature in 0..=2 (default 1).
    pub temperature: f64,
    /// Nucleus sampling mass in (0, 1] (default 1).
    pub top_p: f64,
    /// Sampling seed (default 0; negative seeds keep their bits).
    pub seed: u64,
    /// Stop sequences (at most 4, each non-empty and short).
    pub stop: Vec<String>,
    /// Answer as server-sent events (chunks) instead of one JSON body.
    pub stream: bool,
    /// Generate until `max_tokens` even past the model's end-of-answer token (as vLLM's
    /// `ignore_eos`: fixed-length answers for load tests).
    pub ignore_eos: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
}

/// Largest vision-token count a request may name (far above any model's; keeps the number sane).
const MAX_VISION_TOKENS: u64 = 1 << 16;
/// OpenAI allows up to four stop sequences.
const MAX_STOPS: usize = 4;
const MAX_STOP_CHARS: usize = 256;

/// Reads and checks a chat-completions body; a field missing, out of range or of the
/// wrong type gives an [`ApiError`] naming it.
pub fn parse_request(body: &Value, options: &ServeOptions) -> Result<ChatRequest, ApiError> {
    let Some(fields) = body.as_object() else {
        return Err(ApiError::invalid(None, "the request body must be a JSON object"));
    };
    if let Some(model) = fields.get("model") {
        if !model.is_string() {
            return Err(ApiError::invalid(Some("model"), "`model` must be a string"));
        }
    }
    if let Some(n) = fields.get("n").filter(|v| !v.is_null()) {
        if n.as_u64() != Some(1) {
            return Err(ApiError::invalid(Some("n"), "`n` must be 1 (one answer per request)"));
        }
    }
    let (conversation, image) = parse_messages(fields.get("messages"), options)?;
    let limits = &options.limits;
    let max_tokens = match (
        optional_uint(fields, "max_completion_tokens")?,
        optional_uint(fields, "max_tokens")?,
    ) {
        (Some(n), _) => (n, "max_completion_tokens"),
        (None, Some(n)) => (n, "max_tokens"),
        (None, None) => (limits.default_max_tokens as u64, "max_tokens"),
    };
    let max_tokens = checked_max_tokens(max_tokens, limits)?;
    let temperature = optional_number(fields, "temperature", 0.0, 2.0)?.unwrap_or(1.0);
    let top_p = optional_number(fields, "top_p", 0.0, 1.0)?.unwrap_or(1.0);
    if top_p <= 0.0 {
        return Err(ApiError::invalid(Some("top_p"), "`top_p` must be in (0, 1]"));
    }
    let seed = match fields.get("seed").filter(|v| !v.is_null()) {
        None => 0,
        Some(v) => match (v.as_u64(), v.as_i64()) {
            (Some(u), _) => u,
            // Negative seeds are valid integers to OpenAI; keep their bits.
            (None, Some(i)) => i as u64,
            _ => return Err(ApiError::invalid(Some("seed"), "`seed` must be an integer")),
        },
    };
    let stream = optional_bool(fields, "stream")?.unwrap_or(false);
    let include_usage = match fields.get("stream_options").filter(|v| !v.is_null()) {
        None => false,
        Some(Value::Object(o)) => optional_bool(o, "include_usage")
            .map_err(|e| rename(e, "stream_options.include_usage"))?
            .unwrap_or(false),
        Some(_) => {
            return Err(ApiError::invalid(
                Some("stream_options"),
                "`stream_options` must be an object",
            ))
        }
    };
    let budget =
        VisionBudget {
            tokens: optional_count(fields, "vision_tokens")?,
            short_tokens: optional_count(fields, "short_tokens")?,
            reducer: match fields.get("reducer").filter(|v| !v.is_null()) {
                None => None,
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => Some(s.clone()),
                Some(_) => return Err(ApiError::invalid(
                    Some("reducer"),
                    "`reducer` must be a reducer name (pool, uniform, visionzip, fastv, fastv:K)",
                )),
            },
        };
    Ok(ChatRequest {
        conversation,
        image,
        budget,
        drop_query: optional_bool(fields, "drop_query")?,
        max_tokens,
        temperature,
        top_p,
        seed,
        stop: parse_stop(fields.get("stop"))?,
        stream,
        ignore_eos: optional_bool(fields, "ignore_eos")?.unwrap_or(false),
        include_usage,
    })
}

fn checked_max_tokens((n, field): (u64, &str), limits: &Limits) -> Result<usize, ApiError> {
    if n == 0 {
        return Err(ApiError::invalid(Some(field), format!("`{field}` must be at least 1")));
    }
    if n > limits.max_tokens as u64 {
        return Err(ApiError::invalid_code(
            "max_tokens_exceeded",
            Some(field),
            format!("`{field}` is {n}; this server allows at most {}", limits.max_tokens),
        ));
    }
    Ok(n as usize)
}

fn rename(mut e: ApiError, param: &str) -> ApiError {
    e.param = Some(param.to_string());
    e
}

fn optional_uint(fields: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match fields.get(name).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::invalid(Some(name), format!("`{name}` must be a non-negative integer"))
        }),
    }
}

/// A vision-token count: an integer from 1 to [`MAX_VISION_TOKENS`].
fn optional_count(fields: &Map<String, Value>, name: &str) -> Result<Option<usize>, ApiError> {
    match optional_uint(fields, name)? {
        None => Ok(None),
        Some(n) if (1..=MAX_VISION_TOKENS).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(ApiError::invalid(
            Some(name),
            format!("`{name}` is {n}; it must be from 1 to {MAX_VISION_TOKENS}"),
        )),
    }
}

fn optional_number(
    fields: &Map<String, Value>,
    name: &str,
    low: f64,
    high: f64,
) -> Result<Option<f64>, ApiError> {
    match fields.get(name).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if (low..=high).contains(&x) => Ok(Some(x)),
            _ => Err(ApiError::invalid(
                Some(name),
                format!("`{name}` must be a number from {low} to {high}"),
            )),
        },
    }
}

fn optional_bool(fields: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match fields.get(name).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| {
            ApiError::invalid(Some(name), format!("`{name}` must be true or false"))
        }),
    }
}

fn parse_stop(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let stops: Vec<&Value> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
    };
    if stops.len() > MAX_STOPS {
        return Err(ApiError::invalid(
            Some("stop"),
            format!("`stop` has {} sequences; at most {MAX_STOPS}", stops.len()),
        ));
    }
    stops
        .into_iter()
        .map(|s| match s.as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= MAX_STOP_CHARS => Ok(s.to_string()),
            _ => Err(ApiError::invalid(Some("stop"), format!("`stop` must be a string or a list of strings of 1 to {MAX_STOP_CHARS} characters"))),
        })
        .collect()
}

/// The messages as a conversation (system message first, then user and assistant turns
/// alternating from the user) and the one image among their parts.
fn parse_messages(
    value: Option<&Value>,
    options: &ServeOptions,
) -> Result<(Conversation, Option<ImageSource>), ApiError> {
    let Some(messages) = value.and_then(Value::as_array).filter(|m| !m.is_empty()) else {
        return Err(ApiError::invalid(
            Some("messages"),
            "`messages` must be a non-empty list of messages",
        ));
    };
    let mut conversation = Conversation::new();
    let mut image: Option<ImageSource> = None;
    for (i, message) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let Some(fields) = message.as_object() else {
            return Err(ApiError::invalid(
                Some(&param),
                format!("`{param}` must be an object with `role` and `content`"),
            ));
        };
        let role = fields.get("role").and_then(Value::as_str).unwrap_or_default();
        let (text, images) = parse_content(fields.get("content"), &param, options)?;
        match role {
            "system" | "developer" => {
                if i != 0 || !images.is_empty() {
                    return Err(ApiError::invalid(
                        Some(&param),
                        "a system message must come first and hold text only",
                    ));
                }
                conversation = conversation.with_system(text);
            }
            "user" | "assistant" => {
                if role == "assistant" && !images.is_empty() {
                    return Err(ApiError::invalid(Some(&param), "images belong in user messages"));
                }
                for (part, source) in images {
                    if image.is_some() {
                        return Err(ApiError::invalid(
                            Some(&part),
                            "this model takes one image per conversation; this is a second one",
                        ));
                    }
                    image = Some(source);
                }
                conversation = if role == "user" {
                    conversation.user(text)
                } else {
                    conversation.assistant(text)
                };
            }
            _ => {
                return Err(ApiError::invalid(
                    Some(&format!("{param}.role")),
                    "`role` must be \"system\", \"user\" or \"assistant\"",
                ))
            }
        }
    }
    conversation.validate().map_err(|e| ApiError::invalid(Some("messages"), e.to_string()))?;
    if conversation.messages.last().map(|m| m.role) != Some(tokenscale_model::chat::Role::User) {
        return Err(ApiError::invalid(
            Some("messages"),
            "the last message must be the user's (the question to answer)",
        ));
    }
    Ok((conversation, image))
}

/// A message's text (text parts joined by newlines) and its images with the part that held each.
fn parse_content(
    value: Option<&Value>,
    param: &str,
    options: &ServeOptions,
) -> Result<(String, Vec<(String, ImageSource)>), ApiError> {
    let parts = match value {
        Some(Value::String(s)) => return Ok((s.clone(), Vec::new())),
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(ApiError::invalid(
                Some(&format!("{param}.content")),
                "`content` must be a string or a list of parts",
            ))
        }
    };
    let mut texts = Vec::new();
    let mut images = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let part_param = format!("{param}.content[{j}]");
        let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "text" => match part.get("text").and_then(Value::as_str) {
                Some(text) => texts.push(text.to_string()),
                None => {
                    return Err(ApiError::invalid(
                        Some(&format!("{part_param}.text")),
                        "a text part needs a string `text`",
                    ))
                }
            },
            "image_url" => {
                let url_param = format!("{part_param}.image_url");
                // OpenAI sends `{"url": ...}`; some clients send the URL string itself.
                let url = match part.get("image_url") {
                    Some(Value::String(url)) => url.as_str(),
                    Some(Value::Object(o)) => {
                        o.get("url").and_then(Value::as_str).unwrap_or_default()
                    }
                    _ => "",
                };
                if url.is_empty() {
                    return Err(ApiError::invalid(Some(&url_param), "an image part needs `image_url.url` (a data: URL or an allowed local path)"));
                }
                images.push((part_param.clone(), image_source(url, &url_param, options)?));
            }
            _ => {
                return Err(ApiError::invalid(
                    Some(&format!("{part_param}.type")),
                    "a content part's `type` must be \"text\" or \"image_url\"",
                ))
            }
        }
    }
    Ok((texts.join("\n"), images))
}
