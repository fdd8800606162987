//! OpenAI Responses ↔ chat, stateless: the request in, the response object
//! and its stream of typed events out.
//!
//! In: `instructions` becomes a system message; `input` (a string, or
//! message, `function_call` and `function_call_output` items) becomes the
//! conversation, consecutive calls one assistant turn; function `tools`,
//! `tool_choice`, `text.format` (JSON mode), `max_output_tokens`,
//! `temperature`, `top_p`, `parallel_tool_calls`, `user`, `prefer` and
//! `models` map to chat. Nothing is stored: `previous_response_id`,
//! `conversation` and `background` are refused, and every response says
//! `store: false`. Built-in tools (web search, file search, ...) and file
//! inputs are refused, naming the field; `reasoning` items of earlier
//! turns are dropped.
//!
//! Out: a `reasoning` item (when the model gives it), one `message` item
//! with an `output_text` part, one `function_call` item per call; usage
//! with `cost`; a stream of `response.*` events ending in
//! `response.completed` (`response.incomplete` when the output limit cut
//! it, `response.failed` when the provider broke off).

use axum::body::Bytes;
use openai::{
    ChatCompletion, ChatCompletionChunk, ChatRequest, Content, ContentPart, FunctionCall,
    FunctionDef, ImageUrl, Message, Role, Tool, ToolCall, Usage,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::dispatch::relay::sse_event;
use crate::dispatch::{Encoder, Relayed};
use crate::error::GatewayError;

/// `POST /v1/responses` request body: the fields the router reads, each
/// as OpenAI documents it (`prefer` and `models` are the router's, as on
/// chat); the rest is refused or ignored as the module documentation says.
#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub input: Option<Input>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub prefer: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`: one user text, or a list of items.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

/// A Responses request as chat, and the response object's fields that echo
/// the request.
pub struct Translated {
    /// The request as chat.
    pub chat: ChatRequest,
    /// The response object's fields that repeat the request (`tools`, `temperature`, ...).
    pub echo: Map<String, Value>,
}

fn invalid(message: impl Into<String>, param: &str) -> GatewayError {
    GatewayError::invalid(message, Some(param.to_owned()))
}

/// Translates `request`, refusing what a stateless router cannot do.
pub fn to_chat(request: ResponsesRequest) -> Result<Translated, GatewayError> {
    if request.previous_response_id.is_some() {
        return Err(invalid(
            "`previous_response_id` is not supported: the router does not store responses. Send the whole conversation in `input` (and `store: false`).",
            "previous_response_id",
        ));
    }
    for field in ["conversation", "background", "prompt"] {
        if request
            .extra
            .get(field)
            .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
        {
            return Err(invalid(
                format!("`{field}` is not supported: the router is stateless."),
                field,
            ));
        }
    }
    let mut messages = Vec::new();
    if let Some(instructions) = &request.instructions {
        messages.push(Message::new(
            Role::System,
            Some(Content::Text(instructions.clone())),
        ));
    }
    match request.input {
        Some(Input::Text(text)) => {
            messages.push(Message::new(Role::User, Some(Content::Text(text))))
        }
        Some(Input::Items(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                take_item(item, i, &mut messages)?;
            }
        }
        None => {}
    }
    if messages.iter().all(|m| m.role == Role::System) {
        return Err(invalid("`input` must contain at least one item.", "input"));
    }
    if request.max_output_tokens == Some(0) {
        return Err(invalid(
            "`max_output_tokens` must be at least 1.",
            "max_output_tokens",
        ));
    }
    let tools = tools(request.tools.as_deref())?;
    let tool_choice = request.tool_choice.as_ref().map(tool_choice).transpose()?;
    let response_format = request
        .text
        .as_ref()
        .map(text_format)
        .transpose()?
        .flatten();
    let mut extra = openai::Extra::new();
    if let Some(parallel) = request.parallel_tool_calls {
        extra.insert("parallel_tool_calls".into(), Value::Bool(parallel));
    }
    // The router's attribution reads it from there (and sends it nowhere).
    if let Some(metadata) = request.metadata.clone() {
        extra.insert("metadata".into(), metadata);
    }
    let echo = Map::from_iter([
        ("instructions".into(), json!(request.instructions)),
        ("max_output_tokens".into(), json!(request.max_output_tokens)),
        (
            "temperature".into(),
            json!(request.temperature.unwrap_or(1.0)),
        ),
        ("top_p".into(), json!(request.top_p.unwrap_or(1.0))),
        (
            "tool_choice".into(),
            request.tool_choice.clone().unwrap_or_else(|| json!("auto")),
        ),
        (
            "tools".into(),
            json!(request.tools.clone().unwrap_or_default()),
        ),
        (
            "parallel_tool_calls".into(),
            json!(request.parallel_tool_calls.unwrap_or(true)),
        ),
        (
            "text".into(),
            request
                .text
                .clone()
                .unwrap_or_else(|| json!({"format": {"type": "text"}})),
        ),
        (
            "metadata".into(),
            request.metadata.clone().unwrap_or_else(|| json!({})),
        ),
        ("user".into(), json!(request.user)),
        ("previous_response_id".into(), Value::Null),
        ("reasoning".into(), json!({"effort": null, "summary": null})),
        ("store".into(), Value::Bool(false)),
        ("truncation".into(), json!("disabled")),
        ("error".into(), Value::Null),
        ("incomplete_details".into(), Value::Null),
    ]);
    let chat = ChatRequest {
        model: request.model,
        models: request.models,
        messages,
        stream: request.stream,
        stream_options: None,
        max_tokens: None,
        max_completion_tokens: request.max_output_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        n: None,
        stop: None,
        seed: None,
        user: request.user,
        tools,
        tool_choice,
        response_format,
        prefer: request.prefer,
        extra,
    };
    Ok(Translated { chat, echo })
}

fn str_field<'a>(item: &'a Value, field: &str, at: usize) -> Result<&'a str, GatewayError> {
    item.get(field).and_then(Value::as_str).ok_or_else(|| {
        invalid(
            format!("`input[{at}].{field}` is required and must be a string."),
            "input",
        )
    })
}

