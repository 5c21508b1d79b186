//! What every reconcile is handed (as controller-rs's `Context`): the Kubernetes client, the
//! cloud clients and who may use them (tenancy), what the operator keeps of the cloud (`state`),
//! the budget of cloud calls and the census, Events, the bookkeeping of passes, the queues of
//! the kinds that wake each other, and metrics. Built once in `run_controllers`, complete from
//! the start.

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::core::DeserializeGuard;
use kube::core::object::HasSpec;
use kube::runtime::reflector::Store;

use super::budget::{Budget, Limits};
use super::census::Census;
use super::clients::CloudClients;
use super::error::ReconcileError;
use super::events::Events;
use super::passes::Passes;
use super::state::{
    DirectoryCache, NameResolver, PolicySelections, RamPreferenceCache, Registry, UserView,
};
use super::tenancy::{Identity, Route, Service, Tenancy};
use super::wake::{self, Waker, Woken};
use crate::api::{
    CloudSpec, DirectoryMfaPolicy, RamSecurityPreference, RamUserMfaSetting, UserMfaPolicy,
    UserMfaSetting,
};
use crate::cloud::{self, CloudSsoClient, Endpoint, ImsClient};
use crate::telemetry::Metrics;

/// Operator-wide settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub resync_interval: Duration,
    /// How often a user's device list is read (never more often than the resync).
    pub device_resync_interval: Duration,
    /// `--cloud-qps`, for the budget.
    pub cloud_qps: u32,
    /// Passes making cloud calls at once, per urgency.
    pub concurrency: usize,
}

/// What the operator keeps of the cloud, shared by every pass.
#[derive(Default)]
pub struct CloudState {
    pub directories: DirectoryCache,
    /// Every user read, shared by the UserMfaSetting reconciles and the census.
    pub users: Arc<UserView>,
    /// userName -> userId, dropped when the id stops resolving.
    pub names: NameResolver,
    /// The directories DirectoryMfaPolicies claim, and the users UserMfaSettings claim.
    pub directory_claims: Registry,
    pub user_claims: Registry,
    /// RAM accounts' security preferences, shared by their RamUserMfaSettings' Effective.
    pub ram_preferences: RamPreferenceCache,
    /// The RAM accounts RamSecurityPreferences claim, and the RAM users RamUserMfaSettings claim.
    pub ram_preference_claims: Registry,
    pub ram_user_claims: Registry,
    /// The users each UserMfaPolicy selected (who owns a user among policies).
    pub policy_selections: PolicySelections,
}

/// The queues of the kinds that other passes wake: policies wake each other (the Conflict rule)
/// and their users (Effective follows the directory); users wake each other (Conflict). The
/// RAM kinds do the same: preferences wake each other and their account's RAM users.
pub struct Wakers {
    pub policies: Waker<DirectoryMfaPolicy>,
    pub users: Waker<UserMfaSetting>,
    pub ram_preferences: Waker<RamSecurityPreference>,
    pub ram_users: Waker<RamUserMfaSetting>,
    /// UserMfaPolicies wake the younger ones over their directory (what they own moved).
    pub user_policies: Waker<UserMfaPolicy>,
}

pub struct Context {
    pub client: kube::Client,
    pub cloud: CloudClients,
    /// Which CloudAccounts admit which namespaces, and whose account a credential is.
    pub tenancy: Tenancy,
    pub settings: Settings,
    pub state: CloudState,
    pub budget: Budget,
    pub census: Census,
    pub events: Events,
    pub passes: Passes,
    pub wakers: Wakers,
    pub metrics: Arc<Metrics>,
}

/// What `Context::new` starts from besides its own parts: the stores of the kinds it wakes.
pub struct Stores {
    pub policies: Store<DeserializeGuard<DirectoryMfaPolicy>>,
    pub users: Store<DeserializeGuard<UserMfaSetting>>,
    pub ram_preferences: Store<DeserializeGuard<RamSecurityPreference>>,
    pub ram_users: Store<DeserializeGuard<RamUserMfaSetting>>,
    pub user_policies: Store<DeserializeGuard<UserMfaPolicy>>,
}

