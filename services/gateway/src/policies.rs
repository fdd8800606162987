//! Per-account policies: the providers an account has blocked, and whether
//! its requests' text is captured for its traces.
//!
//! The control plane keeps one [`PolicyView`] per account in the `policies`
//! bucket; every gateway follows it, so a block reaches every gateway
//! within milliseconds (a request already routing may still use the
//! provider).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use catalog::ProviderId;
use eventlog::LogError;
use events::{AccountId, PolicyView};

use crate::error::GatewayError;

/// The policies of every account this gateway has heard of.
#[derive(Default)]
pub struct Policies {
    blocked: RwLock<HashMap<AccountId, Vec<ProviderId>>>,
    capturing: RwLock<std::collections::HashSet<AccountId>>,
}

impl Policies {
    /// Takes an account's policy (providers this build does not know are ignored).
    pub fn apply(&self, account: AccountId, view: &PolicyView) {
        let blocked: Vec<ProviderId> = view.blocked.iter().filter_map(|p| p.parse().ok()).collect();
        if let Ok(mut map) = self.blocked.write() {
            if blocked.is_empty() {
                map.remove(&account);
            } else {
                map.insert(account, blocked);
            }
        }
        if let Ok(mut set) = self.capturing.write() {
            if view.capture_content {
                set.insert(account);
            } else {
                set.remove(&account);
            }
        }
    }

    /// Whether `account`'s prompt and completion text go to its traces.
    pub fn captures(&self, account: AccountId) -> bool {
        self.capturing
            .read()
            .is_ok_and(|set| set.contains(&account))
    }

    /// Drops the candidates whose provider `account` blocked; 403 when that
    /// leaves none.
    pub fn filter<C>(
        &self,
        account: AccountId,
        candidates: &mut Vec<C>,
        provider: impl Fn(&C) -> ProviderId,
    ) -> Result<(), GatewayError> {
        let Ok(map) = self.blocked.read() else {
            return Ok(());
        };
        let Some(blocked) = map.get(&account) else {
            return Ok(());
        };
        if !candidates.is_empty() && candidates.iter().all(|c| blocked.contains(&provider(c))) {
            return Err(GatewayError::ProviderBlocked {
                providers: candidates.iter().map(&provider).collect(),
            });
        }
        candidates.retain(|c| !blocked.contains(&provider(c)));
        Ok(())
    }

    /// Follows the control plane's `policies` bucket: returns once every
    /// current policy is in, then keeps following.
    pub async fn follow(self: &Arc<Self>, source: crate::follow::Source) -> Result<(), LogError> {
        let policies = Arc::clone(self);
        crate::follow::follow(source, move |entry| {
            let account = entry.key.parse::<AccountId>();
            let view = serde_json::from_slice::<PolicyView>(&entry.value);
            match (account, view) {
                (Ok(account), Ok(view)) => policies.apply(account, &view),
                _ => tracing::error!(key = %entry.key, "unreadable policy"),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_providers_are_skipped_and_all_blocked_is_403() {
        let policies = Policies::default();
        let (a, b) = (AccountId::new(), AccountId::new());
        policies.apply(
            a,
            &PolicyView {
                blocked: vec!["openai".into(), "no-such-provider".into()],
                capture_content: true,
            },
        );
        assert!(policies.captures(a) && !policies.captures(b));
        let mut mixed = vec![ProviderId::Openai, ProviderId::Groq];
        policies.filter(a, &mut mixed, |p| *p).unwrap();
        assert_eq!(mixed, [ProviderId::Groq]);
        let mut only_openai = vec![ProviderId::Openai];
        let err = policies.filter(a, &mut only_openai, |p| *p).unwrap_err();
        assert!(
            matches!(err, GatewayError::ProviderBlocked { providers } if providers.contains(&ProviderId::Openai))
        );
        let mut other_account = vec![ProviderId::Openai];
        policies.filter(b, &mut other_account, |p| *p).unwrap();
        policies.apply(a, &PolicyView::default());
        let mut unblocked = vec![ProviderId::Openai];
        policies.filter(a, &mut unblocked, |p| *p).unwrap();
        assert_eq!(unblocked.len(), 1);
        assert!(!policies.captures(a), "capture follows the latest view");
    }
}
