//! A trace destination as a user describes it (a preset, or an endpoint,
//! protocol and headers), checked field by field before it becomes a
//! `telemetry_destination_set` event.

use events::{AccountId, Protocol, Sampling, TelemetryDestinationSet, UserId};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use uuid::Uuid;

use crate::preset::{self, PresetInput};
use crate::seal::Sealer;
use crate::ExporterError;

/// The most headers one destination sends.
pub const MAX_HEADERS: usize = 16;
/// The longest endpoint URL.
pub const MAX_ENDPOINT: usize = 2048;
/// The longest header value.
pub const MAX_HEADER_VALUE: usize = 4096;
/// Headers the exporter sets itself; a destination may not.
const RESERVED: [&str; 8] = [
    "content-type",
    "content-length",
    "content-encoding",
    "host",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// Which field is wrong and why, for a form or the API's `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    /// `field` is wrong: `message` says how.
    pub fn new(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

/// A destination as the API's JSON or the dashboard's form gives it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationInput {
    pub name: String,
    /// `axiom`, `grafana`, `honeycomb` or `datadog`; absent: custom.
    #[serde(default)]
    pub preset: Option<String>,
    /// Presets: the API key or token.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub instance: Option<String>,
    /// Custom: `http/protobuf` (default), `http/json` or `grpc`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Custom: the full URL (`https://collector:4318/v1/traces`; gRPC: `https://collector:4317`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Custom: header name → value.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// `all` (default), `errors` or `ratio`.
    #[serde(default)]
    pub sampling: Option<String>,
    /// With `sampling: ratio`: the share kept, 0 < ratio ≤ 1.
    #[serde(default)]
    pub ratio: Option<f64>,
    #[serde(default)]
    pub capture_content: bool,
}

/// A checked destination: what is sent where.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub name: String,
    pub preset: Option<String>,
    pub protocol: Protocol,
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub sampling: Sampling,
    pub capture_content: bool,
}

impl DestinationInput {
    /// The destination, or the first field that is wrong.
    pub fn check(&self) -> Result<Checked, FieldError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
            return Err(FieldError::new(
                "name",
                "Give the destination a name of 1 to 80 characters.",
            ));
        }
        let preset_name = self
            .preset
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty() && *p != "custom");
        let (protocol, endpoint, headers) = match preset_name {
            Some(p) => {
                let r = preset::resolve(
                    p,
                    &PresetInput {
                        token: self.token.clone().unwrap_or_default(),
                        dataset: self.dataset.clone(),
                        region: self.region.clone(),
                        instance: self.instance.clone(),
                    },
                )?;
                (r.protocol, r.endpoint, r.headers)
            }
            None => {
                let protocol = match self
                    .protocol
                    .as_deref()
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                {
                    None => Protocol::HttpProtobuf,
                    Some(p) => Protocol::parse(p).ok_or_else(|| {
                        FieldError::new(
                            "protocol",
                            format!(
                                "`{}` is not a protocol: use http/protobuf, http/json or grpc.",
                                crate::echo(p)
                            ),
                        )
                    })?,
                };
                let endpoint = self.endpoint.as_deref().map(str::trim).unwrap_or_default();
                let headers = self
                    .headers
                    .iter()
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                (protocol, endpoint.to_owned(), headers)
            }
        };
        check_endpoint(&endpoint)?;
        check_headers(&headers)?;
        Ok(Checked {
            name: name.to_owned(),
            preset: preset_name.map(str::to_owned),
            protocol,
            endpoint,
            headers,
            sampling: self.sampling()?,
            capture_content: self.capture_content,
        })
    }

    fn sampling(&self) -> Result<Sampling, FieldError> {
        match self.sampling.as_deref().map(str::trim).unwrap_or("all") {
            "" | "all" => Ok(Sampling::All),
            "errors" | "errors_only" => Ok(Sampling::ErrorsOnly),
            "ratio" => match self.ratio {
                Some(ratio) if ratio > 0.0 && ratio <= 1.0 => Ok(Sampling::Ratio { ratio }),
                _ => Err(FieldError::new(
                    "ratio",
                    "A sampling ratio is a number above 0 and at most 1, such as 0.1.",
                )),
            },
            other => Err(FieldError::new(
                "sampling",
                format!(
                    "`{}` is not a sampling mode: use all, errors or ratio.",
                    crate::echo(other)
                ),
            )),
        }
    }
}

