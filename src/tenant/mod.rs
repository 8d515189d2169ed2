//! A whole tenant: what creates a pool, stops its service and containers and removes it all
//! (`ops`), and what reports on it for `inspect` (`report`). It stands above the pool (a
//! slice only), the service and the containers, which it ties together.

mod error;
pub mod ops;
pub mod report;

pub use error::TenantError;
