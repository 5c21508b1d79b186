//! Which user a UserMfaSetting names: its `userId`, or its `userName` resolved through the shared
//! resolver (read back from the status when that resolved this very spec, so a restart resolves
//! nothing again; a name whose id vanished is resolved once more).

use std::collections::HashSet;

use kube::Resource;

use crate::api::{UserMfaSetting, UserMfaSettingSpec};
use crate::cloud::CloudSsoClient;
use crate::controller::conditions::{self, SYNCED};
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::keys::DirectoryKey;

/// The names of `spec`'s directory that UserMfaSettings ask for and that no status resolved yet:
/// when they are many, one listing of the directory resolves them all.
fn unresolved_names(spec: &UserMfaSettingSpec, ctx: &Context) -> HashSet<String> {
    ctx.wakers
        .users
        .known()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|other| {
            other.spec.directory_id == spec.directory_id
                && other.spec.endpoint == spec.endpoint
                && other.spec.region == spec.region
                && !resolved_in_status(other)
        })
        .filter_map(|other| other.spec.user_name.clone())
        .collect()
}

/// A status that resolved the spec's current userName: written by a pass of this generation
/// that succeeded (a failed pass keeps the id an earlier userName resolved to).
pub fn resolved_in_status(object: &UserMfaSetting) -> bool {
    object.status.as_ref().is_some_and(|status| {
        status.user_id.is_some()
            && status.common.observed_generation == object.meta().generation
            && conditions::is_true(&status.common.conditions, SYNCED)
    })
}

/// The user id: given, or resolved from the name (from the status only when `trust_status`).
pub async fn resolve(
    object: &UserMfaSetting,
    directory: &DirectoryKey,
    client: &CloudSsoClient,
    ctx: &Context,
    trust_status: bool,
) -> Result<String, ReconcileError> {
    let spec = &object.spec;
    if let Some(user_id) = &spec.user_id {
        return Ok(user_id.clone());
    }
    let user_name = spec.user_name.clone().unwrap_or_default();
    let names = &ctx.state.names;
    if let Some(user_id) = names.known(directory, &user_name) {
        return Ok(user_id);
    }
    if trust_status
        && resolved_in_status(object)
        && let Some(user_id) = object.status.as_ref().and_then(|s| s.user_id.clone())
    {
        names.remember(directory, &user_name, &user_id);
        return Ok(user_id);
    }
    names
        .resolve(client, directory, &user_name, || {
            unresolved_names(spec, ctx)
        })
        .await
        .map_err(|error| ReconcileError::from_cloud(error, &spec.directory_id, Some(&user_name)))?
        .ok_or_else(|| ReconcileError::UserNotFound {
            user: format!("named '{user_name}'"),
            directory_id: spec.directory_id.clone(),
            detail: " (ListUsers found no such user name)".into(),
        })
}

/// Drops a resolved name; whether there was one to drop.
pub fn forget(spec: &UserMfaSettingSpec, directory: &DirectoryKey, ctx: &Context) -> bool {
    let Some(user_name) = &spec.user_name else {
        return false;
    };
    ctx.state.names.forget(directory, user_name)
}
