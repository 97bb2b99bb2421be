//! Cluster state from the Kubernetes API, via kube-rs watchers and reflectors.

use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, ObjectRef, Store, store::WriterDropped};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config, Resource};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

mod backoff;
mod guard;

pub use guard::{ApiLimits, GuardError};

use super::kinds::{ClusterKind, KindVisitor, visit_kinds};
use super::lenient::Lenient;
use super::source::{ClusterSource, CounterSnapshot, SourceCounters};
use super::state::ClusterObjects;

/// Errors building the Kubernetes client.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesSourceError {
    /// The kubeconfig file could not be read or used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// Neither a kubeconfig nor an in-cluster service account was found.
    #[error(transparent)]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Settings of the Kubernetes source.
#[derive(Clone, Debug)]
pub struct KubernetesSourceConfig {
    /// Kubeconfig file (`--kubeconfig`). `None` infers: `$KUBECONFIG` or
    /// `~/.kube/config` if present, else the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use; `None` means its current-context.
    pub context: Option<String>,
    /// Field selector for pods, e.g. `spec.nodeName=worker-1`. Off by default,
    /// and should stay off for the observer: traffic has two ends, and naming
    /// the remote peer of a local pod needs the pods of every node.
    pub pod_field_selector: Option<String>,
    /// Minimum interval between two published snapshots; bursts of events
    /// within it are merged into one snapshot.
    pub debounce: Duration,
    /// Annotations kept on objects; all others are dropped to save memory.
    pub kept_annotations: Vec<String>,
    /// Server-side watch timeout in seconds (`None`: kube's default, 290 s).
    pub watch_timeout_secs: Option<u32>,
    /// Objects per page of list calls (`None`: unpaginated).
    pub page_size: Option<u32>,
    /// Line-size limits and the request deadline (see [`ApiLimits`]).
    pub limits: ApiLimits,
}

impl Default for KubernetesSourceConfig {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            context: None,
            pod_field_selector: None,
            debounce: Duration::from_millis(100),
            kept_annotations: Vec::new(),
            watch_timeout_secs: None,
            page_size: Some(500),
            limits: ApiLimits::default(),
        }
    }
}

/// Builds a client from `config.kubeconfig` or, without one, by inference
/// (kubeconfig from the environment, then in-cluster).
///
/// # Errors
/// When no usable configuration is found or the client cannot be built.
pub async fn build_client(
    config: &KubernetesSourceConfig,
) -> Result<Client, KubernetesSourceError> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)?;
            let options = KubeConfigOptions {
                context: config.context.clone(),
                ..KubeConfigOptions::default()
            };
            Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None => Config::infer().await?,
    };
    client_with_limits(kube_config, config.limits)
}

/// Builds a client from `kube_config` with the [`ApiLimits`] layer around kube's stack.
///
/// # Errors
/// When the client cannot be built from the configuration (TLS material, say).
pub fn client_with_limits(
    kube_config: Config,
    limits: ApiLimits,
) -> Result<Client, KubernetesSourceError> {
    Ok(ClientBuilder::try_from(kube_config)?
        .with_layer(&guard::ApiGuardLayer::new(limits))
        .build())
}

/// A [`ClusterSource`] backed by one watcher + reflector per kind.
///
/// Needs only get/list/watch RBAC on the watched kinds. Dropping it stops all
/// its tasks.
pub struct KubernetesSource {
    snapshots: watch::Receiver<Arc<ClusterObjects>>,
    ready: watch::Receiver<bool>,
    counters: Arc<SourceCounters>,
    tasks: Vec<JoinHandle<()>>,
}

impl KubernetesSource {
    /// Builds a client with [`build_client`] and starts watching.
    ///
    /// # Errors
    /// See [`build_client`].
    pub async fn connect(config: KubernetesSourceConfig) -> Result<Self, KubernetesSourceError> {
        let client = build_client(&config).await?;
        Ok(Self::start(client, &config))
    }