/// What the wakers feed: one queue per kind that others wake, for its controller.
pub struct Queues {
    pub policies: Woken<DirectoryMfaPolicy>,
    pub users: Woken<UserMfaSetting>,
    pub ram_preferences: Woken<RamSecurityPreference>,
    pub ram_users: Woken<RamUserMfaSetting>,
    pub user_policies: Woken<UserMfaPolicy>,
}

impl Context {
    /// The context, and the queues its wakers feed (for the controllers of the kinds they wake).
    pub fn new(
        client: kube::Client,
        cloud: CloudClients,
        settings: Settings,
        metrics: Arc<Metrics>,
        tenancy: Tenancy,
        stores: Stores,
    ) -> (Self, Queues) {
        let state = CloudState::default();
        let census = Census::new(metrics.clone(), state.users.clone());
        let budget = Budget::new(
            Limits {
                resync: settings.resync_interval,
                device_interval: settings.device_resync_interval,
                qps: f64::from(settings.cloud_qps),
            },
            metrics.clone(),
        );
        let passes = Passes::new(settings.concurrency);
        let (policies, woken_policies) = wake::channel(stores.policies, passes.marks.clone());
        let (users, woken_users) = wake::channel(stores.users, passes.marks.clone());
        let (ram_preferences, woken_ram_preferences) =
            wake::channel(stores.ram_preferences, passes.marks.clone());
        let (ram_users, woken_ram_users) = wake::channel(stores.ram_users, passes.marks.clone());
        let (user_policies, woken_user_policies) =
            wake::channel(stores.user_policies, passes.marks.clone());
        let context = Self {
            events: Events::new(client.clone()),
            client,
            cloud,
            tenancy,
            settings,
            state,
            budget,
            census,
            passes,
            wakers: Wakers {
                policies,
                users,
                ram_preferences,
                ram_users,
                user_policies,
            },
            metrics,
        };
        let queues = Queues {
            policies: woken_policies,
            users: woken_users,
            ram_preferences: woken_ram_preferences,
            ram_users: woken_ram_users,
            user_policies: woken_user_policies,
        };
        (context, queues)
    }

    /// Where `object`'s calls to `service` go and as whom (its own Secret, or a CloudAccount that
    /// admits it and `directory_id`), and the account the credentials belong to. A resource no
    /// account admits gets `AccountNotAllowed` before any cloud call.
    pub async fn route<K>(
        &self,
        object: &K,
        service: Service,
        directory_id: Option<&str>,
    ) -> Result<(Route, Identity), ReconcileError>
    where
        K: Resource + HasSpec<Spec: CloudSpec>,
    {
        let plan = self.tenancy.plan(object, directory_id)?;
        let (endpoint, sts_endpoint) = plan.endpoints(service)?;
        let source = self.cloud.source(&self.client, &plan.keys).await?;
        let sts = self.cloud.sts(sts_endpoint.clone(), source.clone());
        let account_id = self
            .tenancy
            .account_id(&source, &sts_endpoint, || async move {
                cloud::sts::get_caller_identity(&sts)
                    .await
                    .map(|identity| identity.account_id)
            })
            .await?;
        let identity = Identity {
            account_id,
            endpoint: endpoint.url(),
            cloud_account: plan.account.clone(),
        };
        let route = Route {
            endpoint,
            sts_endpoint,
            source,
            account: plan.account,
        };
        Ok((route, identity))
    }

    /// The CloudSSO client for `object`'s directory, and who it acts as.
    pub async fn cloudsso_of<K>(
        &self,
        object: &K,
        directory_id: &str,
    ) -> Result<(Endpoint, CloudSsoClient, Identity), ReconcileError>
    where
        K: Resource + HasSpec<Spec: CloudSpec>,
    {
        let (route, identity) = self
            .route(object, Service::CloudSso, Some(directory_id))
            .await?;
        let client = self.cloud.cloudsso(route.endpoint.clone(), route.source);
        Ok((route.endpoint, client, identity))
    }

    /// The RAM (IMS) client for `object`, and who it acts as.
    pub async fn ims_of<K>(&self, object: &K) -> Result<(ImsClient, Identity), ReconcileError>
    where
        K: Resource + HasSpec<Spec: CloudSpec>,
    {
        let (route, identity) = self.route(object, Service::Ims, None).await?;
        Ok((self.cloud.ims(route.endpoint, route.source), identity))
    }
}
