//! The client-side rate limit shared by every client that signs with one credential: it adapts
//! to the cloud's quota (AIMD on `Throttling*` answers) and serves the most urgent caller first.
//!
//! Callers are paced one slot at a time and nobody books a slot in the future: a caller takes
//! the slot only once it is due, so an urgent call that arrives behind a queue of others still
//! goes next. Urgency is the class of the pass that makes the call (`with_urgency`: a spec
//! change or deletion, a new resource's first pass, a resync) and, within a class, writes before
//! reads: the scarce thing is the quota, so that is where priority goes.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Refusals within this long of a cut are answers to calls sent before it, not a new signal.
const DECREASE_HOLD: Duration = Duration::from_secs(1);
/// With nothing accepted lately to go by, a refusal halves the rate.
const DECREASE_FACTOR: f64 = 0.5;
/// With a measured acceptance rate, a refusal cuts to it, and by at least a tenth: a quota just
/// touched (one refusal in a second of acceptances) costs a tenth, not half, of the throughput,
/// and one far below the rate (5/s under a rate of 100) is found at once, not after five halvings.
const GENTLE_DECREASE_FACTOR: f64 = 0.9;
/// The window the acceptance rate is measured over.
const ACCEPTANCE_WINDOW: Duration = Duration::from_secs(1);
/// Low enough to sit under any real quota, high enough that a reconcile still makes progress.
const MIN_QPS: f64 = 0.5;
/// How often the rate climbs; finer steps would only churn the gauge.
const INCREASE_STEP: Duration = Duration::from_secs(1);
/// Near a quota just found, probe upward gently (calls per second, per second).
const ADDITIVE_INCREASE: f64 = 1.0;
/// Throttling this recent means the quota is near the current rate.
const RECENT_THROTTLING: Duration = Duration::from_secs(30);
/// Without recent throttling the quota is likely gone (another tool stopped): grow by a share.
const QUIET_GROWTH: f64 = 0.1;

/// A client-side limiter shared by every client that signs with the same credential.
pub type SharedLimiter = Arc<Limiter>;

/// A limiter that starts at `qps` and never goes above it.
pub fn rate_limiter(qps: NonZeroU32) -> SharedLimiter {
    Arc::new(Limiter::new(qps))
}

/// How soon the pass that makes a call needs it, least urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    /// A resync (or a census): the cloud is read again, and nobody waits for it.
    Resync,
    /// A new resource's first pass: its user waits for it to turn Ready.
    Initial,
    /// A spec change or deletion of a resource the operator already handled: a person just
    /// asked for it.
    Interactive,
}

/// What a typed operation does to the cloud (each says so itself, not by its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Which queue a call waits in: its pass's urgency, then writes before reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub urgency: Urgency,
    pub access: Access,
}

/// The queues, one per (urgency, access).
const LEVELS: usize = 6;

impl Priority {
    pub const fn new(urgency: Urgency, access: Access) -> Self {
        Self { urgency, access }
    }

    /// A call of the current task's pass (see `with_urgency`).
    pub fn current(access: Access) -> Self {
        Self::new(current_urgency(), access)
    }

    fn level(self) -> usize {
        self.urgency as usize * 2 + usize::from(self.access == Access::Write)
    }
}

tokio::task_local! {
    static URGENCY: Urgency;
}

/// Runs `pass` with every cloud call it makes at `urgency` (a task-local: the calls are made
/// deep inside typed operations, which need not carry it).
pub async fn with_urgency<F: std::future::Future>(urgency: Urgency, pass: F) -> F::Output {
    URGENCY.scope(urgency, pass).await
}

/// The urgency of the pass running on this task; a call made outside any pass (a census in the
/// background) is a resync's.
pub fn current_urgency() -> Urgency {
    URGENCY
        .try_with(|urgency| *urgency)
        .unwrap_or(Urgency::Resync)
}

/// An adaptive, most-urgent-first rate limiter. See the module note.
#[derive(Debug)]
pub struct Limiter {
    max_qps: f64,
    state: Mutex<State>,
    /// Woken when a caller stops waiting or the rate climbs, so sleepers look again.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    qps: f64,
    last_grant: Option<Instant>,
    /// The tickets of the callers waiting, by priority level: within a level the oldest goes
    /// first, so a pass whose calls are retried is not overtaken by newcomers at every slot.
    waiting: [BTreeSet<u64>; LEVELS],
    /// The next caller's ticket.
    next_ticket: u64,
    last_decrease: Option<Instant>,
    last_throttled: Option<Instant>,
    /// The last change of the rate, up or down; the climb is measured from it.
    last_change: Instant,
    /// When the calls accepted within the last `ACCEPTANCE_WINDOW` were answered.
    accepted: std::collections::VecDeque<Instant>,
}

