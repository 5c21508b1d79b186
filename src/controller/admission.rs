//! Admission: how many passes of each urgency make cloud calls at once, and where the others
//! wait. A pass that cannot start now does not wait inside kube-runtime's runner, whose map of
//! running reconciles is polled whole on every wake (a bulk of 10,000 waiting futures costs a
//! share of a core and about 1.2 KB each, kube-runtime 5's `FutureHashMap`): it takes a line in
//! its urgency's queue and returns. When a slot frees, the next in line is sent back through its
//! controller's queue, and the slot is leased to it until its reconcile arrives (or, if it never
//! does, for `LEASE`). Each urgency has its own slots, served most urgent first, so a spec change
//! never waits behind a bulk of new resources; resyncs wait while first passes are queued or under
//! way, each for at most its limit (an interval), so no user is read again while another still
//! waits for its first read.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::cloud::Urgency;

/// Sends the object with this key (`namespace/name`) to its controller's queue; false when
/// there is no such object any more (deleted while it waited) or its controller stopped.
pub type Wake = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How long a slot is kept for an object sent back to its controller: its reconcile comes in
/// milliseconds; this only bounds a slot lost to an object gone meanwhile.
pub const LEASE: Duration = Duration::from_secs(10);

/// How often leases that ran out and resyncs past their limit are looked at.
pub const TICK: Duration = Duration::from_secs(1);

const CLASSES: usize = 3;

/// The classes in the order their queues are served.
const SERVED: [Urgency; CLASSES] = [Urgency::Interactive, Urgency::Initial, Urgency::Resync];

/// The passes admitted, leased and waiting, per urgency (see the module note).
pub struct Admission {
    slots: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    classes: [Class; CLASSES],
    /// Each waiting object's line (an object waits in one class at a time; a line left in a
    /// queue by an object that moved or was sent back is stale and skipped).
    lines: HashMap<u64, Line>,
    /// Objects sent back to their controllers, holding a slot until their reconcile arrives.
    leases: HashMap<u64, Lease>,
    /// First passes (that count, see `Place`) waiting, leased or running: resyncs wait for 0.
    first_passes: usize,
    next_line: u64,
}

#[derive(Default)]
struct Class {
    running: usize,
    leased: usize,
    /// Objects holding a line in `queue` (without the stale lines).
    waiting: usize,
    queue: VecDeque<Waiting>,
}

/// Where a pass stands in admission: its class, and whether it counts as a first pass that
/// resyncs wait for (a first pass that failed before does not: a resource that keeps failing,
/// a missing user or a bad Secret, must not hold every resync back).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Place {
    pub class: Urgency,
    pub first: bool,
}

impl Place {
    /// A pass of `class` that counts as a first pass if it is one.
    pub fn of(class: Urgency) -> Self {
        Self {
            class,
            first: class == Urgency::Initial,
        }
    }
}

struct Waiting {
    hash: u64,
    line: u64,
    key: Box<str>,
    wake: Wake,
    /// A resync waits for first passes until then.
    limit: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Line {
    place: Place,
    number: u64,
}

struct Lease {
    place: Place,
    until: Instant,
}

/// An object's reconcile has come in; it enters (see `Arrival::enter`) or, dropped before that
/// (its status is current), frees the slot leased to it, if any.
pub struct Arrival<'a> {
    admission: &'a Admission,
    hash: u64,
    entered: bool,
}

/// A pass admitted; frees its slot (and wakes the next in line) when dropped.
pub struct Admitted<'a> {
    admission: &'a Admission,
    place: Place,
}

impl Admission {
    /// `slots` passes of each urgency at once.
    pub fn new(slots: usize) -> Self {
        Self {
            slots: slots.max(1),
            state: Mutex::default(),
        }
    }

