//! Helpers the event-log test files share.

use std::time::Duration;

use eventlog::Consumer;

/// Asserts that `consumer` delivers nothing more within `wait`: the test has
/// read every record it expected, and no other one is waiting.
pub async fn assert_drained(consumer: &mut dyn Consumer, wait: Duration) {
    let extra = consumer.next(wait).await.expect("reading the log");
    assert!(
        extra.is_none(),
        "a record beyond those expected: seq {:?}",
        extra.map(|d| d.record.seq)
    );
}
