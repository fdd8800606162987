//! The OpenAI-compatible dialects and where each lives under the simulator.

use catalog::ProviderId;

/// One OpenAI-compatible provider's wire deviations, as the simulator plays them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// The provider.
    pub provider: ProviderId,
    /// Rejects `n` other than 1 (Groq, Cerebras).
    pub single_choice: bool,
}

/// The OpenAI-compatible dialects the simulator serves.
pub const DIALECTS: [Dialect; 4] = [
    Dialect {
        provider: ProviderId::Openai,
        single_choice: false,
    },
    Dialect {
        provider: ProviderId::Xai,
        single_choice: false,
    },
    Dialect {
        provider: ProviderId::Groq,
        single_choice: true,
    },
    Dialect {
        provider: ProviderId::Cerebras,
        single_choice: true,
    },
];

/// The simulator path that stands for `provider`'s API base URL (from its
/// [`catalog::ProviderSpec`]; the simulator speaks every provider).
pub fn base_path(provider: ProviderId) -> &'static str {
    provider.spec().simulator_path
}

impl Dialect {
    /// Where this dialect's provider lives under the simulator.
    pub fn prefix(&self) -> &'static str {
        base_path(self.provider)
    }
}
