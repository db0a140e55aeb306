//! Hot reload: the serving [`Pipeline`] behind an `ArcSwap`, replaced only by
//! a config built fully aside; a config that does not build changes nothing.
//! Every attempt is recorded for the status page and `/metrics`; the file's
//! directory is watched (rename-replace, Kubernetes symlink swaps).
//!
//! Builds run on one long-lived thread and replaced configs are freed on
//! another, never on the async runtime. What each stage does with a new
//! config is the caller's (the service composes the stages).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Pipeline, load_str};
use crate::config::MissingEnv;
use crate::config::env::ProcessEnv;
use crate::observe::metrics::Metrics;
use crate::observe::status::{ConfigStatus, ReloadStatus, rfc3339};

/// What started a (re)load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Start,
    File,
    Sighup,
    Http,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::File => "file",
            Trigger::Sighup => "sighup",
            Trigger::Http => "http",
        }
    }
}

/// A reload that took: the config replaced and its successor.
pub struct Swapped {
    pub old: Arc<Pipeline>,
    pub new: Arc<Pipeline>,
    pub hash: String,
}

/// The serving config of a running relay and its reload history.
pub struct Reloader {
    pub path: PathBuf,
    pub current: Arc<ArcSwap<Pipeline>>,
    status: Mutex<ConfigStatus>,
    one_at_a_time: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Reloader {
    /// Serves `first`, loaded from `path` at start.
    pub fn new(path: &Path, first: Pipeline, metrics: Arc<Metrics>, now_ms: u64) -> Self {
        let hash = first.config.hash.clone();
        let at = rfc3339(now_ms);
        let start = ReloadStatus {
            at: at.clone(),
            ok: true,
            trigger: Trigger::Start.as_str().into(),
            hash: Some(hash.clone()),
            errors: vec![],
        };
        metrics.reload(true, &hash, now_ms as f64 / 1000.0);
        Reloader {
            path: path.to_path_buf(),
            current: Arc::new(ArcSwap::from_pointee(first)),
            status: Mutex::new(ConfigStatus {
                path: path.display().to_string(),
                hash,
                loaded_at: at,
                last_reload: Some(start.clone()),
                history: vec![start],
            }),
            one_at_a_time: tokio::sync::Mutex::new(()),
            metrics,
        }
    }

    /// The serving config and the reload history, as the status page shows them.
    pub fn status(&self) -> ConfigStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads and builds the config, then swaps it in whole and calls `then`
    /// with the old and new configs (still under the reload lock), before the
    /// old one is freed. A failure changes nothing. `Ok(None)`: a file event
    /// that left the file as it was.
    pub async fn reload(
        &self,
        trigger: Trigger,
        then: impl FnOnce(&Swapped),
    ) -> Result<Option<String>, Vec<String>> {
        let _one_at_a_time = self.one_at_a_time.lock().await;
        let path = self.path.clone();
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                let errors = vec![format!("{}: cannot read the file: {e}", path.display())];
                return Err(self.record(trigger, None, errors));
            }
        };
        let hash = hex::encode(Sha256::digest(text.as_bytes()));
        if trigger == Trigger::File && hash == self.current.load().config.hash {
            return Ok(None);
        }
        let built =
            build_aside(move || load_str(&path, &text, &ProcessEnv, MissingEnv::Error)).await;
        match built {
            Ok(Ok((p, _warnings))) => {
                let new = Arc::new(p);
                let old = self.current.swap(new.clone());
                let swapped = Swapped {
                    old,
                    new,
                    hash: hash.clone(),
                };
                self.record(trigger, Some(hash.clone()), vec![]);
                then(&swapped);
                tracing::info!(trigger = trigger.as_str(), hash = %&hash[..12], "config reloaded");
                // Freeing the old config (~100k small allocations for 100k
                // rules) would stall this runtime thread; the last holder may
                // also be a worker, which is fine (it is rare and after a send).
                drop(swapped.new);
                drop_aside(swapped.old);
                Ok(Some(hash))
            }
            Ok(Err(diags)) => {
                let errors: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
                tracing::error!(
                    trigger = trigger.as_str(),
                    "config rejected; the previous one keeps serving:\n{diags}"
                );
                Err(self.record(trigger, Some(hash), errors))
            }
            Err(e) => Err(self.record(
                trigger,
                Some(hash),
                vec![format!("reload task failed: {e}")],
            )),
        }
    }

    /// Records an attempt (metrics and status); returns its errors.
    fn record(&self, trigger: Trigger, hash: Option<String>, errors: Vec<String>) -> Vec<String> {
        let ok = errors.is_empty();
        let now = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
        self.metrics
            .reload(ok, hash.as_deref().unwrap_or(""), now as f64 / 1000.0);
        // On success, the status's hash and load time follow this attempt.
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(ReloadStatus {
                at: rfc3339(now),
                ok,
                trigger: trigger.as_str().into(),
                hash,
                errors: errors.clone(),
            });
        errors
    }
}

type Job = Box<dyn FnOnce() + Send>;
type JobQueue = std::sync::OnceLock<Mutex<std::sync::mpsc::Sender<Job>>>;

/// Builds configs, on one long-lived thread started on first use. Not the
/// blocking pool: a build allocates a few hundred MB of short-lived data, and
/// on pool threads (or a fresh thread per reload) each reload may land in
/// another glibc arena that keeps that memory; RSS grew by about a config per
/// reload. Handlebars recurses per nesting level, hence the runtime's 16 MiB.
static BUILDER: JobQueue = std::sync::OnceLock::new();
/// Frees replaced configs, beside the builder so that a reload right after
/// another does not wait for the previous config to be freed. Frees go back
/// to the arena of the builder that allocated them.
static FREER: JobQueue = std::sync::OnceLock::new();

fn run_on(queue: &'static JobQueue, name: &str, job: Job) -> Result<(), std::io::Error> {
    let tx = match queue.get() {
        Some(tx) => tx,
        None => {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name(name.into())
                .stack_size(16 * 1024 * 1024)
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })?;
            // Reloads hold the reload lock, so one thread is started per queue.
            queue.get_or_init(|| Mutex::new(tx))
        }
    };
    let tx = tx.lock().unwrap_or_else(|e| e.into_inner());
    tx.send(job)
        .map_err(|_| std::io::Error::other(format!("the {name} thread is gone")))
}

/// Runs a config build on the builder thread and waits for it without
/// blocking the runtime.
async fn build_aside<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, std::io::Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = move || {
        let _ = tx.send(f());
    };
    run_on(&BUILDER, "config-build", Box::new(job))?;
    rx.await
        .map_err(|_| std::io::Error::other("the config build panicked"))
}

/// Frees `old` on the freer thread: freeing ~100k small allocations would
/// stall a runtime thread. If the thread is gone, frees it here.
fn drop_aside(old: Arc<Pipeline>) {
    if let Err(e) = run_on(&FREER, "config-free", Box::new(move || drop(old))) {
        tracing::warn!(error = %e, "cannot hand the old config to the config thread");
    }
}

/// Watches the config file's directory (not the file: editors replace files
/// by rename and Kubernetes swaps a `..data` symlink, both invisible to a
/// watch on the file itself) and sends one notice per burst of changes
/// (debounced: editors write in several steps). The caller reloads, and the
/// unchanged hash of a no-op burst makes that free.
pub fn watch(
    path: &Path,
    shutdown: CancellationToken,
) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<()>), notify::Error> {
    use notify::Watcher;
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.try_send(());
        }
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    let (out, changes) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { return },
                _ = shutdown.cancelled() => return,
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
            if out.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok((watcher, changes))
}
