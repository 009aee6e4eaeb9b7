//! Input records → [`Conversation`]: chat JSONL (`ChatRecord`), the simple role list
//! (`ChatRecordSimple`) and the VLMEvalKit message list (`ChatRecordVLMEvla`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{Conversation, Message, Role};

/// `"image": null`, `"none"` (any case) and `""` all mean no image.
fn image_ref(image: Option<String>) -> Option<String> {
    image.filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("none"))
}

/// One `{"role", "content"}` message of a [`ChatRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `"user"` or `"assistant"` (checked by [`ChatRecord::into_conversation`]).
    pub role: String,
    /// The message text; empty for a turn still to be generated.
    pub content: String,
}

/// One line of a chat JSONL file: `{"image": str|null|"none", "messages": [{"role", "content"}]}`.
/// Other keys (ids, sources, …) are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRecord {
    /// Image reference; `null`, `""` and `"none"` (any case) mean no image.
    #[serde(default)]
    pub image: Option<String>,
    /// The messages, user first, alternating with the assistant.
    pub messages: Vec<ChatMessage>,
}

impl ChatRecord {
    /// Roles must be "user" / "assistant", alternating, starting with "user"; at least one message.
    pub fn into_conversation(self) -> Result<Conversation> {
        if self.messages.is_empty() {
            bail!("\"messages\" is empty");
        }
        let mut conv = Conversation { image: image_ref(self.image), ..Conversation::default() };
        for (i, m) in self.messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => bail!(
                    "messages[{i}]: unknown role {other:?} (expected \"user\" or \"assistant\")"
                ),
            };
            conv.messages.push(Message { role, content: m.content });
        }
        conv.validate()?;
        Ok(conv)
    }
}

/// One chat JSONL line (no line number in errors; see [`parse_chat_jsonl`]).
pub fn parse_chat_record(line: &str) -> Result<Conversation> {
    let rec: ChatRecord =
        serde_json::from_str(line).map_err(|e| anyhow!("not a chat record ({e})"))?;
    rec.into_conversation()
}

/// A whole chat JSONL text; blank lines are skipped; errors name the 1-based line.
pub fn parse_chat_jsonl(text: &str) -> Result<Vec<Conversation>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_chat_record(line).with_context(|| format!("line {}", n + 1))?);
    }
    Ok(out)
}

/// `ChatRecordSimple` entry: `{role: image|system|user|assistant, content}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleEntry {
    /// `"image"`, `"system"`, `"user"` or `"assistant"`; other roles are skipped with a warning.
    pub role: String,
    /// The image reference, system prompt or message text.
    pub content: String,
}

/// The simple role list. The image and system entries may come anywhere before the first user
/// message (the image anywhere); user / assistant must alternate starting with the user. Entries
/// out of order (a second image or system, a system after the conversation started, two users or
/// two assistants in a row, an assistant first) and unknown roles are skipped with a warning,
/// returned alongside the conversation.
pub fn conversation_from_simple(entries: &[SimpleEntry]) -> (Conversation, Vec<String>) {
    let mut conv = Conversation::default();
    let mut warnings = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let expected = if conv.messages.len() % 2 == 0 { Role::User } else { Role::Assistant };
        match e.role.as_str() {
            "image" if conv.image.is_none() => conv.image = image_ref(Some(e.content.clone())),
            "image" => warnings.push(format!("entry {i}: a second image is skipped (one image per record)")),
            "system" if conv.system.is_none() && conv.messages.is_empty() => conv.system = Some(e.content.clone()),
            "system" => warnings.push(format!("entry {i}: system entry out of order, skipped")),
            r @ ("user" | "assistant") => {
                let role = if r == "user" { Role::User } else { Role::Assistant };
                if role == expected {
                    conv.messages.push(Message { role, content: e.content.clone() });
                } else {
                    warnings.push(format!("entry {i}: {r} entry out of order (expected {}), skipped", expected.as_str()));
                }
            }
            other => warnings.push(format!(
                "entry {i}: unknown role {other:?} (expected image, system, user or assistant), skipped"
            )),
        }
    }
    (conv, warnings)
}

/// A JSON array of simple entries.
pub fn parse_simple_record(json: &str) -> Result<(Conversation, Vec<String>)> {
    let entries: Vec<SimpleEntry> = serde_json::from_str(json).map_err(|e| {
        anyhow!("not a simple role list [{{\"role\": ..., \"content\": ...}}] ({e})")
    })?;
    Ok(conversation_from_simple(&entries))
}

/// VLMEvalKit message item: `{"type": "image"|"text", "value": str}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlmEvalItem {
    /// `"image"` or `"text"` (the JSON key `type`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The image reference or the text.
    pub value: String,
}

