//! Per-token rate limits in events per second, on governor keyed limiters.
//!
//! A governor keyed limiter has one quota for all its keys, so tokens are grouped by their
//! (rate, burst) quota: one keyed limiter per distinct quota, keyed by the token's position.
//! A batch of N events costs N cells. Idle keys are pruned with `retain_recent()`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::auth::{Token, Tokens};

/// Key used for every request when authentication is disabled.
pub const ANONYMOUS: u32 = u32::MAX;

/// Why a batch was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Denied {
    /// Retry after this long.
    Wait(Duration),
    /// The batch is larger than the burst: it can never pass as one request.
    OverBurst { burst: u32 },
}

/// The limiters of the current token set.
pub struct Limiter {
    default: (NonZeroU32, NonZeroU32),
    by_quota: HashMap<(NonZeroU32, NonZeroU32), DefaultKeyedRateLimiter<u32>>,
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
                DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
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
                // A token that sets only its rate gets a burst of twice that (as the defaults).
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

    /// Admits `n` events for `token` (None = anonymous) or says how long to wait.
    pub fn check(&self, token: Option<&Token>, n: usize) -> Result<(), Denied> {
        let quota = Self::quota_of(self.default, token);
        let key = token.map_or(ANONYMOUS, |t| t.index);
        let Some(limiter) = self.by_quota.get(&quota) else {
            return Ok(());
        };
        let Some(cells) = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        match limiter.check_key_n(&key, cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Denied::Wait(
                not_until.wait_time_from(limiter.clock().now()),
            )),
            Err(_) => Err(Denied::OverBurst {
                burst: quota.1.get(),
            }),
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
    fn batches_cost_one_cell_per_event() {
        let tokens =
            Tokens::from_toml_str("[[tokens]]\ntoken = \"t\"\nclients = [\"*\"]\n").unwrap();
        let limiter = Limiter::new(&tokens, nz(10), nz(20));
        let t = tokens.find("t").unwrap();
        assert_eq!(limiter.check(Some(&t), 15), Ok(()));
        match limiter.check(Some(&t), 10) {
            Err(Denied::Wait(wait)) => assert!(
                wait > Duration::ZERO && wait <= Duration::from_secs(1),
                "{wait:?}"
            ),
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
            "[[tokens]]\ntoken = \"a\"\nclients = [\"*\"]\n[[tokens]]\ntoken = \"b\"\nclients = [\"*\"]\nrate = 1\nburst = 3\n",
        )
        .unwrap();
        let limiter = Limiter::new(&tokens, nz(100), nz(100));
        let (a, b) = (tokens.find("a").unwrap(), tokens.find("b").unwrap());
        assert_eq!(limiter.check(Some(&b), 3), Ok(()));
        assert!(matches!(limiter.check(Some(&b), 1), Err(Denied::Wait(_))));
        assert_eq!(limiter.check(Some(&a), 100), Ok(()));
        assert_eq!(limiter.check(None, 100), Ok(()));
        assert_eq!(limiter.tracked_keys(), 3);
    }
}
