//! `transport.http.inbound` (gated): plugins serve HTTP through one hyper
//! listener shared by the whole host.
//!
//! A plugin registers routes with `http_register({method, path})`; each
//! matching request becomes an `http.request` event in its mailbox, and
//! `http_respond({id, status, headers, body})` completes the waiting client.
//! The server answers on the plugin's behalf when it cannot: 404/405 for
//! unknown routes, 413/431 for a request over the body limit or too large for
//! the plugin's buffer, 408 for a body that does not arrive in time, 503 when
//! the mailbox is full or the plugin has failed, 504 when no response comes in
//! time. The listener's own limits are in [`ListenerSettings`].

mod deadline_stream;
mod listener;
mod request;
mod response_headers;
mod routes;
mod server;

pub use listener::ListenerSettings;
pub use server::HttpServer;

use pulp_abi::http::{HttpResponse, HttpRoute};
use pulp_abi::Code;
use pulp_ext::{
    host_fn, Capability, CapabilityError, EventSink, HostError, ImportSpec, PluginInfo, PluginState,
};
use routes::RouteTable;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::oneshot;
use wasmtime::Linker;

/// The capability's name in manifests.
pub const NAME: &str = "transport.http.inbound";

/// `[grants."transport.http.inbound"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// When set, the only routes the plugin may register (`"GET /path/:param"`);
    /// `pulp check` lists them and conflicts between plugins are found at load.
    pub routes: Option<Vec<String>>,
    /// Largest request body accepted; larger → 413.
    pub max_body_kb: u32,
    /// How long a client waits for `http_respond`; then 504.
    pub timeout_ms: u64,
    /// Most routes the plugin may register; one more → `http_register` returns 9.
    pub max_routes: u32,
    /// Most of its requests waiting for an answer at once; one more → 503. So
    /// a plugin that never answers holds at most this many of the listener's
    /// connections, never all of them.
    pub max_pending: u32,
}

/// Highest `max_routes` a manifest may grant: every request's lookup walks the table.
const MAX_ROUTES_CEILING: u32 = 1024;

/// Highest `max_pending` a manifest may grant.
const MAX_PENDING_CEILING: u32 = 65536;

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            routes: None,
            max_body_kb: 1024,
            timeout_ms: 10_000,
            max_routes: 64,
            max_pending: 256,
        }
    }
}

/// A plugin that serves routes.
struct RoutePlugin {
    name: String,
    sink: RwLock<Arc<dyn EventSink>>,
    available: AtomicBool,
    settings: HttpSettings,
    /// The plugin's `limits.max_buffer`: its whole `http.request` envelope must fit.
    max_buffer: usize,
    /// Its requests waiting for an answer now (at most `settings.max_pending`).
    pending: AtomicUsize,
}

/// A request waiting for its plugin's `http_respond`.
struct PendingReply {
    plugin: String,
    reply: oneshot::Sender<HttpResponse>,
}

#[derive(Default)]
struct Shared {
    routes: RwLock<RouteTable>,
    plugins: RwLock<HashMap<String, Arc<RoutePlugin>>>,
    pending: Mutex<HashMap<u64, PendingReply>>,
    next_id: AtomicU64,
    /// Routes declared in manifests, by plugin, for load-time conflict checks.
    declared: Mutex<HashMap<String, Vec<(String, String)>>>,
    /// Responses sent, by (plugin or `-`, status), for metrics.
    responses: Mutex<std::collections::BTreeMap<(String, u16), u64>>,
}

/// The HTTP capability. Clones share one route table and one server.
#[derive(Clone, Default)]
pub struct HttpCapability {
    shared: Arc<Shared>,
}

/// Per-instance state: this plugin's settings and its allow-list, normalised.
struct HttpSlot {
    settings: HttpSettings,
    allowed: Option<Vec<(String, String)>>,
}

const IMPORTS: &[ImportSpec] = &[
    ImportSpec::msgpack_in("http_register"),
    ImportSpec::msgpack_in("http_respond"),
];

impl HttpCapability {
    /// A capability with an empty route table and no server yet.
    pub fn new() -> Self {
        HttpCapability::default()
    }

