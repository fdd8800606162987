//! One description per provider: what every part of Model Router needs to
//! know about it besides its models. The gateway builds its adapter from
//! `wire` and `default_base_url`, the guard reads the tokenizer margin,
//! configuration reads the variables, the simulator mounts the provider at
//! `simulator_path`, and the dashboard lists them all. Adding a provider is
//! a [`ProviderId`] variant, an entry here, and (for a new wire format) an
//! adapter.

use crate::ProviderId;

/// The API a provider speaks, which decides its gateway adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI Chat Completions, with a dialect's deviations.
    OpenAiChat,
    /// Anthropic Messages.
    AnthropicMessages,
    /// Google Gemini `generateContent`.
    GeminiGenerateContent,
    /// AWS Bedrock Converse (SigV4-signed, event-stream frames).
    BedrockConverse,
}

/// What Model Router knows about one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSpec {
    /// The provider.
    pub id: ProviderId,
    /// Its API.
    pub wire: Wire,
    /// The variable holding its API key (Bedrock: the secret access key).
    pub key_env: &'static str,
    /// The variable overriding its base URL.
    pub base_url_env: &'static str,
    /// Its public base URL; `{region}` stands for the configured region.
    pub default_base_url: &'static str,
    /// Tokens its tokenizer may produce per 1,000 o200k tokens: the context
    /// guard's safety margin for a count made with o200k.
    pub tokenizer_margin_permille: u64,
    /// The path under the simulator's root that stands for its base URL.
    pub simulator_path: &'static str,
}

impl ProviderId {
    /// This provider's description.
    pub const fn spec(self) -> &'static ProviderSpec {
        match self {
            ProviderId::Openai => &OPENAI,
            ProviderId::Anthropic => &ANTHROPIC,
            ProviderId::Google => &GOOGLE,
            ProviderId::Xai => &XAI,
            ProviderId::Bedrock => &BEDROCK,
            ProviderId::Groq => &GROQ,
            ProviderId::Cerebras => &CEREBRAS,
        }
    }
}

// Margins: Claude's tokenizer yields up to ~30% more tokens than o200k on
// English and code; Llama 3, Qwen, Gemini and Grok vocabularies land within
// ~15%; Bedrock hosts several families, so it takes a larger margin.

const OPENAI: ProviderSpec = ProviderSpec {
    id: ProviderId::Openai,
    wire: Wire::OpenAiChat,
    key_env: "OPENAI_API_KEY",
    base_url_env: "OPENAI_BASE_URL",
    default_base_url: "https://api.openai.com/v1",
    tokenizer_margin_permille: 1_000,
    simulator_path: "/openai/v1",
};

const ANTHROPIC: ProviderSpec = ProviderSpec {
    id: ProviderId::Anthropic,
    wire: Wire::AnthropicMessages,
    key_env: "ANTHROPIC_API_KEY",
    base_url_env: "ANTHROPIC_BASE_URL",
    default_base_url: "https://api.anthropic.com",
    tokenizer_margin_permille: 1_300,
    simulator_path: "/anthropic",
};

const GOOGLE: ProviderSpec = ProviderSpec {
    id: ProviderId::Google,
    wire: Wire::GeminiGenerateContent,
    key_env: "GEMINI_API_KEY",
    base_url_env: "GEMINI_BASE_URL",
    default_base_url: "https://generativelanguage.googleapis.com",
    tokenizer_margin_permille: 1_150,
    simulator_path: "/google",
};

const XAI: ProviderSpec = ProviderSpec {
    id: ProviderId::Xai,
    wire: Wire::OpenAiChat,
    key_env: "XAI_API_KEY",
    base_url_env: "XAI_BASE_URL",
    default_base_url: "https://api.x.ai/v1",
    tokenizer_margin_permille: 1_150,
    simulator_path: "/xai/v1",
};

const BEDROCK: ProviderSpec = ProviderSpec {
    id: ProviderId::Bedrock,
    wire: Wire::BedrockConverse,
    key_env: "AWS_SECRET_ACCESS_KEY",
    base_url_env: "BEDROCK_BASE_URL",
    default_base_url: "https://bedrock-runtime.{region}.amazonaws.com",
    tokenizer_margin_permille: 1_250,
    simulator_path: "/bedrock",
};

const GROQ: ProviderSpec = ProviderSpec {
    id: ProviderId::Groq,
    wire: Wire::OpenAiChat,
    key_env: "GROQ_API_KEY",
    base_url_env: "GROQ_BASE_URL",
    default_base_url: "https://api.groq.com/openai/v1",
    tokenizer_margin_permille: 1_150,
    simulator_path: "/groq/openai/v1",
};

const CEREBRAS: ProviderSpec = ProviderSpec {
    id: ProviderId::Cerebras,
    wire: Wire::OpenAiChat,
    key_env: "CEREBRAS_API_KEY",
    base_url_env: "CEREBRAS_BASE_URL",
    default_base_url: "https://api.cerebras.ai/v1",
    tokenizer_margin_permille: 1_150,
    simulator_path: "/cerebras/v1",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_describes_itself_once_and_distinctly() {
        let specs: Vec<&ProviderSpec> = ProviderId::ALL.iter().map(|p| p.spec()).collect();
        for (spec, id) in specs.iter().zip(ProviderId::ALL) {
            assert_eq!(spec.id, id);
            assert!(spec.default_base_url.starts_with("https://"), "{id}");
            assert!(spec.simulator_path.starts_with('/'), "{id}");
            assert!(spec.tokenizer_margin_permille >= 1_000, "{id}");
        }
        for (i, a) in specs.iter().enumerate() {
            for b in &specs[i + 1..] {
                assert_ne!(a.key_env, b.key_env);
                assert_ne!(a.base_url_env, b.base_url_env);
                assert_ne!(a.simulator_path, b.simulator_path);
            }
        }
    }
}