/// Appends one input item to the conversation.
fn take_item(item: Value, at: usize, out: &mut Vec<Message>) -> Result<(), GatewayError> {
    let kind = match item.get("type").and_then(Value::as_str) {
        Some(kind) => kind,
        None if item.get("role").is_some() => "message",
        None => return Err(invalid(format!("`input[{at}].type` is required."), "input")),
    };
    match kind {
        "message" => out.push(input_message(&item, at)?),
        "function_call" => {
            let call = ToolCall {
                id: str_field(&item, "call_id", at)?.to_owned(),
                kind: "function".into(),
                function: FunctionCall {
                    name: str_field(&item, "name", at)?.to_owned(),
                    arguments: str_field(&item, "arguments", at)?.to_owned(),
                },
            };
            match out.last_mut() {
                Some(last) if last.role == Role::Assistant => {
                    last.tool_calls.get_or_insert_with(Vec::new).push(call)
                }
                _ => {
                    let mut turn = Message::new(Role::Assistant, None);
                    turn.tool_calls = Some(vec![call]);
                    out.push(turn);
                }
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => return Err(invalid(format!("`input[{at}].output` must be a string."), "input")),
            };
            let mut result = Message::new(Role::Tool, Some(Content::Text(output)));
            result.tool_call_id = Some(str_field(&item, "call_id", at)?.to_owned());
            out.push(result);
        }
        "reasoning" => {}
        other => {
            return Err(invalid(
                format!("`input[{at}]`: items of type `{}` are not supported; send message, function_call and function_call_output items.", crate::error::echo(other)),
                "input",
            ))
        }
    }
    Ok(())
}

fn input_message(item: &Value, at: usize) -> Result<Message, GatewayError> {
    let role = match str_field(item, "role", at)? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => Role::System,
        "developer" => Role::Developer,
        other => {
            return Err(invalid(
                format!(
                    "`input[{at}].role` must be user, assistant, system or developer, not `{}`.",
                    crate::error::echo(other)
                ),
                "input",
            ))
        }
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => Content::Text(text.clone()),
        Some(Value::Array(parts)) => Content::Parts(
            parts
                .iter()
                .enumerate()
                .map(|(p, part)| input_part(part, at, p))
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err(invalid(
                format!("`input[{at}].content` must be a string or a list of parts."),
                "input",
            ))
        }
    };
    Ok(Message::new(role, Some(content)))
}

