//! Measures what issue 5 asks about bulk copies into the shared buffer: libc's `memcpy`
//! against a copy with non-temporal (streaming) stores, for the sizes the user-level path
//! moves (64 KiB to 1 MiB), where another core reads the data right after the copy (as the
//! service does from a client's buffer).
//!
//! `cargo run --release --example bulk_copy`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// Copies with 32-byte streaming stores (`dst` 32-byte aligned, `len` a multiple of 32).
#[cfg(target_arch = "x86_64")]
fn copy_streaming(dst: &mut [u8], src: &[u8]) {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_stream_si256, _mm_sfence};
    assert!(dst.len() == src.len() && dst.len().is_multiple_of(32) && (dst.as_ptr() as usize).is_multiple_of(32));
    if !std::is_x86_feature_detected!("avx") {
        dst.copy_from_slice(src);
        return;
    }
    // SAFETY: AVX is present (checked); both slices hold `len` bytes, `dst` is 32-byte
    // aligned as streaming stores need, and the loop stays within `len`.
    unsafe {
        for i in (0..dst.len()).step_by(32) {
            let v = _mm256_loadu_si256(src.as_ptr().add(i) as *const __m256i);
            _mm256_stream_si256(dst.as_mut_ptr().add(i) as *mut __m256i, v);
        }
        _mm_sfence();
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn copy_streaming(dst: &mut [u8], src: &[u8]) {
    dst.copy_from_slice(src);
}

/// A buffer with a 32-byte aligned window of `len` bytes at `.1`.
fn aligned(len: usize) -> (Vec<u8>, usize) {
    let v = vec![0u8; len + 32];
    let off = v.as_ptr().align_offset(32);
    (v, off)
}

/// Median µs per (copy by this thread + read of the copy by another thread).
fn measure(len: usize, streaming: bool, reps: usize) -> f64 {
    let src: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let dst = Arc::new(std::sync::Mutex::new(aligned(len)));
    let barrier = Arc::new(Barrier::new(2));
    let sum = Arc::new(AtomicU64::new(0));
    let reader = {
        let (dst, barrier, sum) = (dst.clone(), barrier.clone(), sum.clone());
        std::thread::spawn(move || {
            for _ in 0..reps {
                barrier.wait();
                barrier.wait();
                let g = dst.lock().unwrap_or_else(|p| p.into_inner());
                let d = &g.0[g.1..g.1 + len];
                sum.fetch_add(d.iter().step_by(64).map(|b| u64::from(*b)).sum::<u64>(), Ordering::Relaxed);
                drop(g);
                barrier.wait();
            }
        })
    };
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        barrier.wait();
        let t = Instant::now();
        {
            let mut g = dst.lock().unwrap_or_else(|p| p.into_inner());
            let off = g.1;
            let d = &mut g.0[off..off + len];
            if streaming {
                copy_streaming(d, &src);
            } else {
                d.copy_from_slice(&src);
            }
        }
        barrier.wait();
        barrier.wait();
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let _ = reader.join();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    println!("| size | memcpy (µs) | streaming stores (µs) | streaming / memcpy |");
    println!("|---|---|---|---|");
    for kib in [64usize, 256, 512, 1024] {
        let len = kib << 10;
        // Interleaved, several rounds; medians.
        let mut a = Vec::new();
        let mut b = Vec::new();
        for _ in 0..5 {
            a.push(measure(len, false, 200));
            b.push(measure(len, true, 200));
        }
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let (m, s) = (a[2], b[2]);
        println!("| {kib} KiB | {m:.1} | {s:.1} | {:.2}x |", s / m);
    }
}
