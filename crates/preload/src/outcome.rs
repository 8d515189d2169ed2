//! What a call on the user-level path comes to: served (`Ok`), or not served
//! ([`Unserved`]: hand the call to the real libc function, or fail it with an errno). One
//! type from the protocol crate, so that the service's answer and the library's own decisions
//! are the same thing and nothing is encoded by hand.

pub use polytropon_ipc::Unserved;

/// A call's outcome on the user-level path.
pub type Served<T> = Result<T, Unserved>;