impl State {
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.qps)
    }

    /// Keeps only the acceptances within the window before `now`.
    fn forget_accepted_before(&mut self, now: Instant) {
        while self
            .accepted
            .front()
            .is_some_and(|at| now.duration_since(*at) >= ACCEPTANCE_WINDOW)
        {
            self.accepted.pop_front();
        }
    }

    /// Derived from the last grant rather than stored, so a new rate applies to the next slot.
    fn next_slot(&self) -> Option<Instant> {
        self.last_grant.map(|grant| grant + self.interval())
    }

    /// When a grant at `now` for the slot due at `slot` counts as made: at its slot when the
    /// caller woke less than an interval late, so the cadence holds (a timer and a busy runtime
    /// wake a caller a millisecond or two late, and at 100 calls/s, 10 ms a slot, counting from
    /// the wake-up gave 79-85 calls/s, measured with hack/bench-scale.sh policy); at `now` after
    /// an idle spell, so no burst is banked.
    fn granted_at(&self, slot: Option<Instant>, now: Instant) -> Instant {
        match slot {
            Some(slot) if now.duration_since(slot) < self.interval() => slot,
            _ => now,
        }
    }
}

impl Limiter {
    pub fn new(max_qps: NonZeroU32) -> Self {
        let max_qps = f64::from(max_qps.get());
        Self {
            max_qps,
            state: Mutex::new(State {
                qps: max_qps,
                last_grant: None,
                waiting: Default::default(),
                next_ticket: 0,
                last_decrease: None,
                last_throttled: None,
                last_change: Instant::now(),
                accepted: std::collections::VecDeque::new(),
            }),
            changed: Notify::new(),
        }
    }

    /// The configured ceiling (`--cloud-qps`).
    pub fn max_qps(&self) -> f64 {
        self.max_qps
    }

    /// The rate the limiter currently lets through, in calls per second.
    pub fn current_qps(&self) -> f64 {
        self.lock().qps
    }

