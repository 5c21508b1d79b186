//! An in-process Kubernetes API for the reconcile tests: kube's `Client` runs on a tower
//! service (as controller-rs's tests do) that serves the few requests a pass makes (the
//! credentials Secret, the finalizer, status patches, Events) from memory and records each status written, so
//! a test runs a real reconcile against the in-process emulator in milliseconds, no API server;
//! and the `Context` such a pass runs with (`context`, `context_with`), built as `run_controllers` builds it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use cloudsso_mfa_operator::cloud::{self, ClientConfig};
use cloudsso_mfa_operator::controller::clients::CloudClients;
use cloudsso_mfa_operator::controller::context::{Context, Settings, Stores};
use cloudsso_mfa_operator::controller::keys::FINALIZER;
use cloudsso_mfa_operator::controller::reconciler::Kind;
use cloudsso_mfa_operator::controller::tenancy::Tenancy;
use cloudsso_mfa_operator::telemetry::Metrics;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use kube::runtime::reflector;
use serde_json::{Value, json};

/// What the fake API holds and saw.
#[derive(Default)]
pub struct Server {
    /// Objects by path (`/api/v1/namespaces/ns/secrets/name`, `/apis/.../name`).
    pub objects: HashMap<String, Value>,
    /// Every status written, in order, by object path.
    pub statuses: Vec<(String, Value)>,
    /// Every Event's reason, in order.
    pub events: Vec<String>,
}

pub type Shared = Arc<Mutex<Server>>;

/// A kube Client on a fresh fake API, and the fake.
pub fn client() -> (kube::Client, Shared) {
    let shared: Shared = Arc::default();
    (client_on(&shared), shared)
}

/// Another kube Client on the fake API `shared` (a second process, e.g. after a restart).
pub fn client_on(shared: &Shared) -> kube::Client {
    let server = shared.clone();
    let service = tower::service_fn(move |request: Request<kube::client::Body>| {
        let server = server.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let (status, answer) = answer(&server, parts.method.as_str(), parts.uri.path(), &body);
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(answer.to_string())))
                .expect("a response");
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    kube::Client::new(service, "default")
}

fn not_found(path: &str) -> (StatusCode, Value) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("{path} not found"), "reason": "NotFound", "code": 404});
    (StatusCode::NOT_FOUND, status)
}

fn answer(server: &Shared, method: &str, path: &str, body: &[u8]) -> (StatusCode, Value) {
    let mut server = server.lock().unwrap();
    let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match method {
        "GET" => match server.objects.get(path) {
            Some(object) => (StatusCode::OK, object.clone()),
            None => not_found(path),
        },
        "POST" if path.ends_with("/events") => {
            let reason = sent["reason"].as_str().unwrap_or_default().to_string();
            server.events.push(reason);
            (StatusCode::CREATED, sent)
        }
        "PATCH" if path.ends_with("/status") => {
            let object_path = path.trim_end_matches("/status").to_string();
            let Some(object) = server.objects.get_mut(&object_path) else {
                return not_found(path);
            };
            object["status"] = sent["status"].clone();
            let written = object.clone();
            server.statuses.push((object_path, sent["status"].clone()));
            (StatusCode::OK, written)
        }
        "PATCH" => {
            // A merge patch of metadata (the finalizer): kept, and the object returned.
            let Some(object) = server.objects.get_mut(path) else {
                return not_found(path);
            };
            if let Some(finalizers) = sent["metadata"].get("finalizers") {
                object["metadata"]["finalizers"] = finalizers.clone();
            }
            (StatusCode::OK, object.clone())
        }
        _ => not_found(path),
    }
}

impl Server {
    /// The last status written to `path`.
    pub fn last_status(&self, path: &str) -> Option<Value> {
        self.statuses
            .iter()
            .rev()
            .find(|(at, _)| at == path)
            .map(|(_, status)| status.clone())
    }
}

/// The namespace the tests' resources live in.
pub const NAMESPACE: &str = "team";

/// A client on a fresh fake API holding the namespace's credentials Secret `keys`.
pub fn with_keys(access_key_id: &str, access_key_secret: &str) -> (kube::Client, Shared) {
    let (client, server) = client();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "keys", "namespace": NAMESPACE},
        "data": {"accessKeyId": b64(access_key_id), "accessKeySecret": b64(access_key_secret)}});
    let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets/keys");
    server.lock().unwrap().objects.insert(path, secret);
    (client, server)
}

/// A resource of `plural` named `name` (created at `created`), finalized already when its kind
/// finalizes, stored in the fake API; with its path.
pub fn object<K: Kind>(
    server: &Shared,
    plural: &str,
    name: &str,
    created: &str,
    spec: Value,
) -> (K, String) {
    let finalizers = if K::FINALIZES {
        json!([FINALIZER])
    } else {
        json!([])
    };
    let value = json!({"apiVersion": "cloudsso.mfa-operator.dev/v1alpha1", "kind": K::kind(&()),
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": format!("uid-{name}"),
            "generation": 1, "creationTimestamp": created, "finalizers": finalizers},
        "spec": spec});
    let path =
        format!("/apis/cloudsso.mfa-operator.dev/v1alpha1/namespaces/{NAMESPACE}/{plural}/{name}");
    server
        .lock()
        .unwrap()
        .objects
        .insert(path.clone(), value.clone());
    (serde_json::from_value(value).expect("a valid object"), path)
}

/// The object at `path` as the fake API now holds it (its last status written).
pub fn stored<K: Kind>(server: &Shared, path: &str) -> K {
    serde_json::from_value(server.lock().unwrap().objects[path].clone()).expect("a valid object")
}

/// Stores with nothing in them (no watches run in these tests).
pub fn empty_stores() -> Stores {
    Stores {
        policies: reflector::store().0,
        users: reflector::store().0,
        ram_preferences: reflector::store().0,
        ram_users: reflector::store().0,
        user_policies: reflector::store().0,
    }
}

/// A context on the fake API, as `run_controllers` builds one, with `stores` (a 60 s resync,
/// 100 calls/s, no operator credentials).
pub fn context_with(client: kube::Client, stores: Stores) -> Arc<Context> {
    cloud::install_crypto_provider();
    let metrics = Arc::new(Metrics::new());
    let http = cloud::http_client().expect("an HTTP client");
    let clients = CloudClients::new(
        http,
        Err("none".into()),
        ClientConfig::default(),
        metrics.clone(),
    );
    let settings = Settings {
        resync_interval: Duration::from_secs(60),
        device_resync_interval: Duration::from_secs(60),
        cloud_qps: 100,
        concurrency: 4,
    };
    let tenancy = Tenancy::new(reflector::store().0, reflector::store().0);
    let (ctx, _) = Context::new(client, clients, settings, metrics, tenancy, stores);
    Arc::new(ctx)
}

/// `context_with` empty stores.
pub fn context(client: kube::Client) -> Arc<Context> {
    context_with(client, empty_stores())
}