    /// Starts watching with an existing client. Must be called within a
    /// Tokio runtime.
    pub fn start(client: Client, config: &KubernetesSourceConfig) -> Self {
        let counters = Arc::new(SourceCounters::default());
        let dirty = Arc::new(Notify::new());
        let kept: Arc<[String]> = config.kept_annotations.clone().into();
        let base = watcher::Config {
            bookmarks: true,
            timeout: config.watch_timeout_secs,
            page_size: config.page_size,
            ..watcher::Config::default()
        };
        let mut tasks = Vec::new();
        let mut spawner = Spawner {
            client: &client,
            base,
            pod_field_selector: config.pod_field_selector.clone(),
            kept,
            counters: counters.clone(),
            dirty: dirty.clone(),
            tasks: &mut tasks,
            stores: Vec::new(),
        };
        visit_kinds(&mut spawner);
        let stores = Stores(spawner.stores);

        let (snap_tx, snapshots) = watch::channel(Arc::new(ClusterObjects::default()));
        let (ready_tx, ready) = watch::channel(false);
        tasks.push(tokio::spawn(combine(
            stores,
            dirty,
            config.debounce,
            snap_tx,
            ready_tx,
            counters.clone(),
        )));
        Self {
            snapshots,
            ready,
            counters,
            tasks,
        }
    }
}

impl Drop for KubernetesSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ClusterSource for KubernetesSource {
    fn subscribe(&self) -> watch::Receiver<Arc<ClusterObjects>> {
        self.snapshots.clone()
    }

    fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }
}

impl KubernetesSource {
    /// The live counters, for a reader that outlives the source's handle (the daemon's
    /// stats read them while the source runs in its own task).
    pub fn shared_counters(&self) -> Arc<SourceCounters> {
        Arc::clone(&self.counters)
    }
}

/// What the watchers of all kinds share; visiting the registry spawns one per kind.
struct Spawner<'a> {
    client: &'a Client,
    /// The watch settings of every kind.
    base: watcher::Config,
    /// Narrows the pod watch (see [`KubernetesSourceConfig::pod_field_selector`]).
    pod_field_selector: Option<String>,
    kept: Arc<[String]>,
    counters: Arc<SourceCounters>,
    dirty: Arc<Notify>,
    tasks: &'a mut Vec<JoinHandle<()>>,
    stores: Vec<Box<dyn KindStore>>,
}

impl KindVisitor for Spawner<'_> {
    fn visit<K: ClusterKind>(&mut self) {
        let mut config = self.base.clone();
        if <K as ClusterKind>::KIND == <Pod as ClusterKind>::KIND {
            config.field_selector = self.pod_field_selector.clone();
        }
        let store = self.spawn::<K>(config);
        self.stores.push(Box::new(store));
    }
}

impl Spawner<'_> {
    /// Spawns the watcher → backoff → trim → reflector pipeline of kind `K`
    /// and returns the store it fills.
    /// Objects are decoded one by one ([`Lenient`]): one that does not decode is counted
    /// and left out instead of failing its list.
    fn spawn<K: ClusterKind>(&mut self, config: watcher::Config) -> Store<Lenient<K>> {
        let (reader, writer) = reflector::store::<Lenient<K>>();
        let kept = self.kept.clone();
        let stored = reader.clone();
        // No `default_backoff()`: it resets at every `Event::Init`, which the watcher
        // emits before each list try, so a refused list was retried at its first delay
        // for ever. The loop below backs off instead, reset only by a success.
        let stream = watcher(Api::<Lenient<K>>::all(self.client.clone()), config)
            .modify(move |obj: &mut Lenient<K>| {
                if let Lenient::Decoded(object) = obj {
                    // Not shared yet (just decoded), so this trims in place.
                    Arc::make_mut(object).trim(&kept);
                    return;
                }
                // Only looked up for the rare object that does not decode: the last
                // version that did stays in use.
                let previous = stored
                    .get(&ObjectRef::from_obj(&*obj))
                    .and_then(|p| p.usable().cloned());
                if let Lenient::Undecodable {
                    metadata,
                    last_good,
                    ..
                } = obj
                {
                    // Only its name is needed, to report it.
                    metadata.managed_fields = None;
                    metadata.annotations = None;
                    *last_good = previous;
                }
            })
            .reflect(writer);
        let (counters, dirty) = (self.counters.clone(), self.dirty.clone());
        self.tasks.push(tokio::spawn(async move {
            let mut stream = pin!(stream);
            let mut listed = false;
            let mut retry = backoff::RetryState::new(K::OPTIONAL);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init) => {}
                    Ok(watcher::Event::InitApply(obj)) => check_valid(&obj, &counters),
                    Ok(watcher::Event::InitDone) => {
                        // A completed list after the first one is a relist
                        // (e.g. after 410 Gone); failed attempts are not.
                        if listed {
                            counters.record_relist();
                        }
                        listed = true;
                        retry.succeeded(K::KIND);
                        dirty.notify_one();
                    }
                    Ok(watcher::Event::Apply(obj)) => {
                        check_valid(&obj, &counters);
                        retry.succeeded(K::KIND);
                        dirty.notify_one();
                    }
                    Ok(watcher::Event::Delete(_)) => {
                        retry.succeeded(K::KIND);
                        dirty.notify_one();
                    }
                    Err(error) => {
                        // The watcher tries again when it is next polled: after the delay.
                        counters.record_watch_error();
                        let delay = retry.failed(K::KIND, &error);
                        tokio::time::sleep(delay).await;
                    }
                }
            }
            tracing::error!(kind = K::KIND, "watch stream ended");
        }));
        reader
    }
}

