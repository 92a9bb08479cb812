//! Support for the engine's tests, compiled only for them: a simulated
//! storage that keeps synced and unsynced bytes apart and loses the latter
//! in a simulated power cut, a model of the store to compare against, and
//! the crash suites that drive both.

mod checkpoint_crash_tests;
mod close_kill_tests;
mod crash_tests;
pub(crate) mod sim_storage;
pub(crate) mod sync_point_fault_tests;
pub(crate) mod test_model;
