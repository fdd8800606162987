//! The Bedrock Runtime Converse API (`POST /model/{modelId}/converse` and
//! `/converse-stream`) as serde types: what the gateway's adapter sends and
//! reads, and what the simulator accepts and answers. Content blocks are
//! objects with one key naming their kind (`{"text": "..."}`,
//! `{"toolUse": {...}}`), which is serde's externally tagged enum.
//!
//! A stream is AWS event-stream frames whose `:event-type` header names the
//! event and whose payload is the JSON of one of the `*Event` types here.
//!
//! Reference: <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>.
//! Titan embeddings (InvokeModel) are in the `titan` types.

pub mod eventstream;
pub mod sigv4;
mod titan;

pub use titan::*;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Fields passed through untouched.
pub type Extra = serde_json::Map<String, Value>;

/// The Converse request body (the model id is in the path).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest {
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Vec<SystemBlock>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    /// Model-specific fields (e.g. `top_k`), passed to the model as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A turn: `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Vec<ContentBlock>,
}

/// One content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContentBlock {
    Text(String),
    Image(ImageBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    /// Reasoning output of models that think (kept as sent).
    ReasoningContent(Value),
    /// A prompt-cache checkpoint: what comes before it may be cached.
    CachePoint(CachePoint),
}

/// A system prompt block: text, or a prompt-cache checkpoint after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SystemBlock {
    Text(String),
    CachePoint(CachePoint),
}

/// `{"type": "default"}`: the only kind of cache checkpoint the API has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachePoint {
    #[serde(rename = "type")]
    pub kind: String,
}

impl Default for CachePoint {
    fn default() -> Self {
        CachePoint {
            kind: "default".into(),
        }
    }
}

/// An image: its format (`png`, `jpeg`, `gif`, `webp`) and base64 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBlock {
    pub format: String,
    pub source: ImageSource,
}

/// Where an image's bytes are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSource {
    /// Base64, in the JSON protocol.
    pub bytes: String,
}

/// The model asks for a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlock {
    pub tool_use_id: String,
    pub name: String,
    pub input: Value,
}

/// A tool's result, sent back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    pub content: Vec<ToolResultContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A piece of a tool result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolResultContent {
    Text(String),
    Json(Value),
}

/// `inferenceConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
}

/// `toolConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

/// A tool (a function spec), or a prompt-cache checkpoint after the tools before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Tool {
    ToolSpec(ToolSpec),
    CachePoint(CachePoint),
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: InputSchema,
}

/// A JSON schema, wrapped as the API wants it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSchema {
    pub json: Value,
}

/// `toolChoice`: `{"auto": {}}`, `{"any": {}}` or `{"tool": {"name"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolChoice {
    Auto(Empty),
    Any(Empty),
    Tool(NamedTool),
}

/// `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

/// `{"name": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTool {
    pub name: String,
}

/// The Converse response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    pub output: Output,
    /// `end_turn`, `tool_use`, `max_tokens`, `stop_sequence`,
    /// `guardrail_intervened`, `content_filtered`, ...
    pub stop_reason: String,
    pub usage: TokenUsage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub message: Message,
}

/// Token counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_input_tokens: Option<u64>,
}

/// `metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub latency_ms: u64,
}

/// `messageStart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageStartEvent {
    pub role: String,
}

/// `contentBlockStart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStartEvent {
    pub start: BlockStart,
    pub content_block_index: u32,
}

/// How a block starts (only tool uses announce themselves).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BlockStart {
    ToolUse(ToolUseStart),
}

/// A tool use begins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseStart {
    pub tool_use_id: String,
    pub name: String,
}

/// `contentBlockDelta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockDeltaEvent {
    pub delta: BlockDelta,
    pub content_block_index: u32,
}

/// An increment of a block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BlockDelta {
    Text(String),
    /// A piece of the tool input's JSON text.
    ToolUse(ToolUseDelta),
    ReasoningContent(Value),
}

/// `{"input": "<partial json>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUseDelta {
    pub input: String,
}

/// `contentBlockStop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStopEvent {
    pub content_block_index: u32,
}

/// `messageStop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStopEvent {
    pub stop_reason: String,
}

/// `metadata`: the last event, with usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataEvent {
    pub usage: TokenUsage,
    pub metrics: Metrics,
}

/// The body of an error (HTTP, or an exception frame in a stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}

/// The error type AWS names for an HTTP status (in `x-amzn-ErrorType`).
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}