    /// The reconcile of the object with this hash (of `Kind/namespace/name`) has come in.
    pub fn arrive(&self, hash: u64) -> Arrival<'_> {
        Arrival {
            admission: self,
            hash,
            entered: false,
        }
    }

    /// Objects waiting for a slot, per urgency (least urgent first, as `Urgency` orders them).
    pub fn waiting(&self) -> [usize; CLASSES] {
        let state = self.state.lock();
        std::array::from_fn(|class| state.classes[class].waiting)
    }

    /// Objects waiting for a slot, by urgency, as the metrics name them.
    pub fn waiting_by_name(&self) -> impl Iterator<Item = (&'static str, usize)> {
        let waiting = self.waiting();
        SERVED
            .into_iter()
            .map(move |class| (name(class), waiting[class as usize]))
    }

    /// Frees leases whose objects never came back and lets in resyncs past their limit; run
    /// every `TICK` (see `keep_time`).
    pub fn tick(&self) {
        let now = Instant::now();
        self.locked(|state| {
            let expired: Vec<u64> = state
                .leases
                .iter()
                .filter(|(_, lease)| lease.until <= now)
                .map(|(hash, _)| *hash)
                .collect();
            for hash in expired {
                tracing::debug!(hash, "a leased slot ran out: its object never came back");
                state.drop_lease(hash);
            }
        });
    }

    /// Ticks until the process ends; `report` is told the waiting passes after each tick.
    pub async fn keep_time(&self, report: impl Fn(&Self)) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.tick();
            report(self);
        }
    }

    /// Runs `change` under the lock, then gives free slots on (`pump`) and sends back whom they
    /// went to, outside the lock; an object that is gone gives its slot on again.
    fn locked<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let (result, mut woken) = {
            let mut state = self.state.lock();
            let result = change(&mut state);
            (result, state.pump(self.slots, Instant::now()))
        };
        while !woken.is_empty() {
            let gone: Vec<u64> = woken
                .drain(..)
                .filter(|(_, key, wake)| !wake(key))
                .map(|(hash, _, _)| hash)
                .collect();
            if gone.is_empty() {
                break;
            }
            let mut state = self.state.lock();
            for hash in gone {
                state.drop_lease(hash);
            }
            woken = state.pump(self.slots, Instant::now());
        }
        result
    }
}

/// An urgency as the metrics label it.
fn name(class: Urgency) -> &'static str {
    match class {
        Urgency::Interactive => "interactive",
        Urgency::Initial => "initial",
        Urgency::Resync => "resync",
    }
}

impl<'a> Arrival<'a> {
    /// Admits the pass at `place` now (with the slot leased to it, or a free one when nobody of
    /// its class waits), or gives it a line and returns None: `wake` sends it back when a slot is
    /// its. A resync also waits while first passes are queued or under way, for at most `limit`.
    pub fn enter(
        mut self,
        place: Place,
        key: &str,
        limit: Duration,
        wake: &Wake,
    ) -> Option<Admitted<'a>> {
        self.entered = true;
        let (admission, hash) = (self.admission, self.hash);
        let limit = Instant::now() + limit;
        // The lease is taken and the decision made under one lock: a slot freed meanwhile on
        // another thread cannot lease this object a second slot.
        let place = admission.locked(|state| match state.leases.remove(&hash) {
            Some(lease) if lease.place.class == place.class => {
                let class = &mut state.classes[place.class as usize];
                class.leased -= 1;
                class.running += 1;
                Some(lease.place)
            }
            lease => {
                if let Some(lease) = lease {
                    state.forget_lease(lease.place);
                }
                state
                    .admit_or_queue(admission.slots, place, hash, key, limit, wake)
                    .then_some(place)
            }
        })?;
        Some(Admitted { admission, place })
    }
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        if !self.entered {
            let hash = self.hash;
            self.admission.locked(|state| state.drop_lease(hash));
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let place = self.place;
        self.admission.locked(|state| {
            state.classes[place.class as usize].running -= 1;
            state.leave(place);
        });
    }
}

impl State {
    fn free(&self, slots: usize, class: Urgency) -> bool {
        let class = &self.classes[class as usize];
        class.running + class.leased < slots
    }

    fn join(&mut self, place: Place) {
        if place.first {
            self.first_passes += 1;
        }
    }

    fn leave(&mut self, place: Place) {
        if place.first {
            self.first_passes -= 1;
        }
    }

    /// A lease given up (its object gone, never back, or back with nothing to do).
    fn drop_lease(&mut self, hash: u64) {
        if let Some(lease) = self.leases.remove(&hash) {
            self.forget_lease(lease.place);
        }
    }

    fn forget_lease(&mut self, place: Place) {
        self.classes[place.class as usize].leased -= 1;
        self.leave(place);
    }

