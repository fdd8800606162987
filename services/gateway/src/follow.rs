//! Following a key-value bucket: the gateway's views (keys, provider
//! blocks, account states) are kept current this way.

use std::sync::Arc;
use std::time::Duration;

use eventlog::{Bucket, Entry, LogError};
use futures_util::StreamExt;

/// Applies every current value of `bucket` before returning (so the view
/// starts complete), then every change for as long as the runtime runs,
/// re-watching after errors. Values arrive again after a re-watch; `apply`
/// must take a repeat as a no-op.
pub async fn follow(
    bucket: Arc<dyn Bucket>,
    what: &'static str,
    apply: impl Fn(&Entry) + Send + Sync + 'static,
) -> Result<(), LogError> {
    for entry in bucket.snapshot().await? {
        apply(&entry);
    }
    tokio::spawn(async move {
        loop {
            match bucket.watch().await {
                Ok(mut changes) => {
                    while let Some(change) = changes.next().await {
                        match change {
                            Ok(entry) => apply(&entry),
                            Err(e) => {
                                tracing::warn!(error = %e, what, "watch broke; watching again");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, what, "cannot watch; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(())
}
