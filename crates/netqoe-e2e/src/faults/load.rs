//! The load of the fault suite: a few tasks POSTing batches of valid events to ingest, each
//! remembering exactly which event ids were acknowledged with 202. A 503, 429, other status or
//! a request without an answer acknowledges nothing; the task retries that same batch (same
//! ids) after `Retry-After`, as a probe's spool does.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::TOKEN;

/// Events of one request, with their ids.
#[derive(Clone)]
pub struct Batch {
    pub body: Vec<u8>,
    pub ids: Vec<String>,
}

impl Batch {
    /// `n` (at least 2) valid events of the load generator, numbered from `seq`, stamped now.
    pub fn generate(n: usize, seq: u64) -> Batch {
        let body = netqoe_loadgen::body(n.max(2), seq, 8, 4);
        let events: Vec<serde_json::Value> =
            serde_json::from_slice(&body).expect("the load generator writes a JSON array");
        let ids = events
            .iter()
            .map(|e| e["event_id"].as_str().expect("event_id").to_string())
            .collect();
        Batch { body, ids }
    }
}

/// How ingest answered one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 202: every event of the batch is acknowledged.
    Acked,
    /// 503, with or without a `Retry-After` header.
    Unavailable { retry_after: bool },
    /// 429.
    RateLimited,
    /// Any other status.
    Other(u16),
    /// No answer: connection refused or reset, or the request timed out.
    NoAnswer,
}

/// What the load is made of.
enum Source {
    /// Fresh batches of `batch` events until stopped.
    Fresh { batch: usize, seq: AtomicU64 },
    /// These batches, each until acknowledged; the tasks end when all are.
    Given(Mutex<VecDeque<Batch>>),
}

impl Source {
    fn next(&self, stop: &AtomicBool) -> Option<Batch> {
        match self {
            Source::Fresh { batch, seq } => (!stop.load(Ordering::Relaxed))
                .then(|| Batch::generate(*batch, seq.fetch_add(*batch as u64, Ordering::Relaxed))),
            Source::Given(queue) => queue.lock().expect("queue").pop_front(),
        }
    }
}

#[derive(Default)]
struct Log {
    acked: HashSet<String>,
    answers: Vec<(Instant, Answer)>,
}

/// What the load got acknowledged, and every answer with its time.
pub struct Acknowledged {
    pub ids: HashSet<String>,
    pub answers: Vec<(Instant, Answer)>,
}

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `tasks` tasks each sending a fresh batch of `batch` events every `pause` until
    /// [`Load::finish`].
    pub fn start(url: &str, tasks: usize, batch: usize, pause: Duration) -> Load {
        let seq = AtomicU64::new(0);
        Load::spawn(url, tasks, pause, Source::Fresh { batch, seq })
    }

    /// `tasks` tasks sending `batches` until each is acknowledged.
    pub fn replay(url: &str, tasks: usize, batches: Vec<Batch>, pause: Duration) -> Load {
        Load::spawn(url, tasks, pause, Source::Given(Mutex::new(batches.into())))
    }

    fn spawn(url: &str, tasks: usize, pause: Duration, source: Source) -> Load {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let (stop, log, source) = (Arc::default(), Arc::default(), Arc::new(source));
        let tasks = (0..tasks)
            .map(|_| {
                let (client, url) = (client.clone(), url.to_string());
                let (source, stop, log) = (source.clone(), Arc::clone(&stop), Arc::clone(&log));
                tokio::spawn(drive(client, url, source, stop, log, pause))
            })
            .collect();
        Load { stop, log, tasks }
    }

    /// Answers matching `pred` received since `since`.
    pub fn count(&self, since: Instant, pred: impl Fn(Answer) -> bool) -> usize {
        let log = self.log.lock().expect("log");
        log.answers
            .iter()
            .filter(|(t, a)| *t >= since && pred(*a))
            .count()
    }

    /// Waits until `n` answers matching `pred` arrived since `since`.
    pub async fn wait_for(
        &self,
        since: Instant,
        pred: impl Fn(Answer) -> bool + Copy,
        n: usize,
        limit: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        while self.count(since, pred) < n {
            if Instant::now() > deadline {
                bail!(
                    "{} of {n} expected answers within {limit:?}",
                    self.count(since, pred)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The ids acknowledged so far.
    pub fn acked_ids(&self) -> HashSet<String> {
        self.log.lock().expect("log").acked.clone()
    }

    /// Stops sending fresh batches (given batches are still retried until acknowledged or
    /// `limit` passes), waits for the tasks and returns what was acknowledged.
    pub async fn finish(self, limit: Duration) -> Acknowledged {
        let fresh_stop = Arc::clone(&self.stop);
        fresh_stop.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + limit;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        let mut log = self.log.lock().expect("log");
        Acknowledged {
            ids: std::mem::take(&mut log.acked),
            answers: std::mem::take(&mut log.answers),
        }
    }
}

async fn drive(
    client: reqwest::Client,
    url: String,
    source: Arc<Source>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
    pause: Duration,
) {
    let fresh = matches!(*source, Source::Fresh { .. });
    let mut pending: Option<Batch> = None;
    loop {
        let Some(batch) = pending.take().or_else(|| source.next(&stop)) else {
            return;
        };
        let (answer, wait) = post(&client, &url, &batch).await;
        {
            let mut log = log.lock().expect("log");
            log.answers.push((Instant::now(), answer));
            if answer == Answer::Acked {
                log.acked.extend(batch.ids.iter().cloned());
            }
        }
        if answer != Answer::Acked {
            if fresh && stop.load(Ordering::Relaxed) {
                return;
            }
            pending = Some(batch);
        }
        tokio::time::sleep(wait.unwrap_or(pause)).await;
    }
}

/// Posts one batch: the answer, and how long to wait before retrying it (`Retry-After`,
/// at most 2 s) when it was not acknowledged.
async fn post(client: &reqwest::Client, url: &str, batch: &Batch) -> (Answer, Option<Duration>) {
    let sent = client
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(batch.body.clone())
        .send()
        .await;
    let Ok(response) = sent else {
        return (Answer::NoAnswer, Some(Duration::from_millis(300)));
    };
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(Duration::from_secs(2)));
    let answer = match response.status().as_u16() {
        202 => return (Answer::Acked, None),
        503 => Answer::Unavailable {
            retry_after: retry_after.is_some(),
        },
        429 => Answer::RateLimited,
        other => Answer::Other(other),
    };
    (
        answer,
        Some(retry_after.unwrap_or(Duration::from_millis(500))),
    )
}
