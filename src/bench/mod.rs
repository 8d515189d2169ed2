//! `polytropon bench`: workloads run on several paths side by side.
//!
//! Not implemented yet: issues 3, 5 and 9 build the workloads here.
