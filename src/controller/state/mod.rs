//! What the controllers keep in memory of the cloud (the index linkerd's policy controller keeps
//! beside its watches): users' and directories' last reads, RAM accounts' preferences, resolved user names, and who claims
//! which cloud object (UserMfaPolicies' selections included). Filled by passes, read by passes; no Kubernetes I/O.

pub mod claims;
pub mod directory_cache;
pub mod names;
pub mod policy_selections;
pub mod ram_preferences;
pub mod read_through;
pub mod user_view;

pub use claims::{Claim, Claimant, Registry};
pub use directory_cache::DirectoryCache;
pub use names::NameResolver;
pub use policy_selections::PolicySelections;
pub use ram_preferences::{RamAccountKey, RamPreferenceCache};
pub use user_view::UserView;
