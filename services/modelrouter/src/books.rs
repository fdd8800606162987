//! `up`'s books on a thread of their own.
//!
//! The usage publisher, the ledger and the exporter work in batches: a batch
//! read, decoded, folded and written costs up to a millisecond of CPU between
//! two awaits. Tokio does not preempt a task, so on the runtime that serves
//! requests a request arriving meanwhile waits for the rest of the batch. On a
//! thread of their own the kernel shares the core instead: the thread that
//! serves is woken when a request arrives and runs beside a batch half done.
//! On one core at 1,000 req/s this took `up`'s p99 from about 2 ms to about
//! 1.1 ms, with the same CPU a request (`docs/PERFORMANCE.md`).

use tokio::runtime::{Builder, Handle};

/// Starts a single-threaded runtime on a thread named `books` and returns its
/// handle: tasks spawned on it, or by code run inside `handle.enter()`, run
/// there for the life of the process.
pub fn start() -> std::io::Result<Handle> {
    let runtime = Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("books".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task spawned on the books, even from inside another runtime's
    /// context, runs on the `books` thread and is driven without the caller
    /// doing anything: a runtime nobody drives would leave it pending forever.
    #[test]
    fn tasks_run_on_the_books_thread_while_the_caller_blocks() {
        let books = start().expect("the books thread starts");
        let (sent, received) = std::sync::mpsc::channel();
        {
            let _books = books.enter();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                let name = std::thread::current().name().map(str::to_owned);
                sent.send(name).expect("the test waits for it");
            });
        }
        let name = received
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the task ran although the caller only waited");
        assert_eq!(name.as_deref(), Some("books"));
    }
}
