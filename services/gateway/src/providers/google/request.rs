//! OpenAI chat request → Gemini `generateContent` request.
//!
//! - `system` / `developer` messages → `systemInstruction`;
//! - roles: `user` → `user`, `assistant` → `model`; `tool` messages →
//!   `functionResponse` parts in a `user` turn, named after the call they
//!   answer (Gemini matches results by function name); consecutive turns of
//!   one role are merged;
//! - assistant `tool_calls` → `functionCall` parts (arguments parsed);
//! - images: base64 data URLs → `inlineData`;
//! - `temperature`, `top_p`, `top_k`, `max_tokens`, `stop` (up to 5), `n`
//!   (up to 8), `seed`, presence/frequency penalties → `generationConfig`;
//! - JSON mode: `responseMimeType: application/json`, with the schema of
//!   `json_schema` as `responseJsonSchema` (standard JSON Schema, as OpenAI's
//!   is; `responseSchema` would take only Google's OpenAPI subset);
//! - tools → `functionDeclarations`; `tool_choice` none/auto/required/named →
//!   `NONE`/`AUTO`/`ANY`/`ANY` with `allowedFunctionNames`.
//!
//! `user` is dropped: Gemini has no end-user field.
//!
//! Refused by [`check`], naming the field: logprobs, logit bias, more than
//! 5 stop sequences or 8 choices, audio and file parts, image URLs that are
//! not data URLs (Gemini fetches no URLs here), and tool results that answer
//! no earlier call.

use std::collections::HashMap;

use catalog::Model;
use gemini::{
    Blob, Content, FunctionCall, FunctionCallingConfig, FunctionDeclaration, FunctionResponse,
    GenerateContentRequest, GenerationConfig, Part, Tool, ToolConfig,
};
use openai::{ChatRequest, Content as OContent, ContentPart, Message, Role};
use serde_json::{json, Value};

use crate::providers::translate::{
    arguments, asks, check_messages, refuse, tool_output, MessageRules,
};
use crate::providers::Unsupported;

/// Refuses what Gemini cannot carry faithfully, naming the field.
pub fn check(request: &ChatRequest) -> Result<(), Unsupported> {
    if request.n.unwrap_or(1) > 8 {
        return refuse("n", "Gemini returns at most 8 candidates");
    }
    if request
        .stop
        .as_ref()
        .is_some_and(|s| s.sequences().len() > 5)
    {
        return refuse("stop", "Gemini takes at most 5 stop sequences");
    }
    let refused = [
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "audio",
        "prediction",
    ];
    if let Some(field) = refused.into_iter().find(|f| asks(request, f)) {
        return refuse(field, format!("Gemini does not support `{field}` here"));
    }
    check_messages(
        request,
        &MessageRules {
            image: |url| {
                url.strip_prefix("data:")
                    .is_some_and(|rest| rest.contains(";base64,"))
            },
            image_refusal: "Gemini takes images as base64 data URLs",
            results_need_call: true,
        },
    )
}

/// The Gemini request for `request`. Call [`check`] first.
pub fn translate(
    model: &Model,
    request: &ChatRequest,
) -> Result<GenerateContentRequest, Unsupported> {
    let (system, contents) = contents(request)?;
    let (mime, schema) = json_mode(request);
    let config = GenerationConfig {
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request
            .extra
            .get("top_k")
            .and_then(Value::as_u64)
            .map(|k| k as u32),
        max_output_tokens: Some(
            request
                .requested_output_tokens()
                .unwrap_or(model.max_output_tokens),
        ),
        stop_sequences: request
            .stop
            .as_ref()
            .map(|s| s.sequences().into_iter().map(str::to_owned).collect()),
        candidate_count: request.n.filter(|&n| n != 1),
        seed: request.seed,
        presence_penalty: request
            .extra
            .get("presence_penalty")
            .and_then(Value::as_f64),
        frequency_penalty: request
            .extra
            .get("frequency_penalty")
            .and_then(Value::as_f64),
        response_mime_type: mime,
        response_schema: None,
        response_json_schema: schema,
        extra: Default::default(),
    };
    Ok(GenerateContentRequest {
        contents,
        system_instruction: system,
        generation_config: Some(config),
        tools: tools_of(request),
        tool_config: tool_config_of(request),
        extra: Default::default(),
    })
}