fn input_part(part: &Value, at: usize, p: usize) -> Result<ContentPart, GatewayError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
    let text = || part.get("text").and_then(Value::as_str).map(str::to_owned);
    match (kind, text()) {
        ("input_text" | "output_text", Some(text)) => Ok(ContentPart::Text {
            text,
            cache_control: None,
        }),
        ("refusal", _) => Ok(ContentPart::Refusal {
            refusal: part.get("refusal").and_then(Value::as_str).unwrap_or_default().to_owned(),
        }),
        ("input_image", _) => match part.get("image_url").and_then(Value::as_str) {
            Some(url) => Ok(ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: url.to_owned(),
                    detail: part.get("detail").and_then(Value::as_str).map(str::to_owned),
                },
            }),
            None => Err(invalid(
                format!("`input[{at}].content[{p}]`: images need an `image_url` (a URL or data URL); uploaded files are not supported."),
                "input",
            )),
        },
        _ => Err(invalid(
            format!("`input[{at}].content[{p}]`: parts of type `{}` are not supported; send input_text, output_text or input_image.", crate::error::echo(kind)),
            "input",
        )),
    }
}

fn tools(tools: Option<&[Value]>) -> Result<Option<Vec<Tool>>, GatewayError> {
    let Some(tools) = tools.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let each = tools.iter().enumerate().map(|(i, tool)| {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or_default();
        let name = tool.get("name").and_then(Value::as_str);
        match (kind, name) {
            ("function", Some(name)) => Ok(Tool {
                kind: "function".into(),
                cache_control: None,
                function: FunctionDef {
                    name: name.to_owned(),
                    description: tool.get("description").and_then(Value::as_str).map(str::to_owned),
                    parameters: tool.get("parameters").cloned().filter(|p| !p.is_null()),
                    strict: tool.get("strict").and_then(Value::as_bool),
                },
            }),
            ("function", None) => Err(invalid(format!("`tools[{i}].name` is required."), "tools")),
            _ => Err(invalid(
                format!("`tools[{i}]`: tools of type `{}` are not supported; the router routes to any provider and supports function tools only.", crate::error::echo(kind)),
                "tools",
            )),
        }
    });
    each.collect::<Result<_, _>>().map(Some)
}

fn tool_choice(choice: &Value) -> Result<Value, GatewayError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            match o.get("name").and_then(Value::as_str) {
                Some(name) => Ok(json!({"type": "function", "function": {"name": name}})),
                None => Err(invalid("`tool_choice.name` is required.", "tool_choice")),
            }
        }
        _ => Err(invalid(
            "`tool_choice` must be auto, none, required or a function tool.",
            "tool_choice",
        )),
    }
}

/// Chat's `response_format` for `text.format`.
fn text_format(text: &Value) -> Result<Option<Value>, GatewayError> {
    let Some(format) = text.get("format") else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") | None => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => Ok(Some(json!({
            "type": "json_schema",
            "json_schema": {
                "name": format.get("name").cloned().unwrap_or_else(|| json!("response")),
                "schema": format.get("schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
                "strict": format.get("strict").cloned().unwrap_or(Value::Null),
            }
        }))),
        Some(other) => Err(invalid(
            format!(
                "`text.format.type` must be text, json_object or json_schema, not `{}`.",
                crate::error::echo(other)
            ),
            "text.format.type",
        )),
    }
}

/// The Responses usage for chat's, with `cost`.
fn usage(usage: &Usage) -> Value {
    let mut out = json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens()},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.get("reasoning_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0)},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    });
    if let (Some(cost), Some(fields)) = (usage.extra.get("cost"), out.as_object_mut()) {
        fields.insert("cost".into(), cost.clone());
    }
    out
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The response object: the echoed request fields plus these.
fn object(
    echo: &Map<String, Value>,
    id: &str,
    model: &str,
    status: &str,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    let mut object = echo.clone();
    object.extend([
        ("id".to_owned(), json!(id)),
        ("object".to_owned(), json!("response")),
        ("created_at".to_owned(), json!(unix_now())),
        ("status".to_owned(), json!(status)),
        ("model".to_owned(), json!(model)),
        ("output".to_owned(), Value::Array(output)),
        ("usage".to_owned(), usage),
    ]);
    if status == "incomplete" {
        object.insert(
            "incomplete_details".into(),
            json!({"reason": "max_output_tokens"}),
        );
    }
    Value::Object(object)
}

fn text_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    })
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({
        "type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status,
    })
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}]})
}

fn status_of(finish_reason: Option<&str>) -> &'static str {
    if finish_reason == Some("length") {
        "incomplete"
    } else {
        "completed"
    }
}