    /// Takes a slot for a pass that holds no lease, or gives it a line (keeping the one it has
    /// in its class: a second reconcile of a waiting object, woken by something else, waits on).
    fn admit_or_queue(
        &mut self,
        slots: usize,
        place: Place,
        hash: u64,
        key: &str,
        limit: Instant,
        wake: &Wake,
    ) -> bool {
        let class = place.class;
        if let Some(line) = self.lines.get(&hash).copied() {
            if line.place.class == class {
                return false;
            }
            self.lines.remove(&hash);
            self.classes[line.place.class as usize].waiting -= 1;
            self.leave(line.place);
        }
        self.join(place);
        let gated = class == Urgency::Resync && self.first_passes > 0;
        if self.free(slots, class) && self.classes[class as usize].waiting == 0 && !gated {
            self.classes[class as usize].running += 1;
            return true;
        }
        let number = self.next_line;
        self.next_line += 1;
        self.lines.insert(hash, Line { place, number });
        let waiting = &mut self.classes[class as usize];
        waiting.waiting += 1;
        waiting.queue.push_back(Waiting {
            hash,
            line: number,
            key: key.into(),
            wake: wake.clone(),
            limit,
        });
        false
    }

    /// Gives free slots to the first in line of each class, most urgent first; returns whom to
    /// send back (outside the lock).
    fn pump(&mut self, slots: usize, now: Instant) -> Vec<(u64, Box<str>, Wake)> {
        let mut woken = Vec::new();
        for class in SERVED {
            while self.free(slots, class) {
                let Some(head) = self.classes[class as usize].queue.pop_front() else {
                    break;
                };
                let line = self
                    .lines
                    .get(&head.hash)
                    .copied()
                    .filter(|line| line.number == head.line && line.place.class == class);
                // A stale line (its object left or took another): dropped.
                let Some(line) = line else {
                    continue;
                };
                if class == Urgency::Resync && self.first_passes > 0 && now < head.limit {
                    self.classes[class as usize].queue.push_front(head);
                    break;
                }
                self.lines.remove(&head.hash);
                let leased = &mut self.classes[class as usize];
                leased.waiting -= 1;
                leased.leased += 1;
                let lease = Lease {
                    place: line.place,
                    until: now + LEASE,
                };
                if let Some(old) = self.leases.insert(head.hash, lease) {
                    self.forget_lease(old.place);
                }
                woken.push((head.hash, head.key, head.wake));
            }
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wake that records whom it sent back; the keys in `gone` look deleted.
    type Keys<T> = Arc<Mutex<Vec<T>>>;

    fn recorder() -> (Wake, Keys<String>, Keys<&'static str>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let gone = Arc::new(Mutex::new(Vec::new()));
        let (record, deleted) = (sent.clone(), gone.clone());
        let wake: Wake = Arc::new(move |key: &str| {
            record.lock().push(key.to_string());
            !deleted.lock().contains(&key)
        });
        (wake, sent, gone)
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn enter<'a>(
        admission: &'a Admission,
        class: Urgency,
        key: &str,
        wake: &Wake,
    ) -> Option<Admitted<'a>> {
        admission
            .arrive(super::super::keys::fingerprint(key))
            .enter(Place::of(class), key, HOUR, wake)
    }

    #[tokio::test]
    async fn passes_past_the_slots_wait_in_line_and_are_sent_back_in_order_as_slots_free() {
        let admission = Admission::new(2);
        let (wake, sent, _) = recorder();
        let a = enter(&admission, Urgency::Initial, "ns/a", &wake).expect("a slot");
        let _b = enter(&admission, Urgency::Initial, "ns/b", &wake).expect("a slot");
        assert!(enter(&admission, Urgency::Initial, "ns/c", &wake).is_none());
        assert!(enter(&admission, Urgency::Initial, "ns/d", &wake).is_none());
        // A second reconcile of a waiting object keeps its line.
        assert!(enter(&admission, Urgency::Initial, "ns/c", &wake).is_none());
        assert_eq!(admission.waiting()[Urgency::Initial as usize], 2);
        assert!(sent.lock().is_empty());
        drop(a);
        assert_eq!(*sent.lock(), ["ns/c"]);
        // The slot is c's: a newcomer waits behind d, and c's reconcile takes the slot.
        assert!(enter(&admission, Urgency::Initial, "ns/e", &wake).is_none());
        let c = enter(&admission, Urgency::Initial, "ns/c", &wake).expect("the leased slot");
        drop(c);
        assert_eq!(*sent.lock(), ["ns/c", "ns/d"]);
    }

    #[tokio::test]
    async fn a_spec_change_never_waits_behind_new_resources_or_resyncs() {
        let admission = Admission::new(1);
        let (wake, _, _) = recorder();
        let _first = enter(&admission, Urgency::Initial, "ns/new", &wake).unwrap();
        assert!(enter(&admission, Urgency::Initial, "ns/newer", &wake).is_none());
        assert!(enter(&admission, Urgency::Resync, "ns/old", &wake).is_none());
        assert!(enter(&admission, Urgency::Interactive, "ns/changed", &wake).is_some());
        // An object waiting as a resync whose spec changes moves to the change's class.
        let moved = enter(&admission, Urgency::Interactive, "ns/old", &wake);
        assert!(moved.is_some());
        assert_eq!(admission.waiting()[Urgency::Resync as usize], 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_resync_waits_while_first_passes_wait_or_run_but_not_past_its_limit() {
        let admission = Admission::new(4);
        let (wake, sent, _) = recorder();
        let first = enter(&admission, Urgency::Initial, "ns/new", &wake).unwrap();
        let limit = Duration::from_secs(60);
        let arrival = admission.arrive(super::super::keys::fingerprint("ns/old"));
        assert!(
            arrival
                .enter(Place::of(Urgency::Resync), "ns/old", limit, &wake)
                .is_none()
        );
        drop(first);
        assert_eq!(
            *sent.lock(),
            ["ns/old"],
            "sent back once no first pass is under way"
        );
        // A first pass that never ends delays a resync by its limit only.
        let _stuck = enter(&admission, Urgency::Initial, "ns/slow", &wake).unwrap();
        let arrival = admission.arrive(super::super::keys::fingerprint("ns/other"));
        assert!(
            arrival
                .enter(Place::of(Urgency::Resync), "ns/other", limit, &wake)
                .is_none()
        );
        tokio::time::advance(Duration::from_secs(59)).await;
        admission.tick();
        assert_eq!(sent.lock().len(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        admission.tick();
        assert_eq!(*sent.lock(), ["ns/old", "ns/other"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_leased_to_an_object_that_never_comes_back_is_given_on() {
        let admission = Admission::new(1);
        let (wake, sent, gone) = recorder();
        let a = enter(&admission, Urgency::Initial, "ns/a", &wake).unwrap();
        for key in ["ns/b", "ns/c", "ns/d"] {
            assert!(enter(&admission, Urgency::Initial, key, &wake).is_none());
        }
        // b and c are deleted while they wait: the slot goes straight to d.
        gone.lock().extend(["ns/b", "ns/c"]);
        drop(a);
        assert_eq!(*sent.lock(), ["ns/b", "ns/c", "ns/d"]);
        let d = enter(&admission, Urgency::Initial, "ns/d", &wake).expect("the leased slot");
        assert!(enter(&admission, Urgency::Initial, "ns/f", &wake).is_none());
        drop(d);
        assert_eq!(sent.lock().last().map(String::as_str), Some("ns/f"));
        // f never comes back: after the lease, the slot is given on.
        assert!(enter(&admission, Urgency::Initial, "ns/g", &wake).is_none());
        tokio::time::advance(LEASE).await;
        admission.tick();
        assert_eq!(sent.lock().last().map(String::as_str), Some("ns/g"));
        // A reconcile that comes back current frees its lease at once.
        assert!(enter(&admission, Urgency::Initial, "ns/h", &wake).is_none());
        drop(admission.arrive(super::super::keys::fingerprint("ns/g")));
        assert_eq!(sent.lock().last().map(String::as_str), Some("ns/h"));
    }

    #[tokio::test]
    async fn a_retried_first_pass_keeps_its_class_but_holds_no_resync_back() {
        let admission = Admission::new(1);
        let (wake, sent, _) = recorder();
        let retried = Place {
            class: Urgency::Initial,
            first: false,
        };
        let hash = super::super::keys::fingerprint("ns/broken");
        let broken = admission
            .arrive(hash)
            .enter(retried, "ns/broken", HOUR, &wake);
        assert!(broken.is_some(), "a slot of its own class");
        let _old = enter(&admission, Urgency::Resync, "ns/old", &wake).expect("not held back");
        // Queued behind it, it still holds no resync back.
        assert!(
            admission
                .arrive(1)
                .enter(retried, "ns/x", HOUR, &wake)
                .is_none()
        );
        assert!(enter(&admission, Urgency::Resync, "ns/older", &wake).is_none());
        assert_eq!(admission.state.lock().first_passes, 0);
        drop(broken);
        assert_eq!(*sent.lock(), ["ns/x"]);
        assert!(enter(&admission, Urgency::Initial, "ns/new", &wake).is_none());
        assert_eq!(admission.state.lock().first_passes, 1);
    }
}