/// An endpoint URL the exporter can send to: `http` or `https`, a host, no
/// credentials in the URL (they belong in headers, which are sealed).
pub fn check_endpoint(endpoint: &str) -> Result<(), FieldError> {
    let bad = |why: &str| {
        FieldError::new(
            "endpoint",
            format!("`{}` is not an endpoint URL: {why}", crate::echo(endpoint)),
        )
    };
    if endpoint.is_empty() {
        return Err(FieldError::new(
            "endpoint",
            "The endpoint URL is required, such as https://collector.example.com:4318/v1/traces.",
        ));
    }
    if endpoint.len() > MAX_ENDPOINT {
        return Err(bad("it is longer than 2,048 characters."));
    }
    let url = reqwest::Url::parse(endpoint).map_err(|e| bad(&format!("{e}.")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("use http:// or https://."));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it names no host."));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("put credentials in a header, not in the URL."));
    }
    if metadata_host(&url) {
        return Err(bad("cloud metadata addresses are not trace backends."));
    }
    if endpoint.parse::<http::Uri>().is_err() {
        return Err(bad("it is not a valid HTTP URI."));
    }
    Ok(())
}

/// A cloud instance-metadata address (link-local, or the metadata names),
/// which must never receive requests chosen by a tenant.
fn metadata_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_link_local(),
        Some(url::Host::Ipv6(ip)) => {
            (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "metadata.google.internal" || name == "metadata" || name == "instance-data"
        }
        None => false,
    }
}

/// Header names HTTP accepts (and the exporter does not set itself),
/// values of visible ASCII, at most [`MAX_HEADERS`].
pub fn check_headers(headers: &[(String, String)]) -> Result<(), FieldError> {
    if headers.len() > MAX_HEADERS {
        return Err(FieldError::new(
            "headers",
            format!("At most {MAX_HEADERS} headers."),
        ));
    }
    for (i, (name, value)) in headers.iter().enumerate() {
        if name.is_empty() || HeaderName::from_bytes(name.as_bytes()).is_err() || name.len() > 100 {
            return Err(FieldError::new(
                "headers",
                format!(
                    "`{}` is not a header name: letters, digits and !#$%&'*+-.^_`|~ only.",
                    crate::echo(name)
                ),
            ));
        }
        if RESERVED.contains(&name.as_str()) {
            return Err(FieldError::new(
                "headers",
                format!("`{name}` is set by the exporter itself."),
            ));
        }
        if headers[..i].iter().any(|(n, _)| n == name) {
            return Err(FieldError::new(
                "headers",
                format!("`{name}` is given twice."),
            ));
        }
        if value.is_empty()
            || value.len() > MAX_HEADER_VALUE
            || HeaderValue::from_str(value).is_err()
            || !value.is_ascii()
        {
            return Err(FieldError::new(
                "headers",
                format!("The value of `{name}` must be 1 to 4,096 printable ASCII characters."),
            ));
        }
    }
    Ok(())
}

