//! What the library remembers of the small files it opened read-only: a path, the file it
//! led to, and what came with the open (the file's bytes and attributes), with the
//! change-table words they hold under (see `polytropon_ipc::changes`). Opening the same path
//! again while the instance's names (which decide where a path leads and who may follow it)
//! and the file are unchanged, with the same credentials, costs no round trip: the new
//! descriptor is answered from memory and shares the service handle the memory keeps open for
//! the file (released by whoever lets go of it last), so a call that needs the service
//! reaches the very file that was opened, as a kernel descriptor would. What a repeated stat of
//! a path found is remembered the same way.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use std::sync::Arc;

use polytropon_ipc::WireAttr;

use crate::config::GENERATION;
use crate::files::{Known, LastRef};
use crate::path::Target;

/// Shards of the memory (threads opening different paths rarely meet on one lock), and the
/// paths each keeps before it forgets them all: each holds a service handle of its file open,
/// so at most 512 per process (of the 4,096 the service allows).
const SHARDS: usize = 16;
const PER_SHARD: usize = 32;
/// How long a path is remembered (as the union trusts a resolved name: a change made in a
/// branch directory behind the service's back is seen within it).
const TTL: std::time::Duration = std::time::Duration::from_secs(1);

struct Remembered {
    found: Found,
    /// The file's service handle (the memory's share of it; see `files::File::held`).
    held: Arc<LastRef>,
    known: Known,
}

/// What makes a remembered answer about path `t` hold: the same path, the credentials'
/// generation (`config::GENERATION`) and the service's digest of the asking thread's
/// credentials it was found with, at most `TTL` ago, and the change table's words of the
/// instance's names and of the file (slot, word) unchanged.
struct Found {
    instance: u32,
    base: u64,
    rel: Box<[u8]>,
    generation: u32,
    creds: u64,
    when: std::time::Instant,
    table: u64,
    names: (u64, u64),
    file: (u64, u64),
}

impl Found {
    fn new(t: &Target, generation: u32, creds: u64, table: u64, names: (u64, u64), file: (u64, u64)) -> Found {
        Found { instance: t.instance, base: t.base, rel: t.rel().into(), generation, creds, when: std::time::Instant::now(), table, names, file }
    }

    /// Whether it holds for `t` asked by a thread with `creds`, `current` giving the table's
    /// identity and a slot's word now; with the table's identity now (`None`: unknown).
    fn holds(&self, t: &Target, creds: u64, current: impl Fn(u64) -> Option<(u64, u64)>) -> (bool, Option<u64>) {
        let names_now = current(self.names.0);
        let holds = self.instance == t.instance
            && self.base == t.base
            && *self.rel == *t.rel()
            && self.generation == GENERATION.load(Ordering::Acquire)
            && self.creds == creds
            && self.when.elapsed() < TTL
            && names_now == Some((self.table, self.names.1))
            && current(self.file.0) == Some((self.table, self.file.1));
        (holds, names_now.map(|(id, _)| id))
    }

