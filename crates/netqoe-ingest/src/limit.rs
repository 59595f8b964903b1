//! Per-token rate limits in events per second, on governor keyed limiters.
//!
//! A governor keyed limiter has one quota for all its keys, so tokens are grouped by their
//! (rate, burst) quota: one keyed limiter per distinct quota, keyed by the token's position.
//! A batch of N events costs N cells. Idle keys are pruned with `retain_recent()`. Every
//! decision also says what the bucket holds, for the `RateLimit-*` response headers.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::auth::{Token, Tokens};

/// Key used for every request when authentication is disabled.
pub const ANONYMOUS: u32 = u32::MAX;

type KeyedLimiter =
    RateLimiter<u32, DefaultKeyedStateStore<u32>, DefaultClock, StateInformationMiddleware>;

/// The state of a token's bucket after a decision (the `RateLimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Events the bucket holds when full: the token's burst.
    pub limit: u32,
    /// Events a request could carry right now.
    pub remaining: u32,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

/// Why a batch was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Denied {
    /// Retry after `wait`; `budget` is the bucket as it is now.
    Wait { wait: Duration, budget: Budget },
    /// The batch is larger than the burst: it can never pass as one request.
    OverBurst { burst: u32 },
}

/// The limiters of the current token set.
pub struct Limiter {
    default: (NonZeroU32, NonZeroU32),
    by_quota: HashMap<(NonZeroU32, NonZeroU32), KeyedLimiter>,
}

impl Limiter {
    /// Limiters for `tokens`, with `rate`/`burst` for tokens that set none.
    pub fn new(tokens: &Tokens, rate: NonZeroU32, burst: NonZeroU32) -> Limiter {
        let default = (rate, burst);
        let mut by_quota = HashMap::new();
        let quotas = tokens
            .iter()
            .map(|t| Self::quota_of(default, Some(t)))
            .chain(std::iter::once(default));
        for (rate, burst) in quotas {
            by_quota.entry((rate, burst)).or_insert_with(|| {
                RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
                    .with_middleware::<StateInformationMiddleware>()
            });
        }
        Limiter { default, by_quota }
    }

    fn quota_of(
        default: (NonZeroU32, NonZeroU32),
        token: Option<&Token>,
    ) -> (NonZeroU32, NonZeroU32) {
        match token {
            None => default,
            Some(t) => {
                let rate = t.rate.unwrap_or(default.0);
                // A token that sets only its rate gets a burst of twice that rate.
                let burst = t
                    .burst
                    .or_else(|| {
                        t.rate
                            .and_then(|r| NonZeroU32::new(r.get().saturating_mul(2)))
                    })
                    .unwrap_or(default.1);
                (rate, burst)
            }
        }
    }

    /// The most events one request of `token` (None = anonymous) can ever be admitted with.
    pub fn burst_of(&self, token: Option<&Token>) -> u32 {
        Self::quota_of(self.default, token).1.get()
    }

    /// Admits `n` events for `token` (None = anonymous) or says how long to wait.
    pub fn check(&self, token: Option<&Token>, n: usize) -> Result<Budget, Denied> {
        let (rate, burst) = Self::quota_of(self.default, token);
        let key = token.map_or(ANONYMOUS, |t| t.index);
        let per_cell = Duration::from_secs(1) / rate.get();
        let full_after = |remaining: u32| per_cell * burst.get().saturating_sub(remaining);
        let full = Budget {
            limit: burst.get(),
            remaining: burst.get(),
            reset: Duration::ZERO,
        };
        // Every token of this set has its quota's limiter; a token of another set would not.
        let Some(limiter) = self.by_quota.get(&(rate, burst)) else {
            return Ok(full);
        };
        let Some(cells) = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)) else {
            return Ok(full);
        };
        match limiter.check_key_n(&key, cells) {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity().min(burst.get());
                Ok(Budget {
                    limit: burst.get(),
                    remaining,
                    reset: full_after(remaining),
                })
            }
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                // The bucket lacks about wait / per_cell of the n cells asked for.
                let missing = wait.as_nanos().div_ceil(per_cell.as_nanos().max(1));
                let remaining = u32::try_from(u128::from(cells.get()).saturating_sub(missing))
                    .unwrap_or(0)
                    .min(burst.get());
                Err(Denied::Wait {
                    wait,
                    budget: Budget {
                        limit: burst.get(),
                        remaining,
                        reset: full_after(remaining),
                    },
                })
            }
            Err(_) => Err(Denied::OverBurst { burst: burst.get() }),
        }
    }

    /// Forgets keys that have been idle for longer than their bucket takes to refill.
    pub fn prune(&self) {
        for limiter in self.by_quota.values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keys currently tracked (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        self.by_quota.values().map(|l| l.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn batches_cost_one_cell_per_event_and_report_the_bucket() {
        let tokens = Tokens::from_toml_str(
            "[[tokens]]\ntoken = \"t-0123456789abcdef\"\nclients = [\"*\"]\n",
        )
        .unwrap();
        let limiter = Limiter::new(&tokens, nz(10), nz(20));
        let t = tokens.find("t-0123456789abcdef").unwrap();
        assert_eq!(limiter.burst_of(Some(&t)), 20);
        let budget = limiter.check(Some(&t), 15).expect("admitted");
        assert_eq!((budget.limit, budget.remaining), (20, 5));
        // 15 events at 10/s: full again in 1.5 s
        assert_eq!(budget.reset, Duration::from_millis(1500));
        match limiter.check(Some(&t), 10) {
            Err(Denied::Wait { wait, budget }) => {
                assert!(
                    wait > Duration::ZERO && wait <= Duration::from_millis(500),
                    "{wait:?}"
                );
                assert_eq!((budget.limit, budget.remaining), (20, 5));
            }
            other => panic!("expected a wait, got {other:?}"),
        }
        assert_eq!(
            limiter.check(Some(&t), 21),
            Err(Denied::OverBurst { burst: 20 })
        );
    }

    #[test]
    fn tokens_have_their_own_buckets_and_quotas() {
        let tokens = Tokens::from_toml_str(
            "[[tokens]]\ntoken = \"a-0123456789abcdef\"\nclients = [\"*\"]\n[[tokens]]\ntoken = \"b-0123456789abcdef\"\nclients = [\"*\"]\nrate = 1\nburst = 3\n[[tokens]]\ntoken = \"c-0123456789abcdef\"\nclients = [\"*\"]\nrate = 7\n",
        )
        .unwrap();
        let limiter = Limiter::new(&tokens, nz(100), nz(100));
        let (a, b) = (
            tokens.find("a-0123456789abcdef").unwrap(),
            tokens.find("b-0123456789abcdef").unwrap(),
        );
        assert_eq!(limiter.burst_of(Some(&b)), 3);
        assert_eq!(
            limiter.burst_of(tokens.find("c-0123456789abcdef").as_deref()),
            14
        );
        assert_eq!(limiter.burst_of(None), 100);
        assert!(limiter.check(Some(&b), 3).is_ok());
        assert!(matches!(
            limiter.check(Some(&b), 1),
            Err(Denied::Wait { .. })
        ));
        assert!(limiter.check(Some(&a), 100).is_ok());
        assert!(limiter.check(None, 100).is_ok());
        assert_eq!(limiter.tracked_keys(), 3);
    }
}
