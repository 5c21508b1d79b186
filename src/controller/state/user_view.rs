//! The one view of each directory's users that the UserMfaSetting reconciles, the policies and
//! the census share: a user's setting and devices are read from the cloud at most once per
//! freshness window, whoever asks first (a pass that finds a fresh enough entry uses it; a write,
//! or a spec change, asks for a fresh read), and one read of a field is in flight at a time.
//!
//! Kept compactly, because a policy over a directory of 100,000 users keeps every one of them:
//! one map entry per user (its id, a setting byte, two 4-byte read times and either a device
//! summary or, for users a UserMfaSetting reports on, the device list), and a small map of the
//! reads in flight (at most the pass concurrency), instead of a cache slot with two async locks
//! per user: 72 bytes a user in the map where the slots took ~0.4 KiB.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::read_through::{Flights, read_through};
use crate::cloud::cloudsso::{MfaDevice, UserMfaSettings};
use crate::cloud::{CloudError, CloudSsoClient};
use crate::controller::keys::{DirectoryKey, UserKey};

/// A user's own setting as kept: the two values the API documents in one byte's worth.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Setting {
    Enabled,
    Disabled,
    #[default]
    Unset,
    /// Not documented; kept as said (boxed twice: a thin pointer keeps the enum at 16 bytes).
    Other(Box<Box<str>>),
}

impl From<UserMfaSettings> for Setting {
    fn from(settings: UserMfaSettings) -> Self {
        match settings.user_mfa_authentication_settings {
            Some(value) if value == "Enabled" => Self::Enabled,
            Some(value) if value == "Disabled" => Self::Disabled,
            None => Self::Unset,
            Some(other) => Self::Other(Box::new(other.into())),
        }
    }
}

impl From<&Setting> for UserMfaSettings {
    fn from(setting: &Setting) -> Self {
        let value = match setting {
            Setting::Enabled => Some("Enabled".to_string()),
            Setting::Disabled => Some("Disabled".to_string()),
            Setting::Unset => None,
            Setting::Other(other) => Some(other.to_string()),
        };
        Self {
            user_mfa_authentication_settings: value,
        }
    }
}

/// What the policies and the census need of a user's devices: how many, and the one used (or,
/// never used, bound) longest ago, for the 90-day warning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceSummary {
    /// Devices bound (at most u16::MAX counted).
    pub count: u16,
    /// When the device used longest ago was last used, in Unix seconds (0: no device says).
    oldest_use: u32,
    /// That device's name.
    oldest_name: Option<Box<str>>,
}

impl DeviceSummary {
    pub fn of(devices: &[MfaDevice]) -> Self {
        let oldest = devices
            .iter()
            .filter_map(|device| {
                let used = device
                    .last_use_time
                    .as_deref()
                    .or(device.effective_time.as_deref())?;
                let used: jiff::Timestamp = used.parse().ok()?;
                let seconds = u32::try_from(used.as_second().max(1)).unwrap_or(u32::MAX);
                Some((seconds, &device.device_name))
            })
            .min_by_key(|(seconds, _)| *seconds);
        Self {
            count: u16::try_from(devices.len()).unwrap_or(u16::MAX),
            oldest_use: oldest.map_or(0, |(seconds, _)| seconds),
            oldest_name: oldest.map(|(_, name)| name.as_str().into()),
        }
    }

    /// The device used longest ago: when, and its name.
    pub fn oldest(&self) -> Option<(jiff::Timestamp, &str)> {
        let at = jiff::Timestamp::from_second(i64::from(self.oldest_use)).ok()?;
        (self.oldest_use != 0).then(|| (at, self.oldest_name.as_deref().unwrap_or_default()))
    }
}

/// A user's devices as kept: the summary, or the list for a user whose resource reports them.
#[derive(Clone, Debug)]
enum Devices {
    Summary(DeviceSummary),
    Full(Box<[MfaDevice]>),
}

impl Default for Devices {
    fn default() -> Self {
        Self::Summary(DeviceSummary::default())
    }
}

