//! The real server under test: `ordo serve --bind 127.0.0.1:0` as a child process,
//! its address read from the `listening on ADDR` line it prints, its log (stderr)
//! kept in a file, and a graceful stop (SIGTERM, then SIGKILL if it hangs).

use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest the server may take to migrate and listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a graceful stop may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// How to build the binaries, for error messages and `--help`.
pub const BUILD_HINT: &str = "cargo build --release -p ordo -p ordo-bench";

pub struct ServerProcess {
    child: Child,
    pub address: SocketAddr,
    pub pid: u32,
}

/// The `ordo` binary: `explicit` if given, else the one beside this benchmark's.
pub fn locate_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()
            .context("cannot find this benchmark's own path")?
            .with_file_name(format!("ordo{}", std::env::consts::EXE_SUFFIX)),
    };
    anyhow::ensure!(
        path.is_file(),
        "no server binary at {} (build it with `{BUILD_HINT}`, or pass --server PATH)",
        path.display()
    );
    Ok(path)
}

impl ServerProcess {
    /// Starts `binary serve` on `database_url` with `extra` arguments; its stderr goes
    /// to `log`. Returns once it listens.
    pub async fn start(binary: &Path, database_url: &str, extra: &[String], log: &Path) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Command::new(binary)
            .arg("--database-url")
            .arg(database_url)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("the server's stdout is not piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(address) = line.strip_prefix("listening on ") {
                    return address.trim().parse::<SocketAddr>().context("unreadable address");
                }
            }
            anyhow::bail!("the server exited before listening (see {})", log.display())
        })
        .await
        .with_context(|| format!("the server did not listen within {START_TIMEOUT:?} (see {})", log.display()))??;
        // Whatever else it prints must not fill the pipe and block it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, address, pid })
    }

    /// SIGTERM, and SIGKILL if it has not exited in time. An error if it had to be
    /// killed or exited with a failure.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid).ok().and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // It may have exited already; `wait` below tells.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                let status = status.context("cannot wait for the server")?;
                anyhow::ensure!(status.success(), "the server stopped with {status}");
                Ok(())
            }
            Err(_) => {
                self.child.kill().await.context("cannot kill the server")?;
                anyhow::bail!("the server did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed")
            }
        }
    }
}