    /// Starts the listener on `addr` (`127.0.0.1:0` picks a free port) with
    /// `limits` (`ListenerSettings::default()` for production defaults).
    pub async fn serve(
        &self,
        addr: &str,
        limits: &ListenerSettings,
    ) -> std::io::Result<HttpServer> {
        limits
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        HttpServer::start(self.shared.clone(), addr, limits.clone()).await
    }

    /// Responses sent so far, by plugin (`-` when no route matched) and status.
    pub fn responses(&self) -> Vec<crate::metrics::ResponseCount> {
        let counts = self
            .shared
            .responses
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        counts
            .into_iter()
            .map(|((plugin, status), count)| crate::metrics::ResponseCount {
                plugin,
                status,
                count,
            })
            .collect()
    }

    /// Requests still waiting for a plugin's response.
    pub fn in_flight(&self) -> usize {
        self.shared.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    fn register(state: &PluginState, route: HttpRoute, shared: &Shared) -> Result<(), HostError> {
        let info = state.info();
        let plugin = info.name.clone();
        let (settings, allowed) = state
            .slot::<HttpSlot>()
            .map(|s| (s.settings.clone(), s.allowed.clone()))
            .unwrap_or_default();
        let (method, path) =
            routes::parse_route(&route.method, &route.path).map_err(HostError::invalid)?;
        if allowed.is_some_and(|a| !a.contains(&(method.clone(), path.clone()))) {
            return Err(HostError::invalid(format!(
                "route {method} {path} is not in the manifest's routes"
            )));
        }
        {
            let mut table = shared
                .routes
                .write()
                .map_err(|_| HostError::failed("route table poisoned"))?;
            let max_routes = settings.max_routes as usize;
            if !table.serves(&method, &path, &plugin) && table.count(&plugin) >= max_routes {
                return Err(HostError::code(
                    Code::LimitExceeded,
                    format!("route {method} {path}: over max_routes = {max_routes}"),
                ));
            }
            if let Err(conflict) = table.insert(&method, &path, &plugin) {
                // Two plugins claiming one route is a deployment error: fail the plugin, naming both.
                return Err(HostError::Trap(wasmtime::Error::msg(conflict)));
            }
        }
        let mut plugins = shared
            .plugins
            .write()
            .map_err(|_| HostError::failed("plugin table poisoned"))?;
        match plugins.get(&plugin) {
            Some(existing) => {
                if let Ok(mut sink) = existing.sink.write() {
                    *sink = state.events().clone();
                }
                existing.available.store(true, Ordering::Release);
            }
            None => {
                plugins.insert(
                    plugin.clone(),
                    Arc::new(RoutePlugin {
                        name: plugin,
                        sink: RwLock::new(state.events().clone()),
                        available: AtomicBool::new(true),
                        settings,
                        max_buffer: info.limits.max_buffer as usize,
                        pending: AtomicUsize::new(0),
                    }),
                );
            }
        }
        tracing::info!(plugin = %state.info().name, "serving {method} {path}");
        Ok(())
    }

    fn respond(
        state: &PluginState,
        response: HttpResponse,
        shared: &Shared,
    ) -> Result<(), HostError> {
        // 1xx would be read as an interim answer, leaving the real one unsent.
        if !(200..=999).contains(&response.status) {
            return Err(HostError::invalid(format!(
                "status {} is not 200..=999",
                response.status
            )));
        }
        for (name, value) in &response.headers {
            response_headers::check(name, value).map_err(HostError::invalid)?;
        }
        let mut pending = shared
            .pending
            .lock()
            .map_err(|_| HostError::failed("pending table poisoned"))?;
        let owned = pending
            .get(&response.id)
            .is_some_and(|p| p.plugin == state.info().name);
        let waiting = owned.then(|| pending.remove(&response.id)).flatten();
        drop(pending);
        let Some(waiting) = waiting else {
            return Err(HostError::code(
                Code::NotFound,
                format!("no request {} is waiting for this plugin", response.id),
            ));
        };
        // The client may have gone away just now; the response is then dropped.
        let _ = waiting.reply.send(response);
        Ok(())
    }
}

impl Capability for HttpCapability {
    fn name(&self) -> &str {
        NAME
    }

    fn summary(&self) -> &str {
        "serve HTTP routes: requests arrive as `http.request` events, answered with http_respond"
    }

    fn imports(&self) -> &[ImportSpec] {
        IMPORTS
    }