/// The response object for a whole completion.
pub fn response(mut completion: ChatCompletion, echo: &Map<String, Value>) -> Value {
    let answer = super::Answer::of(&mut completion);
    let mut output = Vec::new();
    if let Some(thinking) = answer.reasoning {
        output.push(reasoning_item(&super::new_id("rs_"), &thinking));
    }
    if let Some(text) = answer.text {
        output.push(text_item(&super::new_id("msg_"), &text, "completed"));
    }
    output.extend(answer.calls.into_iter().map(|call| {
        call_item(
            &super::new_id("fc_"),
            &call.id,
            &call.function.name,
            &call.function.arguments,
            "completed",
        )
    }));
    let finish = answer.finish;
    let usage = completion.usage.as_ref().map(usage).unwrap_or(Value::Null);
    object(
        echo,
        &super::new_id("resp_"),
        &completion.model,
        status_of(finish.as_deref()),
        output,
        usage,
    )
}

/// The item a stream is writing.
enum Open {
    Reasoning {
        id: String,
        text: String,
    },
    Text {
        id: String,
        text: String,
    },
    /// A function call: chat's index of it.
    Call {
        index: u32,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Chat chunks → Responses stream events.
pub struct ResponsesSse {
    echo: Map<String, Value>,
    id: String,
    model: String,
    sequence: u64,
    started: bool,
    open: Option<Open>,
    /// Finished output items, in order.
    output: Vec<Value>,
    finish: Option<String>,
}

impl ResponsesSse {
    /// An encoder for a response echoing `echo`.
    pub fn new(echo: Map<String, Value>) -> ResponsesSse {
        ResponsesSse {
            echo,
            id: super::new_id("resp_"),
            model: String::new(),
            sequence: 0,
            started: false,
            open: None,
            output: Vec::new(),
            finish: None,
        }
    }

    fn event(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        if let Some(fields) = data.as_object_mut() {
            fields.insert("type".into(), json!(kind));
            fields.insert("sequence_number".into(), json!(self.sequence));
        }
        self.sequence += 1;
        out.extend_from_slice(&sse_event(Some(kind), &data));
    }

    fn snapshot(&self, status: &str, usage: Value) -> Value {
        object(
            &self.echo,
            &self.id,
            &self.model,
            status,
            self.output.clone(),
            usage,
        )
    }

    fn start(&mut self, chunk: &ChatCompletionChunk, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.model.clone_from(&chunk.model);
        let response = self.snapshot("in_progress", Value::Null);
        self.event(out, "response.created", json!({"response": response}));
        self.event(out, "response.in_progress", json!({"response": response}));
    }

    fn index(&self) -> usize {
        self.output.len()
    }

    /// Closes the open item: its done events, and it joins the output.
    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(open) = self.open.take() else { return };
        let output_index = self.index();
        let item = match open {
            Open::Reasoning { id, text } => reasoning_item(&id, &text),
            Open::Text { id, text } => {
                let part =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.event(out, "response.output_text.done", json!({"item_id": id, "output_index": output_index, "content_index": 0, "text": text, "logprobs": []}));
                self.event(out, "response.content_part.done", json!({"item_id": id, "output_index": output_index, "content_index": 0, "part": part}));
                text_item(&id, &text, "completed")
            }
            Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                self.event(out, "response.function_call_arguments.done", json!({"item_id": id, "output_index": output_index, "name": name, "arguments": arguments}));
                call_item(&id, &call_id, &name, &arguments, "completed")
            }
        };
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": output_index, "item": item}),
        );
        self.output.push(item);
    }

    fn chunk(&mut self, chunk: ChatCompletionChunk, out: &mut Vec<u8>) {
        self.start(&chunk, out);
        if let Some(finish) = super::feed(chunk, self, out) {
            self.finish = Some(finish);
        }
    }
}

impl super::Pieces for ResponsesSse {
    fn text(&mut self, delta: String, out: &mut Vec<u8>) {
        if !matches!(self.open, Some(Open::Text { .. })) {
            self.close(out);
            let id = super::new_id("msg_");
            let output_index = self.index();
            let item = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
            self.event(
                out,
                "response.output_item.added",
                json!({"output_index": output_index, "item": item}),
            );
            let part =
                json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
            self.event(out, "response.content_part.added", json!({"item_id": id, "output_index": output_index, "content_index": 0, "part": part}));
            self.open = Some(Open::Text {
                id,
                text: String::new(),
            });
        }
        let output_index = self.index();
        if let Some(Open::Text { id, text }) = &mut self.open {
            text.push_str(&delta);
            let id = id.clone();
            self.event(out, "response.output_text.delta", json!({"item_id": id, "output_index": output_index, "content_index": 0, "delta": delta, "logprobs": []}));
        }
    }

