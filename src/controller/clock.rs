//! The controllers' one notion of "now": read once per reconcile and handed to everything that
//! stamps a time (condition transitions, `lastSyncTime`), so one status never carries two.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The current time, as Kubernetes carries it.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// RFC 3339 in UTC to the second (`2026-11-23T19:30:08Z`), the form of `status.lastSyncTime`.
pub fn rfc3339(at: &Time) -> String {
    at.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_to_the_second() {
        let at = Time("2026-11-23T19:30:08.123456Z".parse().unwrap());
        assert_eq!(rfc3339(&at), "2026-11-23T19:30:08Z");
    }
}