    /// Waits for a slot. A caller never takes one while a more urgent one, or an older one of
    /// its urgency, is waiting. Without the order within a level, callers due at one slot raced
    /// for it: of three passes retrying against a throttled endpoint at 0.5 calls/s, one took
    /// 5 ms to 40 s (e2e_hostile_endpoint) to get the four slots of its first pass.
    pub async fn acquire(&self, priority: Priority) {
        let level = priority.level();
        // Held for the whole wait, and released on cancellation too, so nobody waits on a
        // caller that gave up.
        let waiting = Waiting::register(self, level);
        loop {
            // Registered before looking at the state, so a wake-up between the look and the
            // sleep is not lost.
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            let due = {
                let mut state = self.lock();
                let more_urgent = state.waiting[level + 1..]
                    .iter()
                    .any(|waiting| !waiting.is_empty());
                if more_urgent || state.waiting[level].first() != Some(&waiting.ticket) {
                    None
                } else {
                    let now = Instant::now();
                    match state.next_slot() {
                        Some(slot) if slot > now => Some(slot),
                        slot => {
                            state.last_grant = Some(state.granted_at(slot, now));
                            return;
                        }
                    }
                }
            };
            match due {
                Some(slot) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(slot) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// The cloud refused a call for the quota: halves the rate, at most once per second (calls
    /// already in flight are refused too, and that is one signal). Returns the new rate when it
    /// changed.
    pub fn on_throttled(&self) -> Option<f64> {
        let mut state = self.lock();
        let now = Instant::now();
        state.last_throttled = Some(now);
        if state
            .last_decrease
            .is_some_and(|at| now.duration_since(at) < DECREASE_HOLD)
        {
            return None;
        }
        state.last_decrease = Some(now);
        state.last_change = now;
        state.forget_accepted_before(now);
        let accepted = state.accepted.len() as f64 / ACCEPTANCE_WINDOW.as_secs_f64();
        let cut = if accepted >= 1.0 {
            (state.qps * GENTLE_DECREASE_FACTOR).min(accepted)
        } else {
            state.qps * DECREASE_FACTOR
        };
        let qps = cut.max(MIN_QPS.min(self.max_qps));
        if qps == state.qps {
            return None;
        }
        state.qps = qps;
        Some(qps)
    }

    /// The cloud accepted a call: climbs back toward the configured rate, one step per second
    /// at most. Returns the new rate when it changed.
    pub fn on_success(&self) -> Option<f64> {
        let qps = {
            let mut state = self.lock();
            let now = Instant::now();
            state.forget_accepted_before(now);
            state.accepted.push_back(now);
            if state.qps >= self.max_qps {
                return None;
            }
            let since = now.duration_since(state.last_change);
            if since < INCREASE_STEP {
                return None;
            }
            // Only time spent calling counts: an idle hour says nothing about the quota, so the
            // first answer after it is worth at most a couple of slots' worth of climb.
            let credit = since
                .min(INCREASE_STEP.max(state.interval() * 2))
                .as_secs_f64();
            let recent = state
                .last_throttled
                .is_some_and(|at| now.duration_since(at) < RECENT_THROTTLING);
            let per_second = if recent {
                ADDITIVE_INCREASE
            } else {
                (state.qps * QUIET_GROWTH).max(ADDITIVE_INCREASE)
            };
            state.qps = (state.qps + per_second * credit).min(self.max_qps);
            state.last_change = now;
            state.qps
        };
        // The next slot moved earlier; sleepers aimed at the old one.
        self.changed.notify_waiters();
        Some(qps)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A caller waiting in [`Limiter::acquire`] at one level, in line while it lives.
struct Waiting<'a> {
    limiter: &'a Limiter,
    level: usize,
    ticket: u64,
}

impl<'a> Waiting<'a> {
    fn register(limiter: &'a Limiter, level: usize) -> Self {
        let mut state = limiter.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting[level].insert(ticket);
        Self {
            limiter,
            level,
            ticket,
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        state.waiting[self.level].remove(&self.ticket);
        // Only a caller that held others back (behind it in its level, or below) wakes them.
        let held_back = state.waiting[..=self.level]
            .iter()
            .any(|waiting| !waiting.is_empty());
        drop(state);
        if held_back {
            self.limiter.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(qps: u32) -> Arc<Limiter> {
        rate_limiter(NonZeroU32::new(qps).unwrap())
    }

    async fn advance(millis: u64) {
        tokio::time::advance(Duration::from_millis(millis)).await;
    }

    fn assert_qps(limiter: &Limiter, expected: f64) {
        let qps = limiter.current_qps();
        assert!(
            (qps - expected).abs() < 1e-9,
            "qps {qps}, expected {expected}"
        );
    }

    const READ: Priority = Priority::new(Urgency::Resync, Access::Read);
    const WRITE: Priority = Priority::new(Urgency::Resync, Access::Write);

    #[tokio::test]
    async fn a_pass_gives_its_calls_its_urgency() {
        assert_eq!(current_urgency(), Urgency::Resync, "outside any pass");
        let inside = with_urgency(Urgency::Interactive, async {
            Priority::current(Access::Write)
        })
        .await;
        assert_eq!(inside, Priority::new(Urgency::Interactive, Access::Write));
        // Every write of a class goes before its reads, every call of a class before a lesser's.
        let order = [
            Priority::new(Urgency::Resync, Access::Read),
            Priority::new(Urgency::Resync, Access::Write),
            Priority::new(Urgency::Initial, Access::Read),
            Priority::new(Urgency::Initial, Access::Write),
            Priority::new(Urgency::Interactive, Access::Read),
            Priority::new(Urgency::Interactive, Access::Write),
        ];
        let levels: Vec<usize> = order.iter().map(|p| p.level()).collect();
        assert_eq!(levels, (0..LEVELS).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_refusals_halves_the_rate_once_per_second() {
        let limiter = limiter(20);
        assert_eq!(limiter.on_throttled(), Some(10.0));
        for _ in 0..20 {
            assert_eq!(limiter.on_throttled(), None);
        }
        advance(900).await;
        assert_eq!(limiter.on_throttled(), None);
        assert_qps(&limiter, 10.0);
        advance(100).await;
        assert_eq!(limiter.on_throttled(), Some(5.0));
        for _ in 0..10 {
            advance(1000).await;
            limiter.on_throttled();
        }
        assert_qps(&limiter, MIN_QPS);
        advance(1000).await;
        assert_eq!(limiter.on_throttled(), None, "already at the floor");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_after_acceptances_cuts_to_the_accepted_rate_or_a_tenth() {
        // A quota far below the rate (5/s under 20/s): found at once.
        let far = limiter(20);
        for _ in 0..5 {
            far.on_success();
            advance(100).await;
        }
        assert_eq!(far.on_throttled(), Some(5.0));
        // A quota just touched (99 accepted in the last second at 100/s): a tenth off, not half.
        let near = limiter(100);
        for _ in 0..99 {
            near.on_success();
            advance(10).await;
        }
        assert_qps(&near, 100.0);
        near.on_throttled();
        assert_qps(&near, 90.0);
        // Acceptances older than the window do not count: back to halving.
        advance(2500).await;
        near.on_throttled();
        assert_qps(&near, 45.0);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_climb_back_one_call_per_second_near_recent_throttling() {
        let limiter = limiter(100);
        limiter.on_throttled();
        assert_qps(&limiter, 50.0);
        advance(500).await;
        assert_eq!(
            limiter.on_success(),
            None,
            "less than a second after the cut"
        );
        for second in 1..=29 {
            advance(500).await;
            limiter.on_success();
            advance(500).await;
            limiter.on_success();
            assert_qps(&limiter, 50.0 + f64::from(second));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_throttling_for_30_s_the_rate_climbs_by_a_tenth_per_second() {
        let limiter = limiter(1000);
        limiter.on_throttled();
        for _ in 0..30 {
            advance(1000).await;
            limiter.on_success();
        }
        // The 30th step came exactly 30 s after the refusal, already past "recent".
        let before = 500.0 + 29.0;
        assert_qps(&limiter, before * 1.1);
        advance(1000).await;
        limiter.on_success();
        assert_qps(&limiter, before * 1.1 * 1.1);
    }

    #[tokio::test(start_paused = true)]
    async fn from_the_floor_the_configured_rate_is_back_within_a_minute() {
        let limiter = limiter(100);
        for _ in 0..10 {
            limiter.on_throttled();
            advance(1000).await;
        }
        assert_qps(&limiter, MIN_QPS);
        let mut seconds = 0;
        while limiter.current_qps() < 100.0 {
            // A call at least every slot, as a busy operator would make.
            let step = (1000.0 / limiter.current_qps()).min(1000.0) as u64;
            advance(step).await;
            limiter.on_success();
            seconds += step;
        }
        assert!(seconds <= 60_000, "took {seconds} ms");
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_never_exceeds_the_configured_one() {
        let limiter = limiter(5);
        assert_qps(&limiter, 5.0);
        assert_eq!(limiter.on_success(), None);
        limiter.on_throttled();
        for _ in 0..100 {
            advance(1000).await;
            limiter.on_success();
        }
        assert_qps(&limiter, 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_spell_is_not_climbing_credit() {
        let limiter = limiter(100);
        limiter.on_throttled();
        advance(3_600_000).await;
        // One second's climb, at the quiet pace (the refusal is an hour old), not an hour's.
        assert_eq!(limiter.on_success(), Some(55.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_a_little_late_for_its_slot_keeps_the_cadence() {
        let limiter = limiter(100);
        limiter.acquire(READ).await;
        // It comes back 3 ms after its slot (10 ms): granted at once and booked at the slot, so
        // the next is due 7 ms later, not 10: late wake-ups do not lower the rate.
        tokio::time::advance(Duration::from_millis(13)).await;
        let start = Instant::now();
        limiter.acquire(READ).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire(READ).await;
        assert_eq!(start.elapsed(), Duration::from_millis(7));
        // After an idle second nothing is banked: two calls still take one interval.
        tokio::time::advance(Duration::from_secs(1)).await;
        let start = Instant::now();
        limiter.acquire(READ).await;
        limiter.acquire(READ).await;
        assert_eq!(start.elapsed(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_paces_calls_at_the_current_rate() {
        let limiter = limiter(5);
        let start = Instant::now();
        for _ in 0..11 {
            limiter.acquire(READ).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));

        limiter.on_throttled();
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire(READ).await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(5 * 400));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_rate() {
        let limiter = limiter(4);
        let start = Instant::now();
        let mut grants: Vec<Duration> = futures::future::join_all((0..9).map(|_| {
            let limiter = limiter.clone();
            async move {
                limiter.acquire(READ).await;
                start.elapsed()
            }
        }))
        .await;
        grants.sort();
        for (index, grant) in grants.iter().enumerate() {
            assert_eq!(*grant, Duration::from_millis(250 * index as u64));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_goes_before_reads_that_were_waiting_first() {
        let limiter = limiter(1);
        limiter.acquire(READ).await;
        let (sender, mut grants) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        let spawn = |priority: Priority, name: &'static str| {
            let limiter = limiter.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                limiter.acquire(priority).await;
                sender.send((name, start.elapsed())).unwrap();
            })
        };
        let reads: Vec<_> = ["read 1", "read 2", "read 3"]
            .into_iter()
            .map(|name| spawn(READ, name))
            .collect();
        advance(100).await;
        let write = spawn(WRITE, "write");
        for task in reads.into_iter().chain([write]) {
            task.await.unwrap();
        }
        drop(sender);
        let mut order = Vec::new();
        while let Some(grant) = grants.recv().await {
            order.push(grant);
        }
        assert_eq!(order[0], ("write", Duration::from_secs(1)));
        let read_times: Vec<Duration> = order[1..].iter().map(|(_, at)| *at).collect();
        assert_eq!(
            read_times,
            [2, 3, 4].map(Duration::from_secs).to_vec(),
            "{order:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn within_an_urgency_the_caller_waiting_longest_goes_first() {
        let limiter = limiter(1);
        limiter.acquire(READ).await;
        let mut older = Box::pin(limiter.acquire(READ));
        assert!(futures::poll!(older.as_mut()).is_pending());
        advance(10).await;
        let mut younger = Box::pin(limiter.acquire(READ));
        assert!(futures::poll!(younger.as_mut()).is_pending());
        advance(990).await;
        // Both are due at this slot; on a multi-threaded runtime either may be polled first
        // (a pass retrying a refused call is often the younger, and won again and again).
        assert!(
            futures::poll!(younger.as_mut()).is_pending(),
            "the younger caller took the slot the older one waits for"
        );
        assert!(futures::poll!(older.as_mut()).is_ready());
        advance(1000).await;
        assert!(futures::poll!(younger.as_mut()).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_spec_change_goes_before_new_resources_and_they_before_resyncs() {
        let limiter = limiter(1);
        limiter.acquire(READ).await;
        let (sender, mut grants) = tokio::sync::mpsc::unbounded_channel();
        let spawn = |priority: Priority, name: &'static str| {
            let (limiter, sender) = (limiter.clone(), sender.clone());
            tokio::spawn(async move {
                limiter.acquire(priority).await;
                sender.send(name).unwrap();
            })
        };
        let mut tasks = vec![spawn(READ, "resync")];
        advance(10).await;
        tasks.push(spawn(
            Priority::new(Urgency::Initial, Access::Read),
            "first read",
        ));
        advance(10).await;
        tasks.push(spawn(
            Priority::new(Urgency::Interactive, Access::Read),
            "change",
        ));
        for task in tasks {
            task.await.unwrap();
        }
        drop(sender);
        let mut order = Vec::new();
        while let Some(name) = grants.recv().await {
            order.push(name);
        }
        assert_eq!(order, ["change", "first read", "resync"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_gives_up_does_not_hold_reads_back() {
        let limiter = limiter(1);
        limiter.acquire(READ).await;
        let write = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire(WRITE).await }
        });
        advance(100).await;
        write.abort();
        let _ = write.await;
        let start = Instant::now();
        limiter.acquire(READ).await;
        assert_eq!(start.elapsed(), Duration::from_millis(900));
    }

    #[tokio::test(start_paused = true)]
    async fn a_climb_wakes_callers_sleeping_toward_a_later_slot() {
        let limiter = limiter(10);
        for _ in 0..4 {
            limiter.on_throttled();
            advance(1000).await;
        }
        assert_qps(&limiter, 0.625);
        limiter.acquire(READ).await;
        let start = Instant::now();
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire(READ).await }
        });
        advance(1000).await;
        // Two seconds since the last cut: 2.625/s, a slot 381 ms after the last grant, long past.
        limiter.on_success();
        tokio::task::yield_now().await;
        waiting.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }
}