/// What is kept of one user; a time of 0 means never read.
#[derive(Default)]
struct Entry {
    setting_at: Tick,
    devices_at: Tick,
    setting: Setting,
    devices: Devices,
}

/// Tenths of a second since the view began, plus one (0 is "never"): 13 years in 4 bytes.
type Tick = u32;

/// Which field a read fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum What {
    Setting,
    Devices,
}

/// One directory's users and the reads of them in flight.
#[derive(Default)]
struct Directory {
    users: HashMap<Box<str>, Entry>,
    reading: Flights<(Box<str>, What)>,
}

/// Every user the operator has read, with when.
pub struct UserView {
    began: Instant,
    directories: Mutex<HashMap<DirectoryKey, Arc<Mutex<Directory>>>>,
}

impl Default for UserView {
    fn default() -> Self {
        Self {
            began: Instant::now(),
            directories: Mutex::default(),
        }
    }
}

impl UserView {
    fn now(&self) -> Tick {
        let tenths = self.began.elapsed().as_millis() / 100;
        Tick::try_from(tenths).unwrap_or(Tick::MAX - 1) + 1
    }

    /// Whether a read at `at` is younger than `max_age` (rounded so that it never says young
    /// of a read older than `max_age`).
    fn fresh(&self, at: Tick, max_age: Option<Duration>) -> bool {
        let Some(max_age) = max_age else {
            return false;
        };
        let age = u64::from(self.now().saturating_sub(at)) + 1;
        at != 0 && Duration::from_millis(age * 100) < max_age
    }

    fn directory(&self, key: &DirectoryKey) -> Arc<Mutex<Directory>> {
        let mut directories = self.directories.lock();
        if let Some(directory) = directories.get(key) {
            return directory.clone();
        }
        directories.entry(key.clone()).or_default().clone()
    }

    /// The field `what` of `user` as `cached` finds it, when read younger than `max_age`; else
    /// `read`'s answer, kept by `keep` (unless a write recorded a newer value meanwhile). A
    /// reader that finds a read of the field in flight waits for it and looks again.
    async fn read_through<T, R>(
        &self,
        user: &UserKey,
        what: What,
        max_age: Option<Duration>,
        cached: impl Fn(&Entry) -> Option<T>,
        read: impl Future<Output = Result<R, CloudError>>,
        keep: impl FnOnce(&mut Entry, R, Tick) -> T,
    ) -> Result<T, CloudError> {
        let directory = self.directory(&user.directory);
        let id = user.user_id.as_str();
        read_through(
            &directory,
            |directory| &mut directory.reading,
            || (Box::<str>::from(id), what),
            |directory| {
                let entry = directory.users.get(id)?;
                let at = match what {
                    What::Setting => entry.setting_at,
                    What::Devices => entry.devices_at,
                };
                self.fresh(at, max_age).then(|| cached(entry)).flatten()
            },
            || {
                let started = self.now();
                async move { read.await.map(|answer| (answer, started)) }
            },
            |directory, (answer, started)| {
                let entry = match directory.users.get_mut(id) {
                    Some(entry) => entry,
                    None => directory.users.entry(id.into()).or_default(),
                };
                keep(entry, answer, started)
            },
        )
        .await
    }

    /// The user's own MFA setting, read unless the view has one younger than `max_age` (None:
    /// always read).
    pub async fn settings(
        &self,
        client: &CloudSsoClient,
        user: &UserKey,
        max_age: Option<Duration>,
    ) -> Result<UserMfaSettings, CloudError> {
        let read = client.get_user_mfa_setting(&user.directory.directory_id, &user.user_id);
        self.read_through(
            user,
            What::Setting,
            max_age,
            |entry| Some(UserMfaSettings::from(&entry.setting)),
            read,
            |entry, read, started| self.keep_setting(entry, read, started),
        )
        .await
    }

    /// Keeps a setting read that began at `started`, unless a write recorded during the read
    /// is newer than what the read saw; returns the read.
    fn keep_setting(
        &self,
        entry: &mut Entry,
        read: UserMfaSettings,
        started: Tick,
    ) -> UserMfaSettings {
        if entry.setting_at <= started {
            entry.setting = read.clone().into();
            entry.setting_at = self.now();
        }
        read
    }