impl Checked {
    /// The event that saves it, its headers sealed.
    pub fn into_event(
        self,
        sealer: &Sealer,
        account: AccountId,
        destination: Option<Uuid>,
        by: Option<UserId>,
    ) -> Result<TelemetryDestinationSet, ExporterError> {
        Ok(TelemetryDestinationSet {
            account,
            destination: destination.unwrap_or_else(Uuid::now_v7),
            name: self.name,
            preset: self.preset,
            protocol: self.protocol,
            endpoint: self.endpoint,
            header_names: self.headers.iter().map(|(k, _)| k.clone()).collect(),
            headers_sealed: sealer.seal(&self.headers)?,
            sampling: self.sampling,
            capture_content: self.capture_content,
            by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(endpoint: &str, headers: &[(&str, &str)]) -> DestinationInput {
        DestinationInput {
            name: "mine".into(),
            endpoint: Some(endpoint.into()),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_custom_destination_needs_a_real_http_url() {
        assert!(custom("https://otel.example.com:4318/v1/traces", &[])
            .check()
            .is_ok());
        for bad in [
            "",
            "otel.example.com/v1/traces",
            "ftp://otel.example.com",
            "https://user:pw@otel.example.com/v1/traces",
            "http://",
            "https://exa mple.com/",
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/v1/traces",
            "http://metadata.google.internal/computeMetadata/v1/",
        ] {
            let e = custom(bad, &[]).check().unwrap_err();
            assert_eq!(e.field, "endpoint", "{bad}: {e:?}");
        }
        let long = format!("https://a.com/{}", "x".repeat(3000));
        assert!(custom(&long, &[])
            .check()
            .unwrap_err()
            .message
            .contains("2,048"));
    }

    #[test]
    fn header_names_and_values_are_checked() {
        let ok = custom("http://127.0.0.1:4318/v1/traces", &[("X-Api-Key", "k1")])
            .check()
            .unwrap();
        assert_eq!(ok.headers, [("x-api-key".to_owned(), "k1".to_owned())]);
        for (name, value, says) in [
            ("bad header", "v", "not a header name"),
            ("x:y", "v", "not a header name"),
            ("content-type", "v", "set by the exporter"),
            ("x-a", "line\nbreak", "printable"),
            ("x-a", "", "printable"),
            ("x-a", "ünicode", "printable"),
        ] {
            let e = custom("http://h/v1/traces", &[(name, value)])
                .check()
                .unwrap_err();
            assert_eq!(e.field, "headers");
            assert!(e.message.contains(says), "{name}={value:?}: {}", e.message);
        }
        let twice = custom("http://h/", &[("x-a", "1"), ("X-A", "2")])
            .check()
            .unwrap_err();
        assert!(twice.message.contains("twice"));
        let many = (0..17).map(|i| (format!("x-{i}"), "v".into())).collect();
        let mut input = custom("http://h/", &[]);
        input.headers = many;
        assert!(input.check().unwrap_err().message.contains("At most 16"));
    }

    #[test]
    fn protocol_sampling_and_name_are_checked() {
        let mut input = custom("http://h:4317", &[]);
        input.protocol = Some("grpc".into());
        input.sampling = Some("ratio".into());
        input.ratio = Some(0.25);
        let c = input.check().unwrap();
        assert_eq!(
            (c.protocol, c.sampling),
            (Protocol::Grpc, Sampling::Ratio { ratio: 0.25 })
        );
        input.ratio = Some(0.0);
        assert_eq!(input.check().unwrap_err().field, "ratio");
        input.ratio = Some(1.5);
        assert_eq!(input.check().unwrap_err().field, "ratio");
        input.sampling = Some("sometimes".into());
        assert_eq!(input.check().unwrap_err().field, "sampling");
        input.sampling = None;
        input.protocol = Some("zipkin".into());
        assert_eq!(input.check().unwrap_err().field, "protocol");
        input.protocol = None;
        input.name = " ".into();
        assert_eq!(input.check().unwrap_err().field, "name");
    }

    #[test]
    fn a_preset_fills_endpoint_and_headers_and_the_event_seals_them() {
        let input = DestinationInput {
            name: "hc".into(),
            preset: Some("honeycomb".into()),
            token: Some("hc_secret".into()),
            sampling: Some("errors".into()),
            ..Default::default()
        };
        let checked = input.check().unwrap();
        assert_eq!(checked.endpoint, "https://api.honeycomb.io/v1/traces");
        let sealer = Sealer::new(&[1u8; 32]).unwrap();
        let event = checked
            .into_event(&sealer, AccountId::new(), None, None)
            .unwrap();
        assert_eq!(event.header_names, ["x-honeycomb-team"]);
        assert_eq!(event.sampling, Sampling::ErrorsOnly);
        let json = serde_json::to_string(&event).unwrap();
        assert!(!json.contains("hc_secret"), "{json}");
        assert_eq!(
            sealer.open(&event.headers_sealed).unwrap(),
            [("x-honeycomb-team".to_owned(), "hc_secret".to_owned())]
        );
    }
}
