//! Model check of the queue with loom: every interleaving of two producers and two consumers
//! over a two-slot queue delivers each descriptor exactly once; and two consumers racing the
//! stuck-slot skip (`Queue::skip_head`) against each other and against producers lose,
//! duplicate or invent nothing.
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p polytropon-ipc --test loom --release`.

#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use polytropon_ipc::queue::Cursor;
use polytropon_ipc::{Descriptor, Queue, QueueHeader, Slot};

struct Owned {
    header: QueueHeader,
    slots: Vec<Slot>,
}

impl Owned {
    fn queue(&self) -> Queue<'_> {
        Queue::new(&self.header, &self.slots).expect("queue")
    }
}

fn owned(n: usize) -> Arc<Owned> {
    let header = QueueHeader { enqueue: Cursor { pos: AtomicU64::new(0) }, dequeue: Cursor { pos: AtomicU64::new(0) } };
    let slots = (0..n).map(|_| Slot { seq: AtomicU64::new(0), desc: UnsafeCell::new(Descriptor::default()) }).collect();
    let o = Arc::new(Owned { header, slots });
    o.queue().init();
    o
}

fn desc(seq: u64) -> Descriptor {
    Descriptor { seq, ..Descriptor::default() }
}

#[test]
fn two_producers_two_consumers() {
    loom::model(|| {
        let o = owned(2);
        let producers: Vec<_> = (1..=2u64)
            .map(|p| {
                let o = o.clone();
                loom::thread::spawn(move || {
                    let q = o.queue();
                    let d = desc(p);
                    while q.push(&d).is_err() {
                        loom::thread::yield_now();
                    }
                })
            })
            .collect();
        let consumer = {
            let o = o.clone();
            loom::thread::spawn(move || o.queue().pop().map(|d| d.seq))
        };
        for p in producers {
            p.join().expect("producer");
        }
        let first = consumer.join().expect("consumer");
        let q = o.queue();
        let mut got: Vec<u64> = first.into_iter().collect();
        while let Some(d) = q.pop() {
            got.push(d.seq);
        }
        got.sort_unstable();
        assert_eq!(got, vec![1, 2], "each descriptor exactly once");
    });
}

// The stuck-slot skip. A worker skips the head once it has found the queue stuck there (a
// failed pop with claimed slots waiting, `backlog() > 0`) for 20 ms (`STUCK`, in the
// service). Time is no synchronisation: a producer may be stalled for any time, so under loom
// a consumer may skip as soon as a pop fails, which covers every interleaving the 20 ms allow
// (and more). `queue.rs` itself has no clock and nothing to hook.

/// Preemptions per execution that loom explores in the models below: enough for the races
/// they are about (each needs one or two), and both run in about 10 s. `LOOM_MAX_PREEMPTIONS=3`
/// takes about 75 s (and passes).
const PREEMPTIONS: usize = 2;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        // `LOOM_MAX_PREEMPTIONS` in the environment wins.
        b.preemption_bound = Some(PREEMPTIONS);
    }
    b.check(f);
}

/// What one worker does on each of `rounds` polls: take a request, or skip a stuck head.
fn consume(q: Queue<'_>, rounds: usize) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..rounds {
        match q.pop() {
            Some(d) => got.push(d.seq),
            None if q.backlog() > 0 => {
                q.skip_head(q.head());
            }
            None => {}
        }
    }
    got
}

/// Everything still in the queue once every thread is done: what was claimed and not
/// published by now never will be, so its slots are skipped.
fn drain(o: &Owned, got: &mut Vec<u64>) {
    let q = o.queue();
    for _ in 0..16 {
        match q.pop() {
            Some(d) => got.push(d.seq),
            None if q.backlog() > 0 => {
                q.skip_head(q.head());
            }
            None => return,
        }
    }
    let turns: Vec<u64> = o.slots.iter().map(|s| s.seq.load(Ordering::Relaxed)).collect();
    panic!("the queue does not drain: took {got:?}, head {}, backlog {}, turns {turns:?}", q.head(), q.backlog());
}

/// Pushes `item` (attempt `k` as `10 * item + k`, so that a refused attempt is told from a
/// published one) until it goes in, as a client does, at most `attempts` times; returns what
/// was published.
fn produce(q: Queue<'_>, item: u64, attempts: u64) -> Option<u64> {
    for k in 0..attempts {
        let v = 10 * item + k;
        if q.push(&desc(v)).is_ok() {
            return Some(v);
        }
        loom::thread::yield_now();
    }
    None
}

fn exactly_once(mut published: Vec<u64>, mut consumed: Vec<u64>) {
    published.sort_unstable();
    consumed.sort_unstable();
    assert_eq!(consumed, published, "every published descriptor taken exactly once, and nothing else");
}

/// A producer claimed position 0 and died before publishing it (what it had written there is
/// no request); a request is queued behind it. Another producer pushes a request that only
/// fits once the dead slot is skipped and handed to the next lap, into that very slot, while
/// two workers take and skip concurrently: a second skip of the same head must not take the
/// next lap's request back.
#[test]
fn two_consumers_race_the_skip_of_an_abandoned_slot() {
    model(|| {
        let o = owned(2);
        const DEAD: u64 = 99;
        o.header.enqueue.pos.store(1, Ordering::Relaxed);
        // SAFETY: no other thread exists yet; the cell holds a plain `Descriptor`.
        o.slots[0].desc.with_mut(|p| unsafe { p.write(desc(DEAD)) });
        o.queue().push(&desc(10)).expect("room behind the dead slot");
        let producer = {
            let o = o.clone();
            loom::thread::spawn(move || produce(o.queue(), 2, 2))
        };
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let o = o.clone();
                loom::thread::spawn(move || consume(o.queue(), 2))
            })
            .collect();
        let mut published = vec![10];
        published.extend(producer.join().expect("producer"));
        let mut consumed: Vec<u64> = consumers.into_iter().flat_map(|c| c.join().expect("consumer")).collect();
        drain(&o, &mut consumed);
        assert!(!consumed.contains(&DEAD), "the abandoned slot was taken as a request");
        exactly_once(published, consumed);
    });
}

/// A producer that is merely slow between claiming its slot and publishing it, while two
/// workers take and skip: a skipped attempt is refused (`PushError::Skipped`) and pushed
/// again, and whichever attempt went in is taken exactly once, a refused one never.
#[test]
fn two_consumers_race_the_skip_of_a_slow_producer() {
    model(|| {
        let o = owned(2);
        let producer = {
            let o = o.clone();
            loom::thread::spawn(move || produce(o.queue(), 1, 2))
        };
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let o = o.clone();
                loom::thread::spawn(move || consume(o.queue(), 2))
            })
            .collect();
        let published: Vec<u64> = producer.join().expect("producer").into_iter().collect();
        let mut consumed: Vec<u64> = consumers.into_iter().flat_map(|c| c.join().expect("consumer")).collect();
        drain(&o, &mut consumed);
        exactly_once(published, consumed);
    });
}
