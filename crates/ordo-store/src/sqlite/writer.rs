//! The single SQLite writer. SQLite admits one writer at a time, so instead of letting
//! connections fight over the write lock (and sleep in the busy handler), every write
//! goes through one task that owns the write connection. It takes whatever writes are
//! queued, runs each in its own savepoint inside one `BEGIN IMMEDIATE` transaction and
//! commits once: group commit, so that N concurrent appends cost one fsync, while each
//! append still succeeds or fails alone.

use futures::future::BoxFuture;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::signal::SignalSender;
use crate::StoreError;
use std::sync::{Arc, Mutex};

/// The most writes committed together in one transaction.
const MAX_GROUP: usize = 256;

/// What a write job leaves behind once it ran: whether it succeeded (its savepoint is
/// kept) and how to tell its caller once the group's commit is decided.
type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;
type Run = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)> + Send>;

/// A queued write: the work, and how to fail its caller if the work never runs.
struct Job {
    run: Run,
    abort: Box<dyn FnOnce(&StoreError) + Send>,
}

/// A handle for submitting writes to the writer task.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub(crate) fn spawn(conn: SqliteConnection, signal: Arc<SignalSender>) -> Self {
        let (jobs, rx) = mpsc::channel(4 * MAX_GROUP);
        tokio::spawn(run(conn, rx, signal));
        Self { jobs }
    }

    /// Runs `write` inside the writer's transaction and returns its result once the
    /// transaction has committed (or the error that stopped it).
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        // Shared by the two ways a job can end: it ran, or its group failed first.
        let reply = Arc::new(Mutex::new(Some(reply)));
        let abort_reply = Arc::clone(&reply);
        let run: Run = Box::new(move |conn| {
            Box::pin(async move {
                let result = write(conn).await;
                let ok = result.is_ok();
                let finish: Finish = Box::new(move |commit_error| {
                    let outcome = match (result, commit_error) {
                        (Ok(_), Some(e)) => Err(commit_failure(e)),
                        (result, _) => result,
                    };
                    send(&reply, outcome);
                });
                (ok, finish)
            })
        });
        let abort = Box::new(move |e: &StoreError| send(&abort_reply, Err(commit_failure(e))));
        self.jobs.send(Job { run, abort }).await.map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }
}

type Reply<T> = Arc<Mutex<Option<oneshot::Sender<Result<T, StoreError>>>>>;

fn send<T>(reply: &Reply<T>, outcome: Result<T, StoreError>) {
    let sender = reply.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    if let Some(sender) = sender {
        let _ = sender.send(outcome);
    }
}

fn writer_gone() -> StoreError {
    StoreError::CommitFailed("the SQLite writer task has stopped".into())
}

/// The same failure for every caller in a failed group.
fn commit_failure(e: &StoreError) -> StoreError {
    match e {
        StoreError::ReadOnly(m) => StoreError::ReadOnly(m.clone()),
        StoreError::Locked(m) => StoreError::Locked(m.clone()),
        other => StoreError::CommitFailed(other.to_string()),
    }
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Job>, signal: Arc<SignalSender>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (finishers, result) = run_group(&mut conn, group).await;
        let error = result.err();
        if error.is_none() {
            signal.notify();
        }
        for finish in finishers {
            finish(error.as_ref());
        }
    }
    let _ = conn.close().await;
}

/// Runs one group in one transaction. A job that fails is rolled back to its savepoint
/// and does not disturb the others.
async fn run_group(conn: &mut SqliteConnection, group: Vec<Job>) -> (Vec<Finish>, Result<(), StoreError>) {
    let mut finishers = Vec::with_capacity(group.len());
    // A job alone needs no savepoint: its failure rolls back the transaction.
    let alone = group.len() == 1;
    let mut jobs = group.into_iter();
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE").await {
        return (finishers, Err(abort_rest(jobs, e.into())));
    }
    while let Some(job) = jobs.next() {
        if alone {
            let (ok, finish) = (job.run)(conn).await;
            finishers.push(finish);
            if !ok {
                // Nothing to commit; the job's own error is its caller's answer.
                let _ = exec(conn, "ROLLBACK").await;
                return (finishers, Ok(()));
            }
            continue;
        }
        if let Err(e) = exec(conn, "SAVEPOINT job").await {
            let _ = exec(conn, "ROLLBACK").await;
            return (finishers, Err(abort_rest(std::iter::once(job).chain(jobs), e.into())));
        }
        let (ok, finish) = (job.run)(conn).await;
        finishers.push(finish);
        let end = if ok { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
        if let Err(e) = exec(conn, end).await {
            let _ = exec(conn, "ROLLBACK").await;
            return (finishers, Err(abort_rest(jobs, e.into())));
        }
    }
    match exec(conn, "COMMIT").await {
        Ok(_) => (finishers, Ok(())),
        Err(e) => {
            let _ = exec(conn, "ROLLBACK").await;
            (finishers, Err(e.into()))
        }
    }
}

/// Fails the callers of jobs that never ran with the group's error, and returns it.
fn abort_rest(jobs: impl Iterator<Item = Job>, error: StoreError) -> StoreError {
    for job in jobs {
        (job.abort)(&error);
    }
    error
}

/// One statement on the write connection. Boxed, because sqlx's executor lifetimes
/// otherwise defeat the `Send` check of the spawned writer task.
fn exec<'c>(conn: &'c mut SqliteConnection, sql: &'static str) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move { sqlx::Executor::execute(conn, sql).await.map(|_| ()) })
}
