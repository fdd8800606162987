//! `POST /v1/responses`: OpenAI's Responses API, stateless, on the router
//! (see [`crate::ingress::responses`] for what is carried and what refused).
//! Errors come in the OpenAI envelope, as on chat.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::Received;
use crate::dispatch;
use crate::error::GatewayError;
use crate::ingress::responses::{self, ResponsesRequest, ResponsesSse};
use crate::{Gateway, RequestId};

/// The handler.
pub async fn create(
    State(gateway): State<Arc<Gateway>>,
    request_id: RequestId,
    received: Received<ResponsesRequest>,
) -> Result<Response, GatewayError> {
    let mut echo = Default::default();
    let received = received.try_map(|request| {
        let translated = responses::to_chat(request)?;
        echo = translated.echo;
        Ok(translated.chat)
    })?;
    let routed = dispatch::chat(&gateway, &request_id, received).await?;
    let whole = |completion| Json(responses::response(completion, &echo)).into_response();
    Ok(routed.respond(whole, || ResponsesSse::new(echo.clone())))
}
