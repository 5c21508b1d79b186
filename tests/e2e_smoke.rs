//! Smoke test through the real API server: the CRDs install, a valid resource of each kind is
//! accepted and listed under `kubectl get cloudsso`, and invalid ones are rejected with the
//! schema's or CEL rule's message.

mod common;
mod harness;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

fn resource(kind: &str) -> ApiResource {
    let plural = match kind {
        "DirectoryMfaPolicy" => "directorymfapolicies",
        "UserMfaSetting" => "usermfasettings",
        "UserMfaPolicy" => "usermfapolicies",
        _ => "ramusermfastatuses",
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cloudsso.mfa-operator.dev", "v1alpha1", kind),
        plural,
    )
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "cloudsso.mfa-operator.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

async fn create(
    ctx: &harness::TestContext,
    kind: &str,
    name: &str,
    spec: Value,
) -> Result<DynamicObject, String> {
    let api: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &resource(kind));
    api.create(&PostParams::default(), &object(kind, name, spec))
        .await
        .map_err(|error| match error {
            kube::Error::Api(status) => format!("{} {}", status.code, status.message),
            other => other.to_string(),
        })
}

fn assert_rejected(result: Result<DynamicObject, String>, expected: &str) {
    match result {
        Ok(object) => panic!("accepted, expected a rejection with {expected:?}: {object:?}"),
        Err(message) => {
            assert!(
                message.starts_with("422"),
                "not a validation error: {message}"
            );
            assert!(
                message.contains(expected),
                "expected {expected:?} in: {message}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crds_accept_valid_and_reject_invalid_resources() {
    harness::with_namespace("smoke", |ctx| async move {
        assert!(ctx.cluster.server_version.starts_with("v1."), "{}", ctx.cluster.server_version);

        let policy = create(&ctx, "DirectoryMfaPolicy", "corp", json!({
            "directoryId": "d-00fc2p61abcd", "mfaAuthenticationSettings": "Byuser",
            "operationForRiskLogin": "EnforceVerify"
        })).await.expect("valid DirectoryMfaPolicy");
        // Defaults come from the schema; region has none (it is only allowed beside
        // credentialsSecretRef, and an account's region applies otherwise).
        assert!(policy.data["spec"]["region"].is_null());
        assert_eq!(policy.data["spec"]["managementPolicy"], "Enforce");
        assert_eq!(policy.data["spec"]["deletionPolicy"], "Orphan");
        create(&ctx, "UserMfaSetting", "alice", json!({
            "directoryId": "d-00fc2p61abcd", "userName": "alice", "userMfaAuthenticationSettings": "Enabled"
        })).await.expect("valid UserMfaSetting by name");
        create(&ctx, "UserMfaSetting", "bob", json!({
            "directoryId": "d-00fc2p61abcd", "userId": "u-00q8wbq42wiltcrk0002",
            "userMfaAuthenticationSettings": "Disabled", "managementPolicy": "Observe",
            "endpoint": "http://127.0.0.1:8600", "credentialsSecretRef": {"name": "cloud-keys"}
        })).await.expect("valid UserMfaSetting by id");
        create(&ctx, "RamUserMfaStatus", "bob-ram", json!({"userPrincipalName": "bob@example.onaliyun.com"}))
            .await.expect("valid RamUserMfaStatus");

        let (ok, table, stderr) = ctx.kubectl(&["get", "cloudsso"]).await;
        assert!(ok, "{stderr}");
        for name in ["directorymfapolicy.cloudsso.mfa-operator.dev/corp", "usermfasetting.cloudsso.mfa-operator.dev/alice", "ramusermfastatus.cloudsso.mfa-operator.dev/bob-ram"] {
            assert!(table.contains(name), "{name} missing from `kubectl get cloudsso`:\n{table}");
        }
        let (ok, table, _) = ctx.kubectl(&["get", "umfa"]).await;
        assert!(ok && table.contains("DEVICES") && table.contains("EFFECTIVE"), "{table}");

        // Rejections, each with the schema's or the CEL rule's own message.
        assert_rejected(create(&ctx, "DirectoryMfaPolicy", "bad-enum", json!({
            "directoryId": "d-abc", "mfaAuthenticationSettings": "Sometimes"
        })).await, "supported values: \"Enabled\", \"Byuser\", \"Disabled\", \"OnlyRiskyLogin\"");
        assert_rejected(create(&ctx, "DirectoryMfaPolicy", "no-directory", json!({
            "mfaAuthenticationSettings": "Enabled"
        })).await, "spec.directoryId: Required value");
        assert_rejected(create(&ctx, "UserMfaSetting", "both", json!({
            "directoryId": "d-abc", "userId": "u-1", "userName": "alice", "userMfaAuthenticationSettings": "Enabled"
        })).await, "exactly one of userId or userName must be set");
        assert_rejected(create(&ctx, "UserMfaSetting", "neither", json!({
            "directoryId": "d-abc", "userMfaAuthenticationSettings": "Enabled"
        })).await, "exactly one of userId or userName must be set");
        assert_rejected(create(&ctx, "DirectoryMfaPolicy", "risk-with-enabled", json!({
            "directoryId": "d-abc", "mfaAuthenticationSettings": "Enabled", "operationForRiskLogin": "Autonomous"
        })).await, "operationForRiskLogin is only valid when mfaAuthenticationSettings is Byuser or OnlyRiskyLogin");
        assert_rejected(create(&ctx, "DirectoryMfaPolicy", "bad-id", json!({
            "directoryId": "dir-1", "mfaAuthenticationSettings": "Enabled"
        })).await, "directoryId must be 'd-' followed by lowercase letters and digits");
        assert_rejected(create(&ctx, "UserMfaSetting", "bad-user-id", json!({
            "directoryId": "d-abc", "userId": "U-ABC", "userMfaAuthenticationSettings": "Enabled"
        })).await, "userId must be 'u-' followed by lowercase letters and digits");
        assert_rejected(create(&ctx, "UserMfaSetting", "bad-mode", json!({
            "directoryId": "d-abc", "userId": "u-abc", "userMfaAuthenticationSettings": "Enabled", "managementPolicy": "Sometimes"
        })).await, "supported values: \"Enforce\", \"Observe\"");

        // directoryId is immutable.
        let api: kube::Api<DynamicObject> =
            kube::Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &resource("DirectoryMfaPolicy"));
        let changed = api
            .patch("corp", &PatchParams::default(), &Patch::Merge(json!({"spec": {"directoryId": "d-other"}})))
            .await
            .expect_err("a changed directoryId must be rejected");
        let message = changed.to_string();
        assert!(message.contains("directoryId is immutable"), "{message}");
        // Other fields stay mutable.
        api.patch("corp", &PatchParams::default(), &Patch::Merge(json!({"spec": {"mfaAuthenticationSettings": "OnlyRiskyLogin"}})))
            .await
            .expect("changing the setting is allowed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_mfa_policies_accept_each_selector_and_reject_what_cannot_work() {
    harness::with_namespace("smoke-policy", |ctx| async move {
        let spec = |users: Value, more: Value| {
            let mut spec = json!({"directoryId": "d-00fc2p61abcd", "users": users,
                "userMfaAuthenticationSettings": "Enabled"});
            spec.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
            spec
        };
        let selectors = [
            json!({"all": true}),
            json!({"groupNames": ["eng", "ops"]}),
            json!({"userNamePrefix": "svc-"}),
            json!({"userNames": ["alice", "bob"]}),
        ];
        for (i, users) in selectors.into_iter().enumerate() {
            let created = create(&ctx, "UserMfaPolicy", &format!("ok-{i}"), spec(users, json!({
                "exemptions": [{"userName": "break-glass", "reason": "emergency", "expires": "2027-03-31T23:59:59Z"},
                               {"userId": "u-00q8wbq42wiltcrk0009", "reason": "service account"}]})))
                .await
                .expect("a valid UserMfaPolicy");
            assert_eq!(created.data["spec"]["managementPolicy"], "Enforce");
        }
        let (ok, table, stderr) = ctx.kubectl(&["get", "ump"]).await;
        assert!(ok && table.contains("MATCHED") && table.contains("FAILING") && table.contains("EXEMPT"), "{table}{stderr}");
        let (ok, all, _) = ctx.kubectl(&["get", "cloudsso"]).await;
        assert!(ok && all.contains("usermfapolicy.cloudsso.mfa-operator.dev/ok-0"), "{all}");

        let two = spec(json!({"all": true, "userNamePrefix": "a"}), json!({}));
        assert_rejected(create(&ctx, "UserMfaPolicy", "two", two).await,
            "users must set exactly one of all, groupNames, userNamePrefix or userNames");
        let none = spec(json!({}), json!({}));
        assert_rejected(create(&ctx, "UserMfaPolicy", "none", none).await,
            "users must set exactly one of all, groupNames, userNamePrefix or userNames");
        let all_false = spec(json!({"all": false}), json!({}));
        assert_rejected(create(&ctx, "UserMfaPolicy", "all-false", all_false).await, "users.all must be true when set");
        let no_reason = spec(json!({"all": true}), json!({"exemptions": [{"userName": "x"}]}));
        assert_rejected(create(&ctx, "UserMfaPolicy", "no-reason", no_reason).await, "reason: Required value");
        let both = spec(json!({"all": true}), json!({"exemptions": [{"userName": "x", "userId": "u-1", "reason": "r"}]}));
        assert_rejected(create(&ctx, "UserMfaPolicy", "both", both).await,
            "an exemption names exactly one of userName or userId");
        let bad_time = spec(json!({"all": true}), json!({"exemptions": [{"userName": "x", "reason": "r", "expires": "next week"}]}));
        assert_rejected(create(&ctx, "UserMfaPolicy", "bad-time", bad_time).await, "expires must be an RFC 3339 time");
        let device_off = json!({"directoryId": "d-abc", "users": {"all": true},
            "userMfaAuthenticationSettings": "Disabled", "requireBoundDevice": true});
        assert_rejected(create(&ctx, "UserMfaPolicy", "device-off", device_off).await,
            "requireBoundDevice may be true only with userMfaAuthenticationSettings Enabled");
        let empty_group = spec(json!({"groupNames": [""]}), json!({}));
        assert_rejected(create(&ctx, "UserMfaPolicy", "empty-group", empty_group).await, "groupNames[0]");
        let endpoint = spec(json!({"all": true}), json!({"endpoint": "http://evil.example:80"}));
        assert_rejected(create(&ctx, "UserMfaPolicy", "endpoint", endpoint).await,
            "endpoint and region are allowed only together with credentialsSecretRef");
    })
    .await;
}