    fn link(&self, linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        let shared = self.shared.clone();
        host_fn::msgpack_in(linker, "http_register", move |caller, route: HttpRoute| {
            HttpCapability::register(caller.data(), route, &shared)
        })?;
        let shared = self.shared.clone();
        host_fn::msgpack_in(
            linker,
            "http_respond",
            move |caller, response: HttpResponse| {
                HttpCapability::respond(caller.data(), response, &shared)
            },
        )
    }

    fn prepare(&self, plugin: &PluginInfo) -> Result<Vec<String>, CapabilityError> {
        let settings: HttpSettings = plugin.settings(NAME)?;
        if settings.max_body_kb == 0 || settings.timeout_ms == 0 {
            return Err(plugin.error(NAME, "max_body_kb and timeout_ms must be at least 1"));
        }
        if !(1..=MAX_PENDING_CEILING).contains(&settings.max_pending) {
            return Err(plugin.error(
                NAME,
                format!(
                    "max_pending = {} is not 1..={MAX_PENDING_CEILING}",
                    settings.max_pending
                ),
            ));
        }
        if !(1..=MAX_ROUTES_CEILING).contains(&settings.max_routes) {
            return Err(plugin.error(
                NAME,
                format!(
                    "max_routes = {} is not 1..={MAX_ROUTES_CEILING}",
                    settings.max_routes
                ),
            ));
        }
        let max_buffer_kb = plugin.limits.max_buffer / 1024;
        if settings.max_body_kb >= max_buffer_kb {
            return Err(plugin.error(
                NAME,
                format!(
                    "max_body_kb ({}) must be below limits.max_buffer_kb ({max_buffer_kb}): a request that large could not be handed to the plugin",
                    settings.max_body_kb
                ),
            ));
        }
        let mut notes = vec![format!(
            "http: request bodies up to {} KiB, response deadline {} ms, at most {} routes, at most {} requests awaiting an answer",
            settings.max_body_kb, settings.timeout_ms, settings.max_routes, settings.max_pending
        )];
        let Some(declared) = settings.routes else {
            notes.push(
                "http: routes are registered by pulp_init; they are not known before it runs"
                    .into(),
            );
            return Ok(notes);
        };
        if declared.len() > settings.max_routes as usize {
            return Err(plugin.error(
                NAME,
                format!(
                    "routes lists {} routes: over max_routes = {}",
                    declared.len(),
                    settings.max_routes
                ),
            ));
        }
        let parsed = declared
            .iter()
            .map(|r| routes::parse_route_line(r).map_err(|e| plugin.error(NAME, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut all = self
            .shared
            .declared
            .lock()
            .map_err(|_| plugin.error(NAME, "declared routes poisoned"))?;
        let mut table = RouteTable::default();
        for (other, routes) in all.iter().filter(|(name, _)| *name != &plugin.name) {
            for (method, path) in routes {
                let _ = table.insert(method, path, other);
            }
        }
        for (method, path) in &parsed {
            table
                .insert(method, path, &plugin.name)
                .map_err(|e| plugin.error(NAME, e))?;
            notes.push(format!("http: route {method} {path}"));
        }
        all.insert(plugin.name.clone(), parsed);
        Ok(notes)
    }

    fn instantiate(&self, state: &mut PluginState) -> Result<(), CapabilityError> {
        let settings: HttpSettings = state.info().settings(NAME)?;
        // Checked by `prepare`; a bad line here can only mean a changed manifest.
        let allowed = settings
            .routes
            .as_ref()
            .map(|lines| {
                lines
                    .iter()
                    .map(|r| routes::parse_route_line(r))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|e| state.info().error(NAME, e))?;
        state.insert_slot(HttpSlot { settings, allowed });
        Ok(())
    }

    fn release(&self, state: &mut PluginState) {
        let name = &state.info().name;
        if let Some(plugin) = self
            .shared
            .plugins
            .read()
            .ok()
            .and_then(|p| p.get(name).cloned())
        {
            plugin.available.store(false, Ordering::Release);
        }
        // Dropping the reply senders answers their clients with 503 at once.
        if let Ok(mut pending) = self.shared.pending.lock() {
            pending.retain(|_, p| &p.plugin != name);
        }
    }
}

impl RoutePlugin {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.settings.timeout_ms)
    }

    fn max_body(&self) -> usize {
        self.settings.max_body_kb as usize * 1024
    }
}
