//! `POST /v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages
//! API on the router, for the Anthropic SDKs and Claude Code. The key comes
//! as `x-api-key` or a bearer token; errors come in Anthropic's envelope.

use std::sync::Arc;

use anthropic::MessagesRequest;
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{Parsed, Received};
use crate::dispatch;
use crate::error::GatewayError;
use crate::ingress::messages::{self, MessagesSse};
use crate::keys::Caller;
use crate::{routing, Gateway, RequestId};

/// `POST /v1/messages`.
pub async fn create(
    State(gateway): State<Arc<Gateway>>,
    request_id: RequestId,
    received: Result<Received<MessagesRequest>, GatewayError>,
) -> Response {
    answer(&gateway, &request_id, received)
        .await
        .unwrap_or_else(anthropic_error)
}

async fn answer(
    gateway: &Arc<Gateway>,
    request_id: &RequestId,
    received: Result<Received<MessagesRequest>, GatewayError>,
) -> Result<Response, GatewayError> {
    let received = received?.try_map(messages::to_chat)?;
    let routed = dispatch::chat(gateway, request_id, received).await?;
    let whole = |completion| Json(messages::response(completion)).into_response();
    Ok(routed.respond(whole, MessagesSse::default))
}

/// `POST /v1/messages/count_tokens`: the prompt's input tokens, counted as
/// the router counts them for the context guard (o200k with each
/// provider's margin ignored), for the model the request names.
pub async fn count_tokens(
    State(gateway): State<Arc<Gateway>>,
    caller: Result<Caller, GatewayError>,
    request: Request,
) -> Response {
    count(&gateway, caller, request)
        .await
        .unwrap_or_else(anthropic_error)
}

/// The key is checked before the body is read, as on every route.
async fn count(
    gateway: &Arc<Gateway>,
    caller: Result<Caller, GatewayError>,
    request: Request,
) -> Result<Response, GatewayError> {
    caller?;
    let Parsed(mut value) = Parsed::<serde_json::Value>::from_request(request, gateway).await?;
    // Counting takes no output budget; the shared request type needs one.
    if let Some(fields) = value.as_object_mut() {
        fields.entry("max_tokens").or_insert(1.into());
    }
    let request: MessagesRequest = serde_json::from_value(value)
        .map_err(|e| GatewayError::invalid(format!("Invalid request body: {e}"), None))?;
    let chat = messages::to_chat(request)?;
    routing::Target::resolve(&gateway.catalog.snapshot(), &chat.model)?;
    let input_tokens = gateway.tokens.count(&tokens::Prompt::of(&chat));
    Ok(Json(serde_json::json!({ "input_tokens": input_tokens })).into_response())
}

/// An error in Anthropic's envelope, with the status and `Retry-After` the
/// chat endpoint would give.
fn anthropic_error(error: GatewayError) -> Response {
    let rendered = error.render();
    let body = messages::error_body(
        rendered.status.as_u16(),
        rendered.body.error.message.clone(),
    );
    rendered.respond(body)
}
