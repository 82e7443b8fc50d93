//! Shared by the end-to-end tests: the real `ordo` binary serving on a random port
//! against a test database, killed when dropped, and a few HTTP helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // not every test uses every helper

use ordo_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The admin token the test servers are started with.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A running `ordo serve`.
pub struct Server {
    child: Child,
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
        let log = if std::env::var_os("ORDO_TEST_SERVER_LOG").is_some() { Stdio::inherit() } else { Stdio::null() };
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
        command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", db.url())
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
        // Keep draining stdout so that the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let client = reqwest::Client::builder().no_proxy().build().expect("an HTTP client");
        Server { child, base: format!("http://{address}"), client }
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
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::read(request.send().await.expect("the server answers")).await
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

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// Sends SIGTERM and waits (at most 30 s) for the server to exit; its exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server exits within 30 s of SIGTERM")
            .expect("the exit status is readable")
    }
}

/// A whole answer: status, headers and body bytes.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("the body is readable").to_vec();
        Reply { status, headers, body }
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
