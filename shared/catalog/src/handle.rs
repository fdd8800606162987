//! A reloadable catalog: lock-free snapshots for the request path, swapped
//! whole when the file changes or the process gets SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::{Catalog, CatalogError};

/// Shared access to the current catalog.
pub struct CatalogHandle {
    current: ArcSwap<Catalog>,
    source: Option<PathBuf>,
}

impl CatalogHandle {
    /// A handle that serves `catalog` and reloads from `source` when asked.
    pub fn new(catalog: Catalog, source: Option<PathBuf>) -> Arc<Self> {
        Arc::new(CatalogHandle {
            current: ArcSwap::from_pointee(catalog),
            source,
        })
    }

    /// Loads `source` if given, else the shipped catalog.
    pub fn open(source: Option<PathBuf>) -> Result<Arc<Self>, CatalogError> {
        let catalog = match &source {
            Some(path) => Catalog::load(path)?,
            None => Catalog::builtin(),
        };
        Ok(Self::new(catalog, source))
    }

    /// The catalog as of now. Holders keep their snapshot across reloads.
    pub fn snapshot(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// Re-reads the source file; on error the current catalog stays in force.
    pub fn reload(&self) -> Result<(), CatalogError> {
        if let Some(path) = &self.source {
            let catalog = Catalog::load(path)?;
            self.current.store(Arc::new(catalog));
        }
        Ok(())
    }

    /// Reloads whenever the source file's modification time changes (checked
    /// every `poll`) or the process receives SIGHUP. Runs until the runtime stops.
    pub fn spawn_watcher(self: &Arc<Self>, poll: Duration) {
        let Some(path) = self.source.clone() else {
            return;
        };
        let handle = Arc::clone(self);
        watch(path, poll, "catalog", move || {
            handle.reload().map_err(|e| e.to_string())
        });
    }
}

/// Calls `reload` whenever `path`'s modification time changes (checked every
/// `poll`) or the process receives SIGHUP, logging what happened under
/// `what`; a refused reload keeps the previous data. Runs until the runtime stops.
pub fn watch(
    path: PathBuf,
    poll: Duration,
    what: &'static str,
    reload: impl Fn() -> Result<(), String> + Send + 'static,
) {
    tokio::spawn(async move {
        let mut hangup = hangup_signal();
        let mut seen = modified(&path);
        let mut tick = tokio::time::interval(poll);
        loop {
            let by_signal = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = recv(&mut hangup) => true,
            };
            let now = modified(&path);
            if !by_signal && now == seen {
                continue;
            }
            seen = now;
            match reload() {
                Ok(()) => tracing::info!(path = %path.display(), "{what} reloaded"),
                Err(err) => {
                    tracing::error!(%err, "{what} reload refused; keeping the previous one")
                }
            }
        }
    });
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A stream of SIGHUPs; on platforms without them, one that never fires.
struct Hangup(#[cfg(unix)] Option<tokio::signal::unix::Signal>);

fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    return Hangup(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok());
    #[cfg(not(unix))]
    return Hangup();
}

async fn recv(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup.0.as_mut() {
        return signal.recv().await;
    }
    let _ = hangup;
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gpt-4.1-mini's input price, in nano-dollars per million tokens.
    fn mini_input(catalog: &Catalog) -> i64 {
        catalog
            .model("gpt-4.1-mini")
            .unwrap()
            .pricing
            .base
            .input
            .0
            .nanos()
    }

    #[tokio::test]
    async fn file_change_swaps_catalog_and_bad_file_keeps_old() {
        let dir = std::env::temp_dir().join(format!("catalog-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("models.toml");
        std::fs::write(&path, crate::BUILTIN_TOML).unwrap();
        let handle = CatalogHandle::open(Some(path.clone())).unwrap();
        let before = handle.snapshot();
        handle.spawn_watcher(Duration::from_millis(20));

        let cheaper = crate::BUILTIN_TOML.replacen(
            "input_per_mtok = \"0.40\"",
            "input_per_mtok = \"0.01\"",
            1,
        );
        // Give the new file a distinct mtime even on coarse-grained filesystems.
        tokio::time::sleep(Duration::from_millis(30)).await;
        std::fs::write(&path, cheaper).unwrap();
        let mut reloaded = false;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if mini_input(&handle.snapshot()) == 10_000_000 {
                reloaded = true;
                break;
            }
        }
        assert!(reloaded, "the watcher did not pick up the change");
        // The snapshot taken before the reload is untouched: in-flight requests keep it.
        assert_eq!(mini_input(&before), 400_000_000);

        std::fs::write(&path, "version = 1\nmodels = 3").unwrap();
        assert!(handle.reload().is_err());
        assert_eq!(mini_input(&handle.snapshot()), 10_000_000);
        std::fs::remove_dir_all(&dir).ok();
    }
}
