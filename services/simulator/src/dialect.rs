//! The OpenAI-compatible dialects and where each lives under the simulator.

use catalog::ProviderId;

/// One OpenAI-compatible provider's wire deviations, as the simulator plays them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// The provider.
    pub provider: ProviderId,
    /// The path under the simulator root that stands for the provider's base URL.
    pub prefix: &'static str,
    /// Rejects `n` other than 1 (Groq, Cerebras).
    pub single_choice: bool,
}

/// The OpenAI-compatible dialects the simulator serves.
pub const DIALECTS: [Dialect; 4] = [
    Dialect {
        provider: ProviderId::Openai,
        prefix: "/openai/v1",
        single_choice: false,
    },
    Dialect {
        provider: ProviderId::Xai,
        prefix: "/xai/v1",
        single_choice: false,
    },
    Dialect {
        provider: ProviderId::Groq,
        prefix: "/groq/openai/v1",
        single_choice: true,
    },
    Dialect {
        provider: ProviderId::Cerebras,
        prefix: "/cerebras/v1",
        single_choice: true,
    },
];

/// The simulator path that stands for `provider`'s API base URL, if the simulator speaks it.
pub fn base_path(provider: ProviderId) -> Option<&'static str> {
    match provider {
        ProviderId::Anthropic => return Some(crate::anthropic_messages::PREFIX),
        ProviderId::Google => return Some(crate::google_gemini::PREFIX),
        ProviderId::Bedrock => return Some(crate::bedrock_converse::PREFIX),
        _ => {}
    }
    DIALECTS
        .iter()
        .find(|d| d.provider == provider)
        .map(|d| d.prefix)
}
