//! What each kind says: its `Kind` (and for the kinds that write, `Writable`) implementation,
//! its pure planner and the planner's tests. The machinery that runs them is beside this module.

pub mod account;
pub mod directory;
pub mod ram;
pub mod ram_preference;
pub mod ram_user;
pub mod user;
pub mod user_id;
pub mod user_plan;
pub mod user_policy;