    fn reasoning(&mut self, delta: &str, out: &mut Vec<u8>) {
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close(out);
            let id = super::new_id("rs_");
            let item = json!({"type": "reasoning", "id": id, "summary": []});
            let output_index = self.index();
            self.event(
                out,
                "response.output_item.added",
                json!({"output_index": output_index, "item": item}),
            );
            self.open = Some(Open::Reasoning {
                id,
                text: String::new(),
            });
        }
        if let Some(Open::Reasoning { text, .. }) = &mut self.open {
            text.push_str(delta);
        }
    }

    fn call(&mut self, delta: openai::ToolCallDelta, out: &mut Vec<u8>) {
        let function = delta.function.unwrap_or_default();
        let continues = matches!(&self.open, Some(Open::Call { index, .. }) if *index == delta.index && delta.id.is_none());
        if !continues {
            self.close(out);
            let id = super::new_id("fc_");
            let call_id = delta.id.unwrap_or_else(|| super::new_id("call_"));
            let name = function.name.clone().unwrap_or_default();
            let output_index = self.index();
            self.event(out, "response.output_item.added", json!({"output_index": output_index, "item": call_item(&id, &call_id, &name, "", "in_progress")}));
            self.open = Some(Open::Call {
                index: delta.index,
                id,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        let output_index = self.index();
        if let (Some(Open::Call { id, arguments, .. }), Some(piece)) =
            (&mut self.open, function.arguments.filter(|a| !a.is_empty()))
        {
            arguments.push_str(&piece);
            let id = id.clone();
            self.event(
                out,
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": output_index, "delta": piece}),
            );
        }
    }
}

impl Encoder for ResponsesSse {
    fn encode(&mut self, item: Relayed) -> Bytes {
        let mut out = Vec::with_capacity(256);
        match item {
            Relayed::Chunk(chunk) => self.chunk(chunk, &mut out),
            Relayed::Finished(chunk) => {
                self.start(&chunk, &mut out);
                self.close(&mut out);
                let status = status_of(self.finish.as_deref());
                let usage = chunk.usage.as_ref().map(usage).unwrap_or(Value::Null);
                let response = self.snapshot(status, usage);
                let kind = if status == "incomplete" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                self.event(&mut out, kind, json!({"response": response}));
            }
            Relayed::BrokeOff {
                usage: chunk,
                error,
            } => {
                self.start(&chunk, &mut out);
                self.close(&mut out);
                let usage = chunk.usage.as_ref().map(usage).unwrap_or(Value::Null);
                let mut response = self.snapshot("failed", usage);
                response["error"] = json!({"code": "server_error", "message": format!("The provider's stream broke off: {error}")});
                self.event(&mut out, "response.failed", json!({"response": response}));
            }
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<Translated, GatewayError> {
        to_chat(serde_json::from_value(body).unwrap())
    }

    #[test]
    fn calls_join_one_assistant_turn_and_outputs_become_tool_messages() {
        let out = translate(json!({
            "model": "standard", "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "weather?"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{\"x\":1}"},
                {"type": "function_call_output", "call_id": "c1", "output": "4"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "5"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []}
            ],
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
            "max_output_tokens": 50
        }))
        .unwrap();
        let chat = serde_json::to_value(out.chat).unwrap();
        let roles: Vec<_> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "tool"]);
        assert_eq!(
            chat["messages"][2]["tool_calls"].as_array().unwrap().len(),
            2
        );
        assert_eq!(chat["messages"][4]["content"], "5");
        assert_eq!(chat["response_format"]["json_schema"]["name"], "w");
        assert_eq!(chat["max_completion_tokens"], 50);
        assert_eq!(out.echo["store"], false);
    }

    #[test]
    fn stateful_and_built_in_features_are_refused_by_name() {
        let param = |body: Value| match translate(body) {
            Err(GatewayError::InvalidRequest { param, .. }) => param,
            _ => None,
        };
        let base = |extra: Value| {
            let mut body = json!({"model": "standard", "input": "hi"});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            body
        };
        assert_eq!(
            param(base(json!({"previous_response_id": "resp_1"}))).as_deref(),
            Some("previous_response_id")
        );
        assert_eq!(
            param(base(json!({"background": true}))).as_deref(),
            Some("background")
        );
        assert_eq!(
            param(base(json!({"tools": [{"type": "web_search"}]}))).as_deref(),
            Some("tools")
        );
        assert_eq!(
            param(json!({"model": "standard", "input": []})).as_deref(),
            Some("input")
        );
        assert_eq!(
            param(json!({"model": "standard", "input": [{"type": "item_reference", "id": "x"}]}))
                .as_deref(),
            Some("input")
        );
        assert!(translate(base(json!({"background": false}))).is_ok());
    }
}
