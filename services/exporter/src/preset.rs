//! Vendor presets: the user gives a token and a dataset or region, the
//! preset gives the documented endpoint and header names.
//!
//! | preset | endpoint | headers |
//! |---|---|---|
//! | `axiom` | `https://api.axiom.co/v1/traces` (or `https://<region>.aws.edge.axiom.co/v1/traces`) | `Authorization: Bearer <token>`, `X-Axiom-Dataset: <dataset>` |
//! | `grafana` | `https://otlp-gateway-<zone>.grafana.net/otlp/v1/traces` | `Authorization: Basic base64(<instance>:<token>)` |
//! | `honeycomb` | `https://api.honeycomb.io/v1/traces` (`eu`: `https://api.eu1.honeycomb.io/v1/traces`) | `x-honeycomb-team: <token>` (and `x-honeycomb-dataset` for a classic dataset) |
//! | `datadog` | `https://trace.agent.<site>/api/v0.2/traces` | `dd-protocol: otlp`, `dd-api-key: <token>`, `dd-otlp-source: <source, default datadog>` |
//!
//! All four take OTLP/HTTP with protobuf bodies.

use base64::Engine;
use events::Protocol;

use crate::destination::FieldError;

/// What the user fills in for a preset.
#[derive(Debug, Clone, Default)]
pub struct PresetInput {
    /// The API key or token.
    pub token: String,
    /// Axiom, Honeycomb (classic): the dataset.
    pub dataset: Option<String>,
    /// Axiom: edge region; Honeycomb: `us` or `eu`; Grafana: the zone
    /// (`prod-us-east-0`); Datadog: the site (`datadoghq.com`, `datadoghq.eu`, …).
    pub region: Option<String>,
    /// Grafana: the OTLP instance id; Datadog: `dd-otlp-source`.
    pub instance: Option<String>,
}

/// A preset's endpoint, protocol and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub protocol: Protocol,
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
}

/// The presets' names, as forms list them.
pub const NAMES: [&str; 4] = ["axiom", "grafana", "honeycomb", "datadog"];

const AXIOM_REGIONS: [&str; 2] = ["us-east-1", "eu-central-1"];
const DATADOG_SITES: [&str; 7] = [
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
];

/// The destination preset `name` makes of `input`.
pub fn resolve(name: &str, input: &PresetInput) -> Result<Resolved, FieldError> {
    let token = input.token.trim();
    if token.is_empty() {
        return Err(FieldError::new(
            "token",
            "The token is required for a preset.",
        ));
    }
    let opt = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (dataset, region, instance) = (
        opt(&input.dataset),
        opt(&input.region),
        opt(&input.instance),
    );
    let http = |endpoint: String, headers: Vec<(&str, String)>| Resolved {
        protocol: Protocol::HttpProtobuf,
        endpoint,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    };
    match name {
        "axiom" => {
            let dataset = dataset.ok_or_else(|| {
                FieldError::new("dataset", "Axiom needs the dataset spans go to.")
            })?;
            let endpoint = match region.as_deref() {
                None => "https://api.axiom.co/v1/traces".to_owned(),
                Some(r) if AXIOM_REGIONS.contains(&r) => {
                    format!("https://{r}.aws.edge.axiom.co/v1/traces")
                }
                Some(r) => return Err(one_of("region", r, &AXIOM_REGIONS)),
            };
            Ok(http(
                endpoint,
                vec![
                    ("authorization", format!("Bearer {token}")),
                    ("x-axiom-dataset", dataset),
                ],
            ))
        }
        "grafana" => {
            let zone = region.ok_or_else(|| {
                FieldError::new(
                    "region",
                    "Grafana Cloud needs the stack's zone, such as prod-us-east-0.",
                )
            })?;
            if !zone.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(FieldError::new("region", format!("`{}` is not a Grafana Cloud zone (letters, digits and dashes, such as prod-us-east-0).", crate::echo(&zone))));
            }
            let instance = instance.ok_or_else(|| {
                FieldError::new(
                    "instance",
                    "Grafana Cloud needs the stack's OTLP instance id.",
                )
            })?;
            if !instance.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FieldError::new(
                    "instance",
                    "The Grafana Cloud instance id is a number.",
                ));
            }
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{instance}:{token}"));
            Ok(http(
                format!("https://otlp-gateway-{zone}.grafana.net/otlp/v1/traces"),
                vec![("authorization", format!("Basic {basic}"))],
            ))
        }
        "honeycomb" => {
            let host = match region.as_deref() {
                None | Some("us") => "api.honeycomb.io",
                Some("eu") => "api.eu1.honeycomb.io",
                Some(r) => return Err(one_of("region", r, &["us", "eu"])),
            };
            let mut headers = vec![("x-honeycomb-team", token.to_owned())];
            if let Some(dataset) = dataset {
                headers.push(("x-honeycomb-dataset", dataset));
            }
            Ok(http(format!("https://{host}/v1/traces"), headers))
        }
        "datadog" => {
            let site = region.unwrap_or_else(|| "datadoghq.com".into());
            if !DATADOG_SITES.contains(&site.as_str()) {
                return Err(one_of("region", &site, &DATADOG_SITES));
            }
            let source = instance.unwrap_or_else(|| "datadog".into());
            Ok(http(
                format!("https://trace.agent.{site}/api/v0.2/traces"),
                vec![
                    ("dd-protocol", "otlp".into()),
                    ("dd-api-key", token.to_owned()),
                    ("dd-otlp-source", source),
                ],
            ))
        }
        other => Err(one_of("preset", other, &NAMES)),
    }
}

