//! The retry schedule of the Kubernetes source, and its logging by state change.

use std::time::Duration;

/// The first retry's delay.
const FIRST: Duration = Duration::from_millis(500);
/// The longest delay between two tries.
const MAX: Duration = Duration::from_secs(30);

/// The delay before try number `failures + 1` after `failures` (≥ 1) failures in a row:
/// doubling from 0.5 s up to 30 s, each scaled by a random factor in [0.8, 1.2) so that
/// many daemons refused together do not come back together.
pub fn backoff_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let delay = FIRST.saturating_mul(1 << doublings).min(MAX);
    delay.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// One kind's watch health: counts failures in a row, gives the delay before the next
/// try, and logs when the state changes (failing, or working again), not at every try.
#[derive(Debug, Default)]
pub struct RetryState {
    failures: u32,
    /// A custom resource the cluster may not serve: its failures (404 until the CRD is
    /// installed) are logged at info, not as warnings.
    optional: bool,
}

impl RetryState {
    /// The state of a kind; `optional` for custom resources (see the field).
    pub fn new(optional: bool) -> Self {
        Self {
            failures: 0,
            optional,
        }
    }

    /// Notes a failure; returns how long to wait before the next try.
    pub fn failed(&mut self, kind: &str, error: &dyn std::fmt::Display) -> Duration {
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 && self.optional {
            tracing::info!(
                kind,
                error = %error,
                "not served by the API server (no CRD?); retrying with a growing backoff"
            );
        } else if self.failures == 1 {
            tracing::warn!(
                kind,
                error = %error,
                "watch failing; retrying with a growing backoff (logged again when it works)"
            );
        } else {
            tracing::debug!(kind, failures = self.failures, error = %error, "watch retry failed");
        }
        backoff_delay(self.failures)
    }

    /// Notes a success (a list completed, or a watch delivered an event).
    pub fn succeeded(&mut self, kind: &str) {
        if self.failures > 0 {
            tracing::info!(kind, failures = self.failures, "watch works again");
        }
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_cap() {
        for failures in 1..40u32 {
            let nominal = FIRST
                .saturating_mul(1 << failures.saturating_sub(1).min(16))
                .min(MAX);
            let delay = backoff_delay(failures);
            assert!(delay >= nominal.mul_f64(0.8), "{failures}: {delay:?}");
            assert!(delay < nominal.mul_f64(1.2), "{failures}: {delay:?}");
        }
        assert!(backoff_delay(3) > backoff_delay(1));
    }

    #[test]
    fn only_a_success_resets_the_schedule() {
        let mut state = RetryState::default();
        let first = state.failed("Pod", &"refused");
        let _ = state.failed("Pod", &"refused");
        let third = state.failed("Pod", &"refused");
        assert!(third > first.mul_f64(2.0), "{first:?} then {third:?}");
        state.succeeded("Pod");
        assert!(state.failed("Pod", &"refused") < Duration::from_millis(600));
    }
}