    /// The user's devices, whole (what a UserMfaSetting reports), read unless the view has the
    /// list younger than `max_age`; from then on the view keeps this user's list.
    pub async fn devices(
        &self,
        client: &CloudSsoClient,
        user: &UserKey,
        max_age: Option<Duration>,
    ) -> Result<Vec<MfaDevice>, CloudError> {
        let cached = |entry: &Entry| match &entry.devices {
            Devices::Full(devices) => Some(devices.to_vec()),
            Devices::Summary(_) => None,
        };
        let keep = |entry: &mut Entry, devices: Vec<MfaDevice>, _| {
            entry.devices = Devices::Full(compact(devices.clone()));
            entry.devices_at = self.now();
            devices
        };
        let read = self.read_devices(client, user);
        self.read_through(user, What::Devices, max_age, cached, read, keep)
            .await
    }

    /// What the policies and the census need of the user's devices, read unless the view has
    /// them (summary or list) younger than `max_age`.
    pub async fn device_summary(
        &self,
        client: &CloudSsoClient,
        user: &UserKey,
        max_age: Option<Duration>,
    ) -> Result<DeviceSummary, CloudError> {
        let cached = |entry: &Entry| {
            Some(match &entry.devices {
                Devices::Full(devices) => DeviceSummary::of(devices),
                Devices::Summary(summary) => summary.clone(),
            })
        };
        let keep = |entry: &mut Entry, devices: Vec<MfaDevice>, _| {
            let summary = DeviceSummary::of(&devices);
            // A user whose list is kept (a UserMfaSetting reports it) keeps it.
            entry.devices = match entry.devices {
                Devices::Full(_) => Devices::Full(compact(devices)),
                Devices::Summary(_) => Devices::Summary(summary.clone()),
            };
            entry.devices_at = self.now();
            summary
        };
        let read = self.read_devices(client, user);
        self.read_through(user, What::Devices, max_age, cached, read, keep)
            .await
    }

    async fn read_devices(
        &self,
        client: &CloudSsoClient,
        user: &UserKey,
    ) -> Result<Vec<MfaDevice>, CloudError> {
        client
            .list_mfa_devices(&user.directory.directory_id, &user.user_id)
            .await
    }

    /// What the cloud has now (just written and acknowledged).
    pub fn record_settings(&self, user: &UserKey, settings: UserMfaSettings) {
        let directory = self.directory(&user.directory);
        let mut users = directory.lock();
        let entry = users.users.entry(user.user_id.as_str().into()).or_default();
        entry.setting = settings.into();
        entry.setting_at = self.now();
    }

    /// The user is gone from the cloud.
    pub fn forget(&self, user: &UserKey) {
        self.directory(&user.directory)
            .lock()
            .users
            .remove(user.user_id.as_str());
    }
}