    fn expired(&self) -> bool {
        self.when.elapsed() >= TTL
    }
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

/// The file `t` led to (a share of its service handle) and what is known of it, if that still
/// holds for a thread whose credentials have digest `creds`: `current` gives the change
/// table's identity and a slot's word now. With it, the handles the memory let go of last
/// (forgotten entries), for the caller to release.
pub fn recall(t: &Target, creds: u64, current: impl Fn(u64) -> Option<(u64, u64)>) -> (Option<(Arc<LastRef>, Known)>, Vec<LastRef>) {
    let k = key(t);
    let Ok(mut shard) = MEMORY[k as usize % SHARDS].try_lock() else { return (None, Vec::new()) };
    let Some(map) = shard.as_mut() else { return (None, Vec::new()) };
    let Some(r) = map.get(&k) else { return (None, Vec::new()) };
    let (holds, table) = r.found.holds(t, creds, current);
    if !holds {
        let gone = map.remove(&k).and_then(|r| last_of(r, table));
        return (None, gone.into_iter().collect());
    }
    (Some((r.held.clone(), r.known.clone())), Vec::new())
}

/// The handle to release for a forgotten entry: when the memory held its last share, and
/// only under the service it was opened under (table `table`; a successor numbers its own
/// handles, and one of ours may have the same number).
fn last_of(r: Remembered, table: Option<u64>) -> Option<LastRef> {
    let same_service = table == Some(r.found.table);
    Arc::into_inner(r.held).filter(|_| same_service)
}

/// Remembers that `t` led to the file whose service handle `held` shares, for a thread with
/// credentials `creds` (the service's digest) in generation `generation`, with what came with
/// its open (`known`, which must carry the attributes and the names' word). Returns the
/// handles the memory let go of last (entries it forgot: expired ones, or all of a full
/// shard), for the caller to release.
pub fn remember(t: &Target, known: &Known, generation: u32, creds: u64, held: Arc<LastRef>) -> Vec<LastRef> {
    let Some((_, names_slot, names_word)) = known.attr else { return Vec::new() };
    let k = key(t);
    let Ok(mut shard) = MEMORY[k as usize % SHARDS].try_lock() else { return Vec::new() };
    let map = shard.get_or_insert_with(HashMap::new);
    let table = Some(known.table);
    let mut gone = Vec::new();
    let expired: Vec<u64> = map.iter().filter(|(_, r)| r.found.expired()).map(|(k, _)| *k).collect();
    gone.extend(expired.into_iter().filter_map(|k| map.remove(&k)).filter_map(|r| last_of(r, table)));
    if map.len() >= PER_SHARD && !map.contains_key(&k) {
        gone.extend(map.drain().filter_map(|(_, r)| last_of(r, table)));
    }
    let found = Found::new(t, generation, creds, known.table, (names_slot, names_word), (known.slot, known.word));
    gone.extend(map.insert(k, Remembered { found, held, known: known.clone() }).and_then(|old| last_of(old, table)));
    gone
}

/// Forgets every path, returning the handles the memory held last of that were opened under
/// the service with table `table` (before an exec: the new program starts with no memory, and
/// the service must not keep the old one's handles until the process ends).
pub fn take_all(table: Option<u64>) -> Vec<LastRef> {
    let mut gone = Vec::new();
    for shard in &MEMORY {
        if let Ok(mut s) = shard.try_lock() {
            if let Some(map) = s.as_mut() {
                gone.extend(map.drain().filter_map(|(_, r)| last_of(r, table)));
            }
        }
    }
    gone
}

/// What a stat of a path found (`follow`: of what a final symlink leads to), remembered as
/// the opens are, without a handle: answered again while the instance's names and the file
/// are unchanged, for the same credentials, for a second at most.
struct Stated {
    found: Found,
    follow: bool,
    inode: u64,
    attr: WireAttr,
}

static STATS: [Mutex<Option<HashMap<u64, Stated>>>; SHARDS] = [const { Mutex::new(None) }; SHARDS];
/// Paths stat'ed lately (a hash each, lossy): only a path stat'ed again asks the service for
/// attributes it may keep (which costs the service a second read of them).
static SEEN: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

fn stat_key(t: &Target, follow: bool) -> u64 {
    key(t) ^ u64::from(follow)
}

/// Whether `t` was stat'ed lately (and notes that it is now).
pub fn stat_again(t: &Target, follow: bool) -> bool {
    let k = stat_key(t, follow) | 1;
    SEEN[(k >> 8) as usize % SEEN.len()].swap(k, Ordering::Relaxed) == k
}

/// What a stat of `t` found, and the inode, if it still holds (as `recall`).
pub fn recall_stat(t: &Target, follow: bool, creds: u64, current: impl Fn(u64) -> Option<(u64, u64)>) -> Option<(WireAttr, u64)> {
    let k = stat_key(t, follow);
    let mut shard = STATS[k as usize % SHARDS].try_lock().ok()?;
    let map = shard.as_mut()?;
    let s = map.get(&k)?;
    if s.follow != follow || !s.found.holds(t, creds, current).0 {
        map.remove(&k);
        return None;
    }
    Some((s.attr, s.inode))
}

/// Remembers what a stat of `t` found (see `polytropon_ipc::STAT_LEARNED`): the attributes and
/// inode, the change table's identity, the names' and the file's (slot, word).
#[allow(clippy::too_many_arguments)]
pub fn remember_stat(t: &Target, follow: bool, attr: WireAttr, inode: u64, table: u64, names: (u64, u64), file: (u64, u64), generation: u32, creds: u64) {
    let k = stat_key(t, follow);
    let Ok(mut shard) = STATS[k as usize % SHARDS].try_lock() else { return };
    let map = shard.get_or_insert_with(HashMap::new);
    if map.len() >= 4 * PER_SHARD && !map.contains_key(&k) {
        map.clear();
    }
    map.insert(k, Stated { found: Found::new(t, generation, creds, table, names, file), follow, inode, attr });
}
