//! `POST /v1/responses`: OpenAI's Responses API, stateless, on the router
//! (see [`crate::ingress::responses`] for what is carried and what refused).
//! Errors come in the OpenAI envelope, as on chat.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::Received;
use crate::dispatch::{self, Answer};
use crate::error::GatewayError;
use crate::ingress::responses::{self, ResponsesRequest, ResponsesSse};
use crate::{Gateway, RequestId};

/// The handler.
pub async fn create(
    State(gateway): State<Arc<Gateway>>,
    request_id: RequestId,
    received: Received<ResponsesRequest>,
) -> Result<Response, GatewayError> {
    let translated = responses::to_chat(received.request)?;
    let echo = translated.echo;
    let routed = dispatch::chat(
        &gateway,
        &received.caller,
        received.allowance,
        &request_id,
        translated.chat,
    )
    .await?;
    let mut response = match routed.answer {
        Answer::Whole { completion, .. } => {
            Json(responses::response(completion, &echo)).into_response()
        }
        Answer::Stream(relay) => relay.into_response(ResponsesSse::new(echo)),
    };
    routed.route.headers(&mut response);
    Ok(response)
}
