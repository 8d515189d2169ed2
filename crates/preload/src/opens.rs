//! What the library remembers of the small files it opened read-only: a path, the file it
//! led to, and what came with the open (the file's bytes and attributes), with the
//! change-table words they hold under (see `polytropon_ipc::changes`). Opening the same path
//! again while the instance's names (which decide where a path leads and who may follow it)
//! and the file are unchanged, with the same credentials, costs no round trip: the new
//! descriptor is answered from memory, and asks the service for a handle of its own only if
//! a call needs one (`ops::handle`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use crate::config::GENERATION;
use crate::files::Known;
use crate::path::Target;

/// Shards of the memory (threads opening different paths rarely meet on one lock), and the
/// paths each keeps before it forgets them all.
const SHARDS: usize = 16;
const PER_SHARD: usize = 512;

struct Remembered {
    instance: u32,
    base: u64,
    rel: Box<[u8]>,
    inode: u64,
    known: Known,
    /// The credentials' generation it was opened under (`config::GENERATION`), and the
    /// service's digest of the opening thread's credentials.
    generation: u32,
    creds: u64,
}

static MEMORY: [Mutex<Option<HashMap<u64, Remembered>>>; SHARDS] = [const { Mutex::new(None) }; SHARDS];

fn key(t: &Target) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (t.instance, t.base, t.rel()).hash(&mut h);
    h.finish()
}

/// Whether an open with `flags` may be answered from memory: read-only, creating and
/// truncating nothing, no flag the service must see.
pub fn eligible(flags: i32) -> bool {
    let harmless = libc::O_CLOEXEC | libc::O_LARGEFILE | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_NOFOLLOW;
    flags & !harmless == libc::O_RDONLY
}

/// The file `t` led to and what is known of it, if that still holds for a thread whose
/// credentials have digest `creds`: `current` gives the change table's identity and a slot's
/// word now.
pub fn recall(t: &Target, creds: u64, current: impl Fn(u64) -> Option<(u64, u64)>) -> Option<(u64, Known)> {
    let k = key(t);
    let mut shard = MEMORY[k as usize % SHARDS].try_lock().ok()?;
    let map = shard.as_mut()?;
    let r = map.get(&k)?;
    let same_path = r.instance == t.instance && r.base == t.base && *r.rel == *t.rel();
    let (_, names_slot, names_word) = r.known.attr?;
    let holds = same_path
        && r.generation == GENERATION.load(Ordering::Acquire)
        && r.creds == creds
        && current(names_slot) == Some((r.known.table, names_word))
        && current(r.known.slot) == Some((r.known.table, r.known.word));
    if !holds {
        map.remove(&k);
        return None;
    }
    Some((r.inode, r.known.clone()))
}

/// Remembers that `t` led to `inode` for a thread with credentials `creds` (the service's
/// digest) in generation `generation`, with what came with its open (`known`, which must
/// carry the attributes and the names' word).
pub fn remember(t: &Target, inode: u64, known: &Known, generation: u32, creds: u64) {
    if known.attr.is_none() {
        return;
    }
    let k = key(t);
    let Ok(mut shard) = MEMORY[k as usize % SHARDS].try_lock() else { return };
    let map = shard.get_or_insert_with(HashMap::new);
    if map.len() >= PER_SHARD && !map.contains_key(&k) {
        map.clear();
    }
    map.insert(k, Remembered { instance: t.instance, base: t.base, rel: t.rel().into(), inode, known: known.clone(), generation, creds });
}
