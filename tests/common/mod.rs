//! Shared by the end-to-end tests: the real `ordo` binary serving on a random port
//! against a test database, killed when dropped (or on demand, with SIGKILL, and
//! started again on the same database), and a few HTTP helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // not every test uses every helper

use ordo_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The admin token the test servers are started with.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A running `ordo serve`.
pub struct Server {
    /// Shared with [`Killer`]s, so that a kill works while clients share the server.
    child: Arc<Mutex<Child>>,
    /// The database URL and extra environment it was started with, to start it again.
    url: String,
    env: Vec<(String, String)>,
    /// `http://ADDRESS` of the current process (a restart listens on a new port).
    pub base: String,
    pub client: reqwest::Client,
}

impl Server {
    /// Starts a server on `db` with the admin token set and default limits (so a
    /// `min_version` wait of up to 5 s: PostgreSQL projections trail by whatever runs
    /// anywhere in the cluster, such as other tests).
    pub async fn start(db: &TestDatabase) -> Server {
        Self::start_with(db, &[("ORDO_ADMIN_TOKEN", ADMIN_TOKEN)]).await
    }

    /// Starts a server on `db` with these extra environment variables.
    pub async fn start_with(db: &TestDatabase, env: &[(&str, &str)]) -> Server {
        Self::start_on(db.url(), env).await
    }

    /// Starts a server on the database at `url` (a test database's URL, perhaps with
    /// connection parameters such as PostgreSQL's `application_name`).
    pub async fn start_on(url: &str, env: &[(&str, &str)]) -> Server {
        let env: Vec<(String, String)> = env.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let (child, base) = spawn(url, &env).await;
        let client = reqwest::Client::builder().no_proxy().build().expect("an HTTP client");
        Server { child: Arc::new(Mutex::new(child)), url: url.to_owned(), env, base, client }
    }

    /// Kills the process with SIGKILL — no shutdown of any kind — and waits until it
    /// is gone. Clients may be sending requests meanwhile: theirs fail from here on.
    pub async fn kill(&self) {
        self.killer().kill();
        self.wait_killed().await;
    }

    /// A handle that SIGKILLs this process from any task or thread.
    pub fn killer(&self) -> Killer {
        Killer { child: Arc::clone(&self.child) }
    }

    /// Waits until the process is gone, and asserts that SIGKILL ended it.
    pub async fn wait_killed(&self) {
        use std::os::unix::process::ExitStatusExt;
        let status = eventually("the killed server to be gone", Duration::from_secs(30), || async {
            self.child.lock().unwrap().try_wait().expect("the status is readable")
        })
        .await;
        assert_eq!(status.signal(), Some(9), "the server died of SIGKILL: {status}");
    }

    /// Starts the server again on the same database with the same settings, after
    /// [`Server::kill`]. It listens on a new port: `base` (and so `url`) follows it.
    pub async fn restart(&mut self) {
        let exited = self.child.lock().unwrap().try_wait().expect("the status is readable");
        assert!(exited.is_some(), "restart needs a dead server");
        let (child, base) = spawn(&self.url, &self.env).await;
        self.child = Arc::new(Mutex::new(child));
        self.base = base;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request builder for `path`.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Sends `body` as JSON with `headers`, and reads the whole answer.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Reply {
        self.try_send(method, path, body, headers).await.expect("the server answers")
    }

    /// Like [`Server::send`], but a request that gets no whole answer (the server is
    /// dead, or died while answering) is an `Err` rather than a panic.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::try_read(request.send().await?).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, &[]).await
    }

    /// Creates an order for `customer` and returns its id.
    pub async fn create_order(&self, customer: &str) -> String {
        let reply = self.post("/orders", serde_json::json!({ "customer_id": customer })).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        reply.json()["order_id"].as_str().expect("order_id").to_owned()
    }

    /// The raw event stream of order `id`, oldest first (`GET /orders/{id}/events`).
    pub async fn events(&self, id: &str) -> Vec<Value> {
        let reply = self.get(&format!("/orders/{id}/events")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json().as_array().expect("an array of events").clone()
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id().expect("the server is running")
    }

    /// Sends SIGTERM and waits (at most 30 s) for the server to exit; its exit status.
    pub async fn terminate(self) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success());
        eventually("the server to exit after SIGTERM", Duration::from_secs(30), || async {
            self.child.lock().unwrap().try_wait().expect("the exit status is readable")
        })
        .await
    }
}

/// Kills a [`Server`]'s process from anywhere (see [`Server::killer`]).
#[derive(Clone)]
pub struct Killer {
    child: Arc<Mutex<Child>>,
}

impl Killer {
    /// Sends SIGKILL at once; panics if the process had already exited on its own.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        assert!(child.try_wait().expect("the status is readable").is_none(), "the server exited before the kill");
        child.start_kill().expect("SIGKILL is sent");
    }
}

/// Spawns `ordo serve` on `url` and waits for the address it listens on.
async fn spawn(url: &str, env: &[(String, String)]) -> (Child, String) {
    let log = if std::env::var_os("ORDO_TEST_SERVER_LOG").is_some() { Stdio::inherit() } else { Stdio::null() };
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .env_remove("ORDO_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the ordo binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the server says where it listens within 60 s")
        .expect("stdout is readable")
        .expect("the server printed a line before exiting");
    let address = line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let base = format!("http://{address}");
    // Keep draining stdout so that the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

/// A small deterministic random source (SplitMix64) for a test's choices: seed it
/// from [`Rng::seed`], print the seed, and a failing run's choices can be replayed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed from `ORDO_TEST_SEED`, or from the clock.
    pub fn seed() -> u64 {
        match std::env::var("ORDO_TEST_SEED") {
            Ok(seed) => seed.parse().expect("ORDO_TEST_SEED is a number"),
            Err(_) => {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
            }
        }
    }

    /// An independent stream of choices for participant `n` of a test.
    pub fn fork(&self, n: u64) -> Self {
        Self(self.0 ^ n.wrapping_add(1).wrapping_mul(0xa076_1d64_78bd_642f))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

/// A whole answer: status, headers and body bytes.
#[derive(Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Reply {
    /// The status, the headers a test looks at, and the body as text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut reply = f.debug_struct("Reply");
        reply.field("status", &self.status);
        for name in ["etag", "location", "idempotent-replayed", "retry-after"] {
            if let Some(value) = self.header(name) {
                reply.field(name, &value);
            }
        }
        reply.field("body", &self.text()).finish()
    }
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        Self::try_read(response).await.expect("the body is readable")
    }

    pub async fn try_read(response: reqwest::Response) -> Result<Reply, reqwest::Error> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Reply { status, headers, body })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with `status` and `code` (and a consistent body).
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "expected {status} {code}, got {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.text());
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["status"], status, "{body}");
        for field in ["type", "title", "detail"] {
            assert!(body[field].is_string(), "problem without {field}: {body}");
        }
    }

    /// Asserts a successful command answer at `version` for `order_id`.
    #[track_caller]
    pub fn assert_command(&self, status: u16, order_id: &str, version: u64) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(self.header("etag"), Some(format!("\"{version}\"").as_str()));
        let body = self.json();
        assert_eq!(body["order_id"], order_id, "{body}");
        assert_eq!(body["version"], version, "{body}");
        assert!(body["position"].as_u64().is_some_and(|p| p > 0), "{body}");
        assert_eq!(body.as_object().map(|o| o.len()), Some(3), "exactly order_id, version, position: {body}");
    }
}

/// Polls `check` until it returns `Some` or `limit` passes (then panics with `what`).
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
