//! Per-chat rate limit and retry backoff: the two clocks of a delivery.

use std::time::Duration;

use crate::config::Rate;

/// A token bucket in GCRA form: one timestamp, bursts of up to `count`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    interval: Duration,
    burst: Duration,
    /// The theoretical arrival time of the next message.
    tat: Option<std::time::Instant>,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> Self {
        let interval = rate.per / rate.count.max(1);
        Self {
            interval,
            burst: interval * rate.count.max(1).saturating_sub(1),
            tat: None,
        }
    }

    /// How long to wait before sending one more message at `now` (zero =
    /// send now); the send is counted when this returns zero.
    pub fn check(&mut self, now: std::time::Instant) -> Duration {
        let tat = self.tat.unwrap_or(now).max(now);
        let allowed_at = tat.checked_sub(self.burst).unwrap_or(now);
        if allowed_at > now {
            return allowed_at - now;
        }
        self.tat = Some(tat + self.interval);
        Duration::ZERO
    }
}

/// The retry backoff is the providers' too (persistent connections
/// reconnect with it), so it lives in their kit.
pub use crate::providers::kit::backoff;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn bursts_then_spaces_messages() {
        let mut r = RateLimiter::new(Rate {
            count: 3,
            per: Duration::from_secs(3),
        });
        let t0 = Instant::now();
        assert_eq!(r.check(t0), Duration::ZERO);
        assert_eq!(r.check(t0), Duration::ZERO);
        assert_eq!(r.check(t0), Duration::ZERO);
        let wait = r.check(t0);
        assert_eq!(wait, Duration::from_secs(1));
        assert_eq!(r.check(t0 + wait), Duration::ZERO);
        // A long pause refills the bucket, but never beyond the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(r.check(later), Duration::ZERO);
        }
        assert!(r.check(later) > Duration::ZERO);
    }

    #[test]
    fn one_per_second_holds_over_a_minute() {
        let mut r = RateLimiter::new(Rate {
            count: 1,
            per: Duration::from_secs(1),
        });
        let mut now = Instant::now();
        let start = now;
        let mut sent = 0;
        while now < start + Duration::from_secs(60) {
            let w = r.check(now);
            if w.is_zero() {
                sent += 1;
            } else {
                now += w;
            }
        }
        assert!((60..=61).contains(&sent), "{sent}");
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        for _ in 0..100 {
            let b1 = backoff(1);
            assert!(b1 >= Duration::from_millis(500) && b1 <= Duration::from_secs(1));
            let b4 = backoff(4);
            assert!(b4 >= Duration::from_secs(4) && b4 <= Duration::from_secs(8));
            assert!(backoff(40) <= Duration::from_secs(300));
        }
    }
}
