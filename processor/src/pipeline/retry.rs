//! How long a batch may keep retrying, and the retry loop every stage shares.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::BatchError;
use crate::error::{Classify, Disposition, DlqReason};
use crate::metrics::Metrics;

/// First pause after a transient failure; doubled up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);

/// Longest pause between two attempts: an outage that ends is noticed within this.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// When a batch must stop retrying: `limit` after it started, or `drain` after shutdown
/// was requested, whichever comes first. A token, not a future, so every stage can wait
/// on it again without re-arming a timer.
#[derive(Debug)]
pub struct Deadline {
    passed: CancellationToken,
}

impl Deadline {
    /// Passes `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Self::start(None, Duration::ZERO, limit)
    }

    /// Passes `limit` from now, or `drain` after `shutdown` is cancelled.
    pub fn for_batch(shutdown: &CancellationToken, drain: Duration, limit: Duration) -> Self {
        Self::start(Some(shutdown.clone()), drain, limit)
    }

    fn start(shutdown: Option<CancellationToken>, drain: Duration, limit: Duration) -> Self {
        let passed = CancellationToken::new();
        let timer = passed.clone();
        tokio::spawn(async move {
            let drained = async {
                match shutdown {
                    Some(s) => {
                        s.cancelled().await;
                        tokio::time::sleep(drain).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Dropped: the batch ended; nothing waits any more.
                _ = timer.cancelled() => {}
                _ = drained => timer.cancel(),
                _ = tokio::time::sleep(limit) => timer.cancel(),
            }
        });
        Deadline { passed }
    }

    /// Resolves once the deadline has passed.
    pub async fn passed(&self) {
        self.passed.cancelled().await;
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        // Ends the timer task.
        self.passed.cancel();
    }
}

/// Runs `op` until it succeeds or fails for a reason retrying cannot fix. Errors
/// classified [`Disposition::Retry`] are retried with exponential backoff until
/// `deadline`; a [`Disposition::DeadLetter`] error comes back as `Ok(Err(_))` with its
/// reason, for the stage to refuse the record; [`Disposition::Fatal`] stops the batch.
pub async fn retry<T, E, F, Fut>(
    metrics: &Metrics,
    stage: &'static str,
    deadline: &Deadline,
    mut op: F,
) -> Result<Result<T, (DlqReason, E)>, BatchError>
where
    E: Classify + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = FIRST_DELAY;
    loop {
        let result = tokio::select! {
            biased;
            r = op() => r,
            _ = deadline.passed() => return Err(BatchError::Aborted(stage)),
        };
        let error = match result {
            Ok(v) => return Ok(Ok(v)),
            Err(e) => e,
        };
        match error.disposition() {
            Disposition::DeadLetter(reason) => return Ok(Err((reason, error))),
            Disposition::Fatal => return Err(BatchError::Fatal(error.to_string())),
            Disposition::Retry if error.operator_must_act() => {
                tracing::error!(message = "Dependency refused the batch for a reason that is not the data; holding it until an operator fixes it.", stage, %error);
                metrics.retry(stage, &error);
            }
            Disposition::Retry => metrics.retry(stage, &error),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = deadline.passed() => return Err(BatchError::Aborted(stage)),
        }
        delay = (delay * 2).min(MAX_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(Disposition);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }

    impl Classify for E {
        fn disposition(&self) -> Disposition {
            self.0
        }
    }

    #[tokio::test]
    async fn retries_an_outage_until_it_ends() {
        let metrics = Metrics::new();
        let deadline = Deadline::after(Duration::from_secs(60));
        let mut failures = 2;
        let got = retry(&metrics, "test", &deadline, || {
            let fail = failures > 0;
            failures -= 1;
            async move {
                if fail {
                    Err(E(Disposition::Retry))
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert!(matches!(got, Ok(Ok(7))));
        assert!(
            metrics
                .encode()
                .contains("processor_retries_total{stage=\"test\"} 2")
        );
    }

    #[tokio::test]
    async fn bad_data_comes_back_and_fatal_stops() {
        let metrics = Metrics::new();
        let deadline = Deadline::after(Duration::from_secs(60));
        let bad = E(Disposition::DeadLetter(DlqReason::Undecodable));
        let got = retry(&metrics, "test", &deadline, || async {
            Err::<(), _>(E(bad.0))
        })
        .await;
        assert!(matches!(got, Ok(Err((DlqReason::Undecodable, _)))));
        let got = retry(&metrics, "test", &deadline, || async {
            Err::<(), _>(E(Disposition::Fatal))
        })
        .await;
        assert!(matches!(got, Err(BatchError::Fatal(_))));
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let metrics = Metrics::new();
        let deadline = Deadline::after(Duration::from_millis(300));
        let got = retry(&metrics, "test", &deadline, || async {
            Err::<(), _>(E(Disposition::Retry))
        })
        .await;
        assert!(matches!(got, Err(BatchError::Aborted("test"))));
    }

    #[tokio::test]
    async fn shutdown_passes_the_deadline_after_the_drain_bound() {
        let shutdown = CancellationToken::new();
        let deadline = Deadline::for_batch(
            &shutdown,
            Duration::from_millis(50),
            Duration::from_secs(60),
        );
        let early = tokio::time::timeout(Duration::from_millis(200), deadline.passed()).await;
        assert!(early.is_err(), "passed before shutdown");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), deadline.passed())
            .await
            .expect("deadline passed after shutdown + drain");
        // Waiting again returns at once: a token, not a spent future.
        tokio::time::timeout(Duration::from_millis(10), deadline.passed())
            .await
            .expect("still passed");
    }
}