fn one_of(field: &'static str, given: &str, allowed: &[&str]) -> FieldError {
    FieldError::new(
        field,
        format!(
            "`{}` is not one of: {}.",
            crate::echo(given),
            allowed.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        token: &str,
        dataset: Option<&str>,
        region: Option<&str>,
        instance: Option<&str>,
    ) -> PresetInput {
        PresetInput {
            token: token.into(),
            dataset: dataset.map(Into::into),
            region: region.map(Into::into),
            instance: instance.map(Into::into),
        }
    }

    fn headers(r: &Resolved) -> Vec<(&str, &str)> {
        r.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn axiom_sends_a_bearer_token_and_the_dataset() {
        let r = resolve("axiom", &input("xaat-1", Some("llm"), None, None)).unwrap();
        assert_eq!(r.endpoint, "https://api.axiom.co/v1/traces");
        assert_eq!(r.protocol, Protocol::HttpProtobuf);
        assert_eq!(
            headers(&r),
            [
                ("authorization", "Bearer xaat-1"),
                ("x-axiom-dataset", "llm")
            ]
        );
        let eu = resolve("axiom", &input("t", Some("d"), Some("eu-central-1"), None)).unwrap();
        assert_eq!(
            eu.endpoint,
            "https://eu-central-1.aws.edge.axiom.co/v1/traces"
        );
        assert_eq!(
            resolve("axiom", &input("t", None, None, None))
                .unwrap_err()
                .field,
            "dataset"
        );
        assert_eq!(
            resolve("axiom", &input("t", Some("d"), Some("mars"), None))
                .unwrap_err()
                .field,
            "region"
        );
    }

    #[test]
    fn grafana_sends_basic_auth_of_instance_and_token_to_the_zone_gateway() {
        let r = resolve(
            "grafana",
            &input("glc_tok", None, Some("prod-eu-west-2"), Some("123456")),
        )
        .unwrap();
        assert_eq!(
            r.endpoint,
            "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp/v1/traces"
        );
        // base64("123456:glc_tok")
        assert_eq!(
            headers(&r),
            [("authorization", "Basic MTIzNDU2OmdsY190b2s=")]
        );
        assert_eq!(
            resolve("grafana", &input("t", None, None, Some("1")))
                .unwrap_err()
                .field,
            "region"
        );
        assert_eq!(
            resolve("grafana", &input("t", None, Some("prod-us-east-0"), None))
                .unwrap_err()
                .field,
            "instance"
        );
        assert_eq!(
            resolve("grafana", &input("t", None, Some("a/b"), Some("1")))
                .unwrap_err()
                .field,
            "region"
        );
    }

    #[test]
    fn honeycomb_sends_the_team_key_and_a_classic_dataset_when_given() {
        let r = resolve("honeycomb", &input("hc_key", None, None, None)).unwrap();
        assert_eq!(r.endpoint, "https://api.honeycomb.io/v1/traces");
        assert_eq!(headers(&r), [("x-honeycomb-team", "hc_key")]);
        let eu = resolve("honeycomb", &input("k", Some("classic"), Some("eu"), None)).unwrap();
        assert_eq!(eu.endpoint, "https://api.eu1.honeycomb.io/v1/traces");
        assert_eq!(
            headers(&eu),
            [
                ("x-honeycomb-team", "k"),
                ("x-honeycomb-dataset", "classic")
            ]
        );
    }

    #[test]
    fn datadog_sends_the_api_key_to_the_sites_trace_intake() {
        let r = resolve("datadog", &input("dd_key", None, None, None)).unwrap();
        assert_eq!(
            r.endpoint,
            "https://trace.agent.datadoghq.com/api/v0.2/traces"
        );
        assert_eq!(
            headers(&r),
            [
                ("dd-protocol", "otlp"),
                ("dd-api-key", "dd_key"),
                ("dd-otlp-source", "datadog")
            ]
        );
        let eu = resolve(
            "datadog",
            &input("k", None, Some("datadoghq.eu"), Some("acme")),
        )
        .unwrap();
        assert_eq!(
            eu.endpoint,
            "https://trace.agent.datadoghq.eu/api/v0.2/traces"
        );
        assert_eq!(eu.headers[2], ("dd-otlp-source".into(), "acme".into()));
        assert_eq!(
            resolve("datadog", &input("k", None, Some("evil.com"), None))
                .unwrap_err()
                .field,
            "region"
        );
    }

    #[test]
    fn every_preset_needs_a_token_and_unknown_presets_are_named() {
        for name in NAMES {
            assert_eq!(
                resolve(name, &input(" ", Some("d"), None, None))
                    .unwrap_err()
                    .field,
                "token"
            );
        }
        let e = resolve("newrelic", &input("t", None, None, None)).unwrap_err();
        assert_eq!(e.field, "preset");
        assert!(
            e.message.contains("axiom, grafana, honeycomb, datadog"),
            "{}",
            e.message
        );
    }
}
