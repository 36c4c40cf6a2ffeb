//! spsc-ceiling: the limit of this machine for any two-thread hand-off. Two threads pass items
//! through a single-producer single-consumer ring in shared memory, in batches: the producer
//! writes up to `batch` items (a sequence number in each) and publishes its index once, the
//! consumer reads every item it is given (checking the sequence) and publishes its index once.
//! Indices live on cache lines of their own; each side caches the other's index and re-reads it
//! only when it runs out. Waiting is a spin with `spin_loop` hints and a `yield_now` every so
//! often (nothing parks: there is no kick to count).
//!
//! Items are `item_len` bytes (64 for the 60-byte rows, 1536 for the 1514-byte rows: a frame
//! padded to cache lines), stored as `AtomicU64` words so the ring needs no `unsafe`; relaxed
//! word stores compile to plain moves on x86-64, the index stores carry the ordering.

use super::{BenchError, Load, Measured};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::Instant;

/// One cache line holding one index.
#[repr(align(128))]
#[derive(Default)]
struct Line(AtomicU64);

struct Ring {
    words: Vec<AtomicU64>,
    /// Words per item.
    stride: usize,
    /// Items in the ring (a power of two).
    items: u64,
    /// Items published by the producer (monotonic).
    tail: Line,
    /// Items released by the consumer (monotonic).
    head: Line,
    /// The producer finished; `tail` is final.
    done: AtomicBool,
}

const RING_ITEMS: u64 = 1024;

impl Ring {
    fn new(item_len: usize) -> Self {
        let stride = item_len.div_ceil(8).max(1);
        let words = (0..stride * RING_ITEMS as usize).map(|_| AtomicU64::new(0)).collect();
        Self {
            words,
            stride,
            items: RING_ITEMS,
            tail: Line::default(),
            head: Line::default(),
            done: AtomicBool::new(false),
        }
    }

    fn word(&self, pos: u64) -> &AtomicU64 {
        &self.words[(pos & (self.items - 1)) as usize * self.stride]
    }
}

/// Spins until `f` holds; yields the CPU every 256 spins.
fn spin_until(mut f: impl FnMut() -> bool) {
    let mut n = 0u32;
    while !f() {
        n = n.wrapping_add(1);
        if n.is_multiple_of(256) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Runs the producer and the consumer until `load` is used up.
pub(super) fn run(load: &Load, batch: u64, item_len: usize) -> Result<Measured, BenchError> {
    let ring = Ring::new(item_len);
    let batch = batch.clamp(1, ring.items);
    let start = Barrier::new(2);
    let (t0, (received, bad, t_end)) = std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            start.wait();
            let (mut head, mut tail) = (0u64, 0u64);
            let (mut expect, mut bad) = (0u64, 0u64);
            loop {
                if head == tail {
                    spin_until(|| {
                        tail = ring.tail.0.load(Ordering::Acquire);
                        tail != head || ring.done.load(Ordering::Acquire)
                    });
                    tail = ring.tail.0.load(Ordering::Acquire);
                    if head == tail {
                        break; // done and drained
                    }
                }
                let end = tail.min(head + batch);
                while head < end {
                    let seq = ring.word(head).load(Ordering::Relaxed);
                    bad += u64::from(seq != expect);
                    expect = seq.wrapping_add(1);
                    head += 1;
                }
                ring.head.0.store(head, Ordering::Release);
            }
            (head, bad, Instant::now())
        });
        start.wait();
        let t0 = Instant::now();
        let (mut tail, mut head) = (0u64, 0u64);
        let deadline = t0 + load.time;
        let mut rounds = 0u64;
        // The clock is read every 64 batches: the loop is the thing measured.
        while tail < load.frames && (!rounds.is_multiple_of(64) || Instant::now() < deadline) {
            rounds += 1;
            if tail - head + batch > ring.items {
                spin_until(|| {
                    head = ring.head.0.load(Ordering::Acquire);
                    tail - head + batch <= ring.items
                });
            }
            let end = (tail + batch).min(load.frames);
            while tail < end {
                ring.word(tail).store(tail, Ordering::Relaxed);
                tail += 1;
            }
            ring.tail.0.store(tail, Ordering::Release);
        }
        ring.done.store(true, Ordering::Release);
        (t0, consumer.join().unwrap_or((0, u64::MAX, Instant::now())))
    });
    if bad != 0 {
        return Err(BenchError::Corrupt { what: "spsc items out of sequence", count: bad });
    }
    Ok(Measured {
        sent: received,
        received,
        elapsed: t_end.duration_since(t0),
        ..Measured::default()
    })
}
