//! CloudAccount: its status says whether its credentials resolve (the Secret and its keys, or the
//! operator's own chain) and, once a resource used them, which Alibaba Cloud account they belong to. The account itself is
//! read by `tenancy` when namespaced resources use it; this controller only reports on it.

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::api::{CloudAccount, CloudAccountStatus, Reason};
use crate::controller::clock;
use crate::controller::conditions::{DesiredCondition, READY};
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::keys::counter_key;
use crate::controller::status::{self, StatusWriter};
use crate::controller::tenancy::{Plan, Service};

/// Resolves the credentials (the Secret and its keys, or the operator's chain being configured)
/// without a cloud call: an account nobody uses costs the cloud nothing. Returns the account id
/// when a resource's pass already learned it, and the endpoint URL.
async fn resolve(
    account: &CloudAccount,
    ctx: &Context,
) -> Result<(Option<String>, String), ReconcileError> {
    let plan = Plan::of_account(account).ok_or_else(|| {
        ReconcileError::InvalidSpec(
            "credentials must set exactly one of secretRef or operator".into(),
        )
    })?;
    let (endpoint, sts_endpoint) = plan.endpoints(Service::CloudSso)?;
    let source = ctx.cloud.source(&ctx.client, &plan.keys).await?;
    let account_id = ctx.tenancy.known_account_id(&source, &sts_endpoint);
    Ok((account_id, endpoint.url()))
}

/// One pass: Ready says whether the credentials resolve; status only when it changed.
pub async fn reconcile(
    account: Arc<CloudAccount>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let now = clock::now();
    let api: Api<CloudAccount> = Api::all(ctx.client.clone());
    let writer = StatusWriter::new(api, account.name_any());
    let previous: CloudAccountStatus = account.status.clone().unwrap_or_default();
    let outcome = resolve(&account, &ctx).await;
    let desired = match &outcome {
        Ok((account_id, endpoint)) => DesiredCondition::new(
            READY,
            true,
            Reason::Observed,
            match account_id {
                Some(account_id) => {
                    format!("the credentials resolve: account {account_id} at {endpoint}")
                }
                None => format!("the credentials resolve (endpoint {endpoint})"),
            },
        ),
        Err(error) => DesiredCondition::new(READY, false, error.reason(), error.to_string()),
    };
    let mut status = previous.clone();
    status.common = status::common_status(
        &previous.common,
        &[desired],
        account.meta().generation,
        &now,
    );
    match outcome {
        Ok((account_id, endpoint)) => {
            ctx.passes.failures.clear(&counter_key(account.as_ref()));
            status.common.account_id = account_id.or(previous.common.account_id.clone());
            status.common.endpoint = Some(endpoint);
            let resync = ctx.budget.effective();
            writer.write_synced(&previous, status, resync, &now).await?;
            Ok(Action::requeue(resync))
        }
        Err(error) => {
            writer.apply_changed(&previous, &status).await?;
            Err(error)
        }
    }
}