/// VLMEvalKit message list: texts alternate user / assistant (user first); at most one image.
/// With `add_endoftext` an empty assistant message is appended when the last text is the
/// user's, so the prompt ends with the assistant's turn (the original appends "" by count parity).
pub fn conversation_from_vlmeval(
    items: &[VlmEvalItem],
    add_endoftext: bool,
) -> Result<Conversation> {
    let mut conv = Conversation::default();
    for (i, it) in items.iter().enumerate() {
        match it.kind.as_str() {
            "image" => {
                if conv.image.is_some() {
                    bail!(
                        "item {i}: a second image (only one image per message list is supported)"
                    );
                }
                conv.image = image_ref(Some(it.value.clone()));
            }
            "text" => {
                let role = if conv.messages.len() % 2 == 0 { Role::User } else { Role::Assistant };
                conv.messages.push(Message { role, content: it.value.clone() });
            }
            other => bail!("item {i}: unknown type {other:?} (expected \"image\" or \"text\")"),
        }
    }
    if conv.messages.is_empty() {
        bail!("the message list has no text item");
    }
    if add_endoftext {
        conv = conv.for_generation();
    }
    Ok(conv)
}

/// A JSON array of VLMEvalKit items.
pub fn parse_vlmeval_message(json: &str, add_endoftext: bool) -> Result<Conversation> {
    let items: Vec<VlmEvalItem> = serde_json::from_str(json).map_err(|e| {
        anyhow!("not a VLMEvalKit message list [{{\"type\": ..., \"value\": ...}}] ({e})")
    })?;
    conversation_from_vlmeval(&items, add_endoftext)
}

/// Which of the three input shapes a JSON record has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordShape {
    /// `{"image": ..., "messages": [{"role", "content"}]}`.
    Chat,
    /// `[{"role": image|system|user|assistant, "content"}]`.
    Simple,
    /// `[{"type": image|text, "value"}]`.
    VlmEval,
}

/// Tells the shape from the JSON: an object is a chat record; an array is a VLMEvalKit list when
/// its first item has "type", a simple role list when it has "role".
pub fn record_shape(json: &str) -> Result<RecordShape> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| anyhow!("not JSON ({e})"))?;
    let first = match &v {
        serde_json::Value::Object(_) => return Ok(RecordShape::Chat),
        serde_json::Value::Array(a) => a.first(),
        _ => None,
    };
    match first {
        Some(serde_json::Value::Object(o)) if o.contains_key("type") => Ok(RecordShape::VlmEval),
        Some(serde_json::Value::Object(o)) if o.contains_key("role") => Ok(RecordShape::Simple),
        _ => bail!(
            "not a record: expected {{\"image\", \"messages\"}}, a list of {{\"role\", \"content\"}} or a list of {{\"type\", \"value\"}}"
        ),
    }
}

/// Any of the three shapes → conversation + warnings (only the simple role list warns).
/// `add_endoftext` applies to the VLMEvalKit shape (see [`conversation_from_vlmeval`]).
pub fn parse_any_record(json: &str, add_endoftext: bool) -> Result<(Conversation, Vec<String>)> {
    match record_shape(json)? {
        RecordShape::Chat => Ok((parse_chat_record(json)?, Vec::new())),
        RecordShape::Simple => parse_simple_record(json),
        RecordShape::VlmEval => Ok((parse_vlmeval_message(json, add_endoftext)?, Vec::new())),
    }
}

/// A conversation record read from a file: one JSON record of any of the three shapes (given
/// assistant turns kept), its image reference resolved against the file's folder, and the
/// warnings of [`parse_any_record`] prefixed with the file name.
pub struct RecordFile {
    /// The conversation, validated.
    pub conversation: Conversation,
    /// The image path, relative references resolved against the record file's folder.
    pub image: Option<PathBuf>,
    /// What was skipped while parsing, each prefixed with the file name.
    pub warnings: Vec<String>,
}

/// Reads and validates one conversation record file (see [`RecordFile`]); errors name the file.
pub fn read_record_file(path: &Path) -> Result<RecordFile> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("{origin}: cannot read"))?;
    let (conversation, warnings) = parse_any_record(&text, false)
        .with_context(|| format!("{origin}: not a conversation record"))?;
    conversation.validate().with_context(|| format!("{origin}: invalid conversation"))?;
    let image =
        conversation.image.as_ref().map(|r| path.parent().unwrap_or(Path::new(".")).join(r));
    let warnings = warnings.into_iter().map(|w| format!("{origin}: {w}")).collect();
    Ok(RecordFile { conversation, image, warnings })
}
