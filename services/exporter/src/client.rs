//! One destination's OTLP client, built with `opentelemetry-otlp` (it does
//! the protobuf/JSON encoding and the HTTP or gRPC transport), and what a
//! failed export means: try again later, or never.

use std::collections::HashMap;
use std::time::Duration;

use events::Protocol;
use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;

/// The `service.name` of every span's resource.
pub const SERVICE_NAME: &str = "model-router";

/// Where and how one destination's spans are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub protocol: Protocol,
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
}

/// Why an export did not land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportFailure {
    /// Unreachable, timed out, 429 or 5xx, gRPC UNAVAILABLE and the like:
    /// the spans stay in the backlog and are sent again after a backoff.
    Retry(String),
    /// The backend refused them (400, 401, 403, 404, 413, gRPC
    /// INVALID_ARGUMENT…): sending them again would be refused again, so
    /// they are dropped and counted.
    Rejected(String),
}

impl ExportFailure {
    /// What went wrong, for the dashboard.
    pub fn message(&self) -> &str {
        match self {
            ExportFailure::Retry(m) | ExportFailure::Rejected(m) => m,
        }
    }
}

/// An OTLP span exporter for one destination.
pub struct Client {
    inner: opentelemetry_otlp::SpanExporter,
    timeout: Duration,
}

/// An HTTP client for OTLP exports that give up after `timeout`. One is
/// shared by every destination: each owns a TLS configuration and a
/// connection pool, which a thousand destinations need not repeat.
pub fn http(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

impl Client {
    /// A client for `target` whose exports give up after `timeout`, sending
    /// HTTP through `http` (made with [`http`] and the same timeout).
    pub fn new(
        target: &Target,
        timeout: Duration,
        http: &reqwest::Client,
    ) -> Result<Client, String> {
        let mut inner = match target.protocol {
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let http = http.clone();
                let headers: HashMap<String, String> = target.headers.iter().cloned().collect();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(http)
                    .with_protocol(match target.protocol {
                        Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
                        _ => opentelemetry_otlp::Protocol::HttpBinary,
                    })
                    .with_endpoint(target.endpoint.clone())
                    .with_headers(headers)
                    .with_timeout(timeout)
                    .build()
                    .map_err(|e| e.to_string())?
            }
            Protocol::Grpc => {
                let mut headers = http::HeaderMap::new();
                for (name, value) in &target.headers {
                    let key = http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| format!("header `{name}`: {e}"))?;
                    let value = http::HeaderValue::from_str(value)
                        .map_err(|e| format!("header `{name}`: {e}"))?;
                    headers.insert(key, value);
                }
                let metadata = MetadataMap::from_headers(headers);
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(target.endpoint.clone())
                    .with_metadata(metadata)
                    .with_timeout(timeout);
                if target.endpoint.starts_with("https://") {
                    builder = builder.with_tls_config(ClientTlsConfig::new().with_webpki_roots());
                }
                builder.build().map_err(|e| e.to_string())?
            }
        };
        inner.set_resource(
            &Resource::builder_empty()
                .with_service_name(SERVICE_NAME)
                .build(),
        );
        Ok(Client { inner, timeout })
    }

    /// Sends `spans`; at most the client's timeout (plus a second's grace).
    pub async fn export(&self, spans: Vec<SpanData>) -> Result<(), ExportFailure> {
        let limit = self.timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, self.inner.export(spans)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(classify(&e.to_string())),
            Err(_) => Err(ExportFailure::Retry(format!(
                "no answer within {} s",
                limit.as_secs()
            ))),
        }
    }
}

/// Sorts an export error by what OTLP says to do with it: HTTP 429, 408
/// and 5xx and every gRPC status but the refusals are retried.
fn classify(error: &str) -> ExportFailure {
    if let Some(code) = http_status(error) {
        // The status only: the body of whatever answered stays out of what
        // a tenant reads, so an endpoint aimed inside the deployment's
        // network cannot be used to read its answers.
        let message = format!("the endpoint answered HTTP {code}");
        let retry = code == 408 || code == 429 || code >= 500;
        return if retry {
            ExportFailure::Retry(message)
        } else {
            ExportFailure::Rejected(message)
        };
    }
    let message = tidy(error);
    const REFUSALS: [&str; 6] = [
        "InvalidArgument",
        "Unauthenticated",
        "PermissionDenied",
        "NotFound",
        "Unimplemented",
        "FailedPrecondition",
    ];
    if REFUSALS.iter().any(|code| error.contains(code)) {
        ExportFailure::Rejected(message)
    } else {
        ExportFailure::Retry(message)
    }
}

fn http_status(error: &str) -> Option<u16> {
    let at = error.find("Status Code: ")? + "Status Code: ".len();
    error[at..].get(..3)?.parse().ok()
}

/// The error as the dashboard shows it: one line, at most 300 characters.
fn tidy(error: &str) -> String {
    let one_line: String = error.split_whitespace().collect::<Vec<_>>().join(" ");
    events::cap(&one_line, events::MAX_ERROR_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_retried_or_dropped_as_otlp_says() {
        let http = |code: u16| {
            format!("OpenTelemetry trace export failed. Url: http://h/v1/traces, Status Code: {code}, Response: b\"nope\"")
        };
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(&http(code)), ExportFailure::Retry(_)),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 413] {
            assert!(
                matches!(classify(&http(code)), ExportFailure::Rejected(_)),
                "{code}"
            );
        }
        assert!(matches!(
            classify(
                "reqwest::Error { kind: Request, source: ConnectError(\"tcp connect error\") }"
            ),
            ExportFailure::Retry(_)
        ));
        assert!(matches!(
            classify("status: Unavailable, message: \"connection refused\""),
            ExportFailure::Retry(_)
        ));
        assert!(matches!(
            classify("status: Unauthenticated, message: \"bad key\""),
            ExportFailure::Rejected(_)
        ));
        let said = classify(&http(401));
        assert_eq!(said.message(), "the endpoint answered HTTP 401");
        assert!(
            !said.message().contains("nope"),
            "a response body is never shown"
        );
        let long = "x ".repeat(1000);
        assert!(classify(&long).message().chars().count() <= events::MAX_ERROR_CHARS + 1);
    }
}