fn json_mode(request: &ChatRequest) -> (Option<String>, Option<Value>) {
    let Some(format) = &request.response_format else {
        return (None, None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("json_object") => (Some("application/json".into()), None),
        Some("json_schema") => (
            Some("application/json".into()),
            format.pointer("/json_schema/schema").cloned(),
        ),
        _ => (None, None),
    }
}

/// The system instruction and the turns.
fn contents(request: &ChatRequest) -> Result<(Option<Content>, Vec<Content>), Unsupported> {
    let mut system: Vec<Part> = Vec::new();
    let mut turns: Vec<Content> = Vec::new();
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for message in &request.messages {
        let (role, parts) = match message.role {
            Role::System | Role::Developer => {
                system.extend(message.texts().map(Part::text));
                continue;
            }
            Role::Assistant => {
                for call in message.tool_calls.iter().flatten() {
                    call_names.insert(&call.id, &call.function.name);
                }
                ("model", model_parts(message)?)
            }
            Role::Tool => ("user", vec![function_response(message, &call_names)?]),
            Role::User => ("user", user_parts(message)?),
            Role::Function => {
                return refuse(
                    "messages",
                    "legacy `function` messages are not supported; use `tool` messages",
                )
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => turns.push(Content {
                role: Some(role.into()),
                parts,
            }),
        }
    }
    let system = (!system.is_empty()).then_some(Content {
        role: None,
        parts: system,
    });
    Ok((system, turns))
}

fn user_parts(message: &Message) -> Result<Vec<Part>, Unsupported> {
    match &message.content {
        Some(OContent::Text(text)) => Ok(vec![Part::text(text)]),
        Some(OContent::Parts(parts)) => parts.iter().map(part).collect(),
        None => Ok(Vec::new()),
    }
}

fn part(part: &ContentPart) -> Result<Part, Unsupported> {
    match part {
        ContentPart::Text { text, .. } | ContentPart::Refusal { refusal: text } => {
            Ok(Part::text(text))
        }
        ContentPart::ImageUrl { image_url } => {
            let inline = image_url
                .url
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(";base64,"));
            match inline {
                Some((mime_type, data)) => Ok(Part {
                    inline_data: Some(Blob {
                        mime_type: mime_type.into(),
                        data: data.into(),
                    }),
                    ..Default::default()
                }),
                None => refuse("messages", "Gemini takes images as base64 data URLs"),
            }
        }
        ContentPart::InputAudio { .. } | ContentPart::File { .. } => {
            refuse("messages", "Gemini takes text and image parts here")
        }
    }
}

fn model_parts(message: &Message) -> Result<Vec<Part>, Unsupported> {
    let mut parts: Vec<Part> = message
        .texts()
        .filter(|t| !t.is_empty())
        .map(Part::text)
        .collect();
    for call in message.tool_calls.iter().flatten() {
        let args = arguments(call)?;
        parts.push(Part {
            function_call: Some(FunctionCall {
                id: None,
                name: call.function.name.clone(),
                args,
            }),
            ..Default::default()
        });
    }
    Ok(parts)
}

fn function_response(
    message: &Message,
    call_names: &HashMap<&str, &str>,
) -> Result<Part, Unsupported> {
    let Some(id) = message.tool_call_id.as_deref() else {
        return refuse("messages", "a `tool` message needs its `tool_call_id`");
    };
    let Some(name) = call_names.get(id) else {
        return refuse(
            "messages",
            format!("tool result `{id}` answers no earlier tool call"),
        );
    };
    let (text, object) = tool_output(message);
    let response = object.unwrap_or_else(|| json!({"result": text}));
    Ok(Part {
        function_response: Some(FunctionResponse {
            id: None,
            name: (*name).to_owned(),
            response,
        }),
        ..Default::default()
    })
}

fn tools_of(request: &ChatRequest) -> Option<Vec<Tool>> {
    let tools = request.tools.as_ref().filter(|t| !t.is_empty())?;
    Some(vec![Tool {
        function_declarations: tools
            .iter()
            .map(|t| FunctionDeclaration {
                name: t.function.name.clone(),
                description: t.function.description.clone(),
                parameters: t.function.parameters.clone(),
            })
            .collect(),
        extra: Default::default(),
    }])
}

fn tool_config_of(request: &ChatRequest) -> Option<ToolConfig> {
    let (mode, allowed) = match request.tool_choice.as_ref()? {
        Value::String(s) if s == "none" => ("NONE", None),
        Value::String(s) if s == "required" => ("ANY", None),
        Value::String(_) => ("AUTO", None),
        choice => match choice.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => ("ANY", Some(vec![name.to_owned()])),
            None => ("AUTO", None),
        },
    };
    Some(ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode: mode.into(),
            allowed_function_names: allowed,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::{keys, request, with};
    use catalog::Catalog;

    fn out(value: Value) -> Value {
        let catalog = Catalog::builtin();
        let r = request(value);
        check(&r).expect("carried");
        serde_json::to_value(translate(catalog.model("gemini-2.5-pro").unwrap(), &r).unwrap())
            .unwrap()
    }

    #[test]
    fn each_field_has_its_gemini_counterpart() {
        let cases = [
            (
                json!({}),
                "/generationConfig/maxOutputTokens",
                json!(65_536),
            ),
            (
                json!({"max_completion_tokens": 9}),
                "/generationConfig/maxOutputTokens",
                json!(9),
            ),
            (
                json!({"stop": "END"}),
                "/generationConfig/stopSequences",
                json!(["END"]),
            ),
            (
                json!({"frequency_penalty": 0.2}),
                "/generationConfig/frequencyPenalty",
                json!(0.2),
            ),
            (
                json!({"response_format": {"type": "json_object"}}),
                "/generationConfig/responseMimeType",
                json!("application/json"),
            ),
            (
                json!({"tool_choice": "none"}),
                "/toolConfig/functionCallingConfig/mode",
                json!("NONE"),
            ),
            (
                json!({"tool_choice": "auto"}),
                "/toolConfig/functionCallingConfig/mode",
                json!("AUTO"),
            ),
            (
                json!({"tool_choice": "required"}),
                "/toolConfig/functionCallingConfig/mode",
                json!("ANY"),
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]}),
                "/tools/0/functionDeclarations/0",
                json!({"name": "f", "description": "d", "parameters": {"type": "object"}}),
            ),
        ];
        for (fields, pointer, expected) in cases {
            let translated = out(with(fields.clone()));
            assert_eq!(
                translated.pointer(pointer),
                Some(&expected),
                "{fields} → {translated}"
            );
        }
        // n = 1 is Gemini's default and not sent; OpenAI-only fields never leak.
        let translated = out(with(
            json!({"n": 1, "store": true, "user": "u", "prefer": "cheap"}),
        ));
        assert!(translated["generationConfig"]
            .get("candidateCount")
            .is_none());
        assert_eq!(keys(&translated), ["contents", "generationConfig"]);
    }

    #[test]
    fn a_json_object_tool_result_is_sent_as_is() {
        let translated = out(json!({"model": "m", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "{\"temp\": 4}"}
        ]}));
        assert_eq!(
            translated["contents"][2]["parts"][0]["functionResponse"],
            json!({"name": "f", "response": {"temp": 4}})
        );
    }

    #[test]
    fn what_cannot_be_carried_is_refused_by_field() {
        let refusals = [
            (with(json!({"n": 9})), "n"),
            (
                with(json!({"stop": ["1", "2", "3", "4", "5", "6"]})),
                "stop",
            ),
            (with(json!({"logprobs": true})), "logprobs"),
            (with(json!({"logit_bias": {"1": 2}})), "logit_bias"),
            (
                json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}),
                "messages",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
                "messages",
            ),
            (
                json!({"model": "m", "messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{"}}]}]}),
                "messages",
            ),
        ];
        for (value, param) in refusals {
            assert_eq!(
                check(&request(value.clone())).unwrap_err().param,
                param,
                "{value}"
            );
        }
        assert!(check(&request(with(json!({"n": 8, "logprobs": false})))).is_ok());
    }
}