/// A device list as kept: without the user's id (the key says it), at its size.
fn compact(mut devices: Vec<MfaDevice>) -> Box<[MfaDevice]> {
    for device in &mut devices {
        device.user_id = None;
    }
    devices.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const MINUTE: Option<Duration> = Some(Duration::from_secs(60));

    fn user(id: &str) -> UserKey {
        DirectoryKey {
            endpoint: "http://127.0.0.1:1".into(),
            directory_id: "d-1".into(),
        }
        .user(id)
    }

    fn device(name: &str, last_use: Option<&str>) -> MfaDevice {
        MfaDevice {
            device_id: format!("mfa-{name}"),
            device_name: name.into(),
            device_type: "TOTP".into(),
            effective_time: Some("2026-06-01T00:00:00Z".into()),
            last_use_time: last_use.map(Into::into),
            user_id: Some("u-1".into()),
        }
    }

    /// A setting read through the view that counts its calls.
    async fn setting(
        view: &UserView,
        key: &UserKey,
        max_age: Option<Duration>,
        calls: &AtomicU32,
        value: &str,
    ) -> Result<UserMfaSettings, CloudError> {
        let read = async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(UserMfaSettings {
                user_mfa_authentication_settings: Some(value.into()),
            })
        };
        view.read_through(
            key,
            What::Setting,
            max_age,
            |entry| Some(UserMfaSettings::from(&entry.setting)),
            read,
            |entry, read, started| view.keep_setting(entry, read, started),
        )
        .await
    }

    #[tokio::test]
    async fn concurrent_readers_share_one_read_and_a_fresh_one_is_reused() {
        let (view, calls, key) = (UserView::default(), AtomicU32::new(0), user("u-1"));
        let (a, b) = tokio::join!(
            setting(&view, &key, MINUTE, &calls, "Enabled"),
            setting(&view, &key, MINUTE, &calls, "Enabled"),
        );
        assert_eq!(a.unwrap(), b.unwrap());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one read for two readers");
        let again = setting(&view, &key, MINUTE, &calls, "Disabled").await;
        assert_eq!(
            again.unwrap().user_mfa_authentication_settings.as_deref(),
            Some("Enabled"),
            "fresh: the kept value"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let forced = setting(&view, &key, None, &calls, "Disabled").await;
        assert_eq!(
            forced.unwrap().user_mfa_authentication_settings.as_deref(),
            Some("Disabled")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2, "no max age: always read");
        view.forget(&key);
        setting(&view, &key, MINUTE, &calls, "Enabled")
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "forgotten: read again");
    }

    #[tokio::test]
    async fn a_reader_dropped_half_way_does_not_leave_the_others_waiting() {
        let (view, calls, key) = (UserView::default(), AtomicU32::new(0), user("u-1"));
        let stuck = view.read_through(
            &key,
            What::Setting,
            MINUTE,
            |_| None::<()>,
            std::future::pending::<Result<(), CloudError>>(),
            |_, (), _| (),
        );
        // Polled once (the read is now in flight), then dropped.
        let _ = tokio::time::timeout(Duration::from_millis(10), stuck).await;
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            setting(&view, &key, MINUTE, &calls, "Enabled"),
        )
        .await;
        assert!(read.expect("not left waiting").is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_error_is_not_kept_and_a_recorded_write_is_fresh() {
        let (view, calls, key) = (UserView::default(), AtomicU32::new(0), user("u-1"));
        let failed = view
            .read_through(
                &key,
                What::Setting,
                MINUTE,
                |_| Some(()),
                async {
                    Err::<(), _>(CloudError::Transport {
                        action: "GetUserMFAAuthenticationSettings".into(),
                        endpoint: "http://127.0.0.1:1".into(),
                        detail: "down".into(),
                        timeout: false,
                    })
                },
                |_, (), _| (),
            )
            .await;
        assert!(failed.is_err());
        setting(&view, &key, MINUTE, &calls, "Disabled")
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the error was not kept");
        view.record_settings(
            &key,
            UserMfaSettings {
                user_mfa_authentication_settings: Some("Enabled".into()),
            },
        );
        let read = setting(&view, &key, MINUTE, &calls, "Disabled")
            .await
            .unwrap();
        assert_eq!(
            read.user_mfa_authentication_settings.as_deref(),
            Some("Enabled")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_summary_counts_the_devices_and_names_the_one_used_longest_ago() {
        let devices = [
            device("phone", Some("2026-11-01T00:00:00Z")),
            device("key", Some("2025-01-02T03:04:05Z")),
            device("new", None),
        ];
        let summary = DeviceSummary::of(&devices);
        assert_eq!(summary.count, 3);
        let (at, name) = summary.oldest().unwrap();
        assert_eq!(name, "key");
        assert_eq!(at.to_string(), "2025-01-02T03:04:05Z");
        assert_eq!(DeviceSummary::of(&[]).oldest(), None);
        assert_eq!(DeviceSummary::of(&[]).count, 0);
    }

    #[test]
    fn a_user_costs_little_in_the_map() {
        // The figure the note at the top of this file gives: what 100,000 users cost.
        assert!(std::mem::size_of::<Entry>() + std::mem::size_of::<Box<str>>() <= 72);
    }
}
