//! The end of a deletion under `deletionPolicy: Restore`, the same for every kind that writes:
//! an Event either way, a cloud object that is already gone counts as restored, and a write-back
//! that may not happen (another resource owns the object now, no account admits it) is skipped
//! with a Warning that says why, so deletion never hangs.

use kube::Resource;
use kube::runtime::controller::Action;

use super::context::Context;
use super::error::ReconcileError;
use crate::api::Reason;
use crate::cloud::CloudError;

/// Finishes a deletion after writing back `status.restoreTo` (`written`: the write's outcome).
pub async fn finish<K>(
    ctx: &Context,
    object: &K,
    written: Result<(), CloudError>,
    directory_id: &str,
    user: Option<&str>,
    restored: String,
) -> Result<Action, ReconcileError>
where
    K: Resource<DynamicType = ()>,
{
    match written {
        Ok(()) => {
            ctx.events
                .publish(object, false, Reason::Restored, "Delete", restored)
                .await;
            Ok(Action::await_change())
        }
        Err(error) if error.is_entity_gone() => Ok(Action::await_change()),
        Err(error) => {
            let error = ReconcileError::from_cloud(error, directory_id, user);
            let note = format!("could not restore before deletion: {error}");
            ctx.events
                .publish(object, true, error.reason(), "Delete", note)
                .await;
            Err(error)
        }
    }
}

/// Deletion goes on without writing back `restoreTo`: a Warning Event says why.
pub async fn skip<K>(ctx: &Context, object: &K, reason: Reason, why: String) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let note = format!("not restored before deletion: {why}");
    ctx.events
        .publish(object, true, reason, "Delete", note)
        .await;
    Action::await_change()
}

/// The route a restore writes through, or the Action that ends the deletion without one (no
/// account admits the resource any more: nothing may be written).
pub async fn skip_unless_routed<T, K>(
    ctx: &Context,
    object: &K,
    route: Result<T, ReconcileError>,
) -> Result<Result<T, Action>, ReconcileError>
where
    K: Resource<DynamicType = ()>,
{
    match route {
        Ok(route) => Ok(Ok(route)),
        Err(error @ ReconcileError::AccountNotAllowed { .. }) => {
            Ok(Err(
                skip(ctx, object, error.reason(), error.to_string()).await
            ))
        }
        Err(error) => Err(error),
    }
}
