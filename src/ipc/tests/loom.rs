//! Model check of the queue with loom: every interleaving of two producers and two consumers
//! over a two-slot queue delivers each descriptor exactly once.
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p polytropon-ipc --test loom --release`.

#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use polytropon_ipc::queue::Cursor;
use polytropon_ipc::{Descriptor, Queue, QueueHeader, Slot};

struct Owned {
    header: QueueHeader,
    slots: Vec<Slot>,
}

fn owned(n: usize) -> Arc<Owned> {
    let header = QueueHeader { enqueue: Cursor { pos: AtomicU64::new(0) }, dequeue: Cursor { pos: AtomicU64::new(0) } };
    let slots = (0..n).map(|_| Slot { seq: AtomicU64::new(0), desc: UnsafeCell::new(Descriptor::default()) }).collect();
    let o = Arc::new(Owned { header, slots });
    Queue::new(&o.header, &o.slots).expect("queue").init();
    o
}

#[test]
fn two_producers_two_consumers() {
    loom::model(|| {
        let o = owned(2);
        let producers: Vec<_> = (1..=2u64)
            .map(|p| {
                let o = o.clone();
                loom::thread::spawn(move || {
                    let q = Queue::new(&o.header, &o.slots).expect("queue");
                    let d = Descriptor { seq: p, ..Descriptor::default() };
                    while q.push(&d).is_err() {
                        loom::thread::yield_now();
                    }
                })
            })
            .collect();
        let consumer = {
            let o = o.clone();
            loom::thread::spawn(move || {
                let q = Queue::new(&o.header, &o.slots).expect("queue");
                q.pop().map(|d| d.seq)
            })
        };
        for p in producers {
            p.join().expect("producer");
        }
        let first = consumer.join().expect("consumer");
        let q = Queue::new(&o.header, &o.slots).expect("queue");
        let mut got: Vec<u64> = first.into_iter().collect();
        while let Some(d) = q.pop() {
            got.push(d.seq);
        }
        got.sort_unstable();
        assert_eq!(got, vec![1, 2], "each descriptor exactly once");
    });
}