fn check_valid<K: ClusterKind>(obj: &Lenient<K>, counters: &SourceCounters) {
    let reason = match obj {
        Lenient::Decoded(object) => match object.invalid_reason() {
            Some(reason) => reason.to_string(),
            None => return,
        },
        Lenient::Undecodable { error, .. } => format!("undecodable: {error}"),
    };
    counters.record_invalid_object();
    let meta = obj.meta();
    let name = meta.name.as_deref().unwrap_or("<none>");
    let namespace = meta.namespace.as_deref().unwrap_or("");
    tracing::warn!(
        kind = K::KIND,
        namespace,
        name,
        reason,
        "dropping invalid object"
    );
}

/// One kind's reflector store, behind a type-erased face so that the stores of every kind
/// of the registry fit in one list.
trait KindStore: Send + Sync {
    /// Whether the first state waits for this kind (custom resources may be absent).
    fn required(&self) -> bool;

    /// Resolves once the kind has listed.
    fn wait_until_ready(&self) -> BoxFuture<'_, Result<(), WriterDropped>>;

    /// Puts the kind's usable, valid objects into `objects` (shared, not copied).
    fn fill(&self, objects: &mut ClusterObjects);
}

impl<K: ClusterKind> KindStore for Store<Lenient<K>> {
    fn required(&self) -> bool {
        !K::OPTIONAL
    }

    fn wait_until_ready(&self) -> BoxFuture<'_, Result<(), WriterDropped>> {
        Box::pin(Store::wait_until_ready(self))
    }

    fn fill(&self, objects: &mut ClusterObjects) {
        *K::of_mut(objects) = self
            .state()
            .iter()
            .filter_map(|obj| obj.usable())
            .filter(|obj| obj.invalid_reason().is_none())
            .cloned()
            .collect();
    }
}

/// The reflector stores of all kinds.
struct Stores(Vec<Box<dyn KindStore>>);

impl Stores {
    async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        // Custom resources the cluster may not serve are not waited for: their objects
        // join later states once their CRD exists and they have listed.
        futures::future::try_join_all(
            self.0
                .iter()
                .filter(|store| store.required())
                .map(|store| store.wait_until_ready()),
        )
        .await?;
        Ok(())
    }

    fn snapshot(&self) -> ClusterObjects {
        let mut objects = ClusterObjects::default();
        for store in &self.0 {
            store.fill(&mut objects);
        }
        objects.sort();
        objects
    }
}

/// Publishes a snapshot once every store is ready, then again (at most every
/// `debounce`) whenever a store changed and the result differs.
async fn combine(
    stores: Stores,
    dirty: Arc<Notify>,
    debounce: Duration,
    snapshots: watch::Sender<Arc<ClusterObjects>>,
    ready: watch::Sender<bool>,
    counters: Arc<SourceCounters>,
) {
    if stores.wait_until_ready().await.is_err() {
        tracing::error!("a reflector stopped before its initial list completed");
        return;
    }
    // Counted before sending so that whoever sees a snapshot also sees it
    // counted.
    counters.record_publish();
    snapshots.send_replace(Arc::new(stores.snapshot()));
    // Only after the first publish, so that readers of a ready source never
    // see the empty placeholder.
    ready.send_replace(true);
    loop {
        dirty.notified().await;
        tokio::time::sleep(debounce).await;
        let next = stores.snapshot();
        // Relists and trimmed-field updates often change nothing we keep.
        if **snapshots.borrow() != next {
            counters.record_publish();
            snapshots.send_replace(Arc::new(next));
        }
    }
}
