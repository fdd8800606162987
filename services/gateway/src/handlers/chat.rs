//! `POST /v1/chat/completions`: authenticate, parse, dispatch, answer in
//! OpenAI's shapes (a completion, or SSE chunks ending in a usage chunk and
//! `[DONE]`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openai::{ChatRequest, ErrorBody};

use super::{Parsed, Received};
use crate::dispatch::relay::sse_event;
use crate::dispatch::{self, Encoder, Relayed};
use crate::error::GatewayError;
use crate::keys::Caller;
use crate::{Gateway, RequestId};

/// `POST /v1/router/explain` (or `GET` with a body): what `model: "auto"`
/// would decide for this chat request, and why, without calling a provider.
pub async fn explain(
    State(gateway): State<Arc<Gateway>>,
    _caller: Caller,
    Parsed(request): Parsed<ChatRequest>,
) -> Result<Json<crate::auto::Explanation>, GatewayError> {
    dispatch::validate(&request)?;
    Ok(Json(gateway.decide_auto(&request)))
}

/// The handler.
pub async fn completions(
    State(gateway): State<Arc<Gateway>>,
    request_id: RequestId,
    received: Received<ChatRequest>,
) -> Result<Response, GatewayError> {
    let routed = dispatch::chat(&gateway, &request_id, received).await?;
    Ok(routed.respond(|completion| Json(completion).into_response(), || OpenAiSse))
}

/// OpenAI's chunks: each as `data:`, the usage chunk, then `[DONE]`; a
/// stream the provider broke off ends with the usage so far and an error event.
struct OpenAiSse;

impl Encoder for OpenAiSse {
    fn encode(&mut self, item: Relayed) -> Bytes {
        match item {
            Relayed::Chunk(chunk) => sse_event(None, &chunk),
            Relayed::Finished(usage) => {
                let mut out = sse_event(None, &usage).to_vec();
                out.extend_from_slice(b"data: [DONE]\n\n");
                Bytes::from(out)
            }
            Relayed::BrokeOff { usage, error } => {
                let body = ErrorBody::new(
                    "server_error",
                    format!("The provider's stream broke off: {error}"),
                    None,
                    Some("upstream_stream_error"),
                );
                let mut out = sse_event(None, &usage).to_vec();
                out.extend_from_slice(&sse_event(None, &body));
                Bytes::from(out)
            }
        }
    }
}
