//! PolicyReports (wgpolicyk8s.io/v1alpha2): a policy's per-user results, published where Policy
//! Reporter, Kyverno's UI and `kubectl get polr` already look. One policy's results are split over
//! as many reports as keep each under `MAX_REPORT_BYTES`, named `<policy>`, `<policy>-2`, ...;
//! an unchanged report is not rewritten (its fingerprint annotation says so), reports the policy
//! no longer needs are deleted, and a cluster without the CRD is no error.
//!
//! Summaries: Policy Reporter adds the summaries of all reports up, so they must not repeat. Each
//! continuation report counts its own results; the first holds the rest of the caller's summary
//! (its own results, and whatever the caller counted without listing, such as passes). The
//! reports' summaries therefore add up to the caller's summary whenever that counts at least the
//! results it passes.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};

use super::keys::MANAGER;

mod result;

pub use result::{Outcome, PolicyResult, Severity, Summary};

pub const GROUP: &str = "wgpolicyk8s.io";
pub const VERSION: &str = "v1alpha2";
pub const KIND: &str = "PolicyReport";
pub const PLURAL: &str = "policyreports";

/// Every report carries it, so a label selector finds the operator's reports.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Which policy a report belongs to (its name, shortened when longer than a label value may be).
pub const POLICY_LABEL: &str = "cloudsso.mfa-operator.dev/policy";
/// SHA-256 of the report as applied: equal means there is nothing to write.
pub const FINGERPRINT_ANNOTATION: &str = "cloudsso.mfa-operator.dev/report-fingerprint";

/// The largest report JSON written: well under etcd's 1.5 MiB request limit and the 1 MiB a
/// report must stay under, with room for the metadata the API server adds. A quarter of a MiB
/// and not more: writing a report holds it a few times over (its JSON, the request, the answer),
/// and at 900 KiB that was 3.5 of the 13 MiB a policy over 10,000 users took (measured with
/// hack/bench-scale.sh policy); ~800 results a report, so 50,000 failing users make ~64.
pub const MAX_REPORT_BYTES: usize = 256 * 1024;

const MAX_LABEL_VALUE: usize = 63;
const MAX_NAME: usize = 253;
/// Hex digits of the SHA-256 that stand in for the cut part of a long name.
const HASH_DIGITS: usize = 12;

/// Who the reports belong to: they are in its namespace, owned by it (ownerReference,
/// controller=true, so they are garbage collected with it) and labelled with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// The policy now has `reports` reports (written this time or already current).
    Written { reports: usize },
    /// The API server does not serve PolicyReports: nothing was written.
    CrdAbsent,
}

/// PolicyReport's place in the API, for the dynamic client.
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: KIND.into(),
        plural: PLURAL.into(),
    }
}

/// The first `HASH_DIGITS` hex digits of `value`'s SHA-256.
fn short_hash(value: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    hex::encode(digest.as_ref())[..HASH_DIGITS].to_string()
}

/// `value` cut to at most `max` bytes on a character boundary, without a trailing `-` or `.`
/// (label values and names must end alphanumeric).
fn cut(value: &str, max: usize) -> &str {
    let mut end = max.min(value.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
}

/// `value` when it fits in `max` bytes, else its head and a hash of the whole (distinct long
/// values stay distinct; the same value always gives the same result).
fn fit(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_string();
    }
    format!(
        "{}-{}",
        cut(value, max - HASH_DIGITS - 1),
        short_hash(value)
    )
}

/// The policy label's value for `name`: the name itself when it is a valid label value.
pub fn label_value(name: &str) -> String {
    fit(name, MAX_LABEL_VALUE)
}

/// The name of report `index` (from 0) of the policy `name`: `name`, then `name-2`, `name-3`, ...
pub fn report_name(name: &str, index: usize) -> String {
    if index == 0 {
        return fit(name, MAX_NAME);
    }
    let suffix = format!("-{}", index.saturating_add(1));
    format!("{}{suffix}", fit(name, MAX_NAME - suffix.len()))
}

/// The ranges of `sizes` that go together: in order, each adding up to at most `budget` (a
/// single item larger than that goes alone), and always at least one range.
fn split(sizes: &[usize], budget: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (index, size) in sizes.iter().enumerate() {
        if index > start && used + size > budget {
            ranges.push(start..index);
            (start, used) = (index, 0);
        }
        used += size;
    }
    ranges.push(start..sizes.len());
    ranges
}

/// Each report's summary: the continuations count their own results, the first the rest.
fn summaries(total: Summary, outcomes: &[Outcome], ranges: &[Range<usize>]) -> Vec<Summary> {
    let mut summaries: Vec<Summary> = ranges
        .iter()
        .map(|range| Summary::of_outcomes(outcomes[range.clone()].iter().copied()))
        .collect();
    let continued = summaries[1..]
        .iter()
        .fold(Summary::default(), |sum, each| sum.add(*each));
    summaries[0] = total.saturating_sub(continued);
    summaries
}

/// One report to write: its name, the fingerprint of its content and the object to apply.
#[cfg(test)]
#[derive(Clone, Debug)]
struct PlannedReport {
    name: String,
    fingerprint: String,
    body: Value,
}

/// A report object, typed so that it serializes straight to bytes: a `serde_json::Value` of a
/// 900 KiB report takes ten times that.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportBody<'a> {
    api_version: String,
    kind: &'static str,
    metadata: Value,
    /// What `kubectl get polr` shows in its Kind and Name columns.
    scope: Value,
    summary: Summary,
    results: Results<'a>,
}

/// The results of one report; `timeless`: without their timestamps (for the fingerprint).
#[derive(Debug)]
struct Results<'a> {
    results: &'a [PolicyResult],
    timeless: bool,
}

impl Serialize for Results<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = serializer.serialize_seq(Some(self.results.len()))?;
        for result in self.results {
            if self.timeless {
                // One small result at a time: its wire form, less the time.
                let mut item = serde_json::to_value(result).map_err(S::Error::custom)?;
                if let Some(item) = item.as_object_mut() {
                    item.remove("timestamp");
                }
                seq.serialize_element(&item)?;
            } else {
                seq.serialize_element(result)?;
            }
        }
        seq.end()
    }
}

/// A report of `owner`, without the fingerprint annotation (the fingerprint is of this).
fn report_body<'a>(
    owner: &Owner,
    name: &str,
    summary: Summary,
    results: &'a [PolicyResult],
) -> ReportBody<'a> {
    ReportBody {
        api_version: format!("{GROUP}/{VERSION}"),
        kind: KIND,
        metadata: json!({
            "name": name,
            "namespace": owner.namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGER,
                POLICY_LABEL: label_value(&owner.name),
            },
            // No blockOwnerDeletion: setting it needs rights on the owner's finalizers where
            // the OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift).
            "ownerReferences": [{
                "apiVersion": owner.api_version,
                "kind": owner.kind,
                "name": owner.name,
                "uid": owner.uid,
                "controller": true,
            }],
        }),
        scope: json!({
            "apiVersion": owner.api_version,
            "kind": owner.kind,
            "name": owner.name,
            "namespace": owner.namespace,
            "uid": owner.uid,
        }),
        summary,
        results: Results {
            results,
            timeless: false,
        },
    }
}

/// Stamps `body` with the fingerprint of its content but the results' timestamps: a pass that
/// finds every user as the last one did rewrites nothing (its results keep the time they were
/// first reported so), and one changed result rewrites only its report. Returns the
/// fingerprint; `body` then carries it in its annotation.
fn stamp(body: &mut ReportBody<'_>) -> Result<String, serde_json::Error> {
    body.results.timeless = true;
    let bytes = serde_json::to_vec(&*body)?;
    body.results.timeless = false;
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let fingerprint = hex::encode(digest.as_ref());
    body.metadata["annotations"] = json!({ FINGERPRINT_ANNOTATION: fingerprint });
    Ok(fingerprint)
}

/// `body` stamped, as a whole object (the tests look at reports as JSON).
#[cfg(test)]
fn planned(name: String, mut body: ReportBody<'_>) -> Result<PlannedReport, serde_json::Error> {
    let fingerprint = stamp(&mut body)?;
    Ok(PlannedReport {
        name,
        fingerprint,
        body: serde_json::to_value(&body)?,
    })
}

/// One report of a policy: its name, which of the results it holds, its summary.
struct Layout {
    name: String,
    range: Range<usize>,
    summary: Summary,
}

/// How `results` (in order) split so that no report's JSON passes `MAX_REPORT_BYTES`: one look
/// at each result for its size and outcome, none kept.
fn layout(
    owner: &Owner,
    total: Summary,
    results: impl Iterator<Item = PolicyResult>,
) -> Result<Vec<Layout>, serde_json::Error> {
    let (mut sizes, mut outcomes) = (Vec::new(), Vec::new());
    for result in results {
        // Its JSON and the comma before the next.
        sizes.push(serde_json::to_vec(&result)?.len() + 1);
        outcomes.push(result.result);
    }
    // The report around the results, at its largest: the longest name (there are at most as
    // many continuations as results), the widest counts.
    let widest = Summary {
        pass: u64::MAX,
        fail: u64::MAX,
        warn: u64::MAX,
        error: u64::MAX,
        skip: u64::MAX,
    };
    let longest = report_name(&owner.name, sizes.len());
    let mut envelope = report_body(owner, &longest, widest, &[]);
    stamp(&mut envelope)?;
    let budget = MAX_REPORT_BYTES.saturating_sub(serde_json::to_vec(&envelope)?.len());
    let ranges = split(&sizes, budget);
    let summaries = summaries(total, &outcomes, &ranges);
    Ok(ranges
        .into_iter()
        .zip(summaries)
        .enumerate()
        .map(|(index, (range, summary))| Layout {
            name: report_name(&owner.name, index),
            range,
            summary,
        })
        .collect())
}

/// The reports of one policy, built at once (the tests look at them whole).
#[cfg(test)]
fn plan(
    owner: &Owner,
    total: Summary,
    results: &[PolicyResult],
) -> Result<Vec<PlannedReport>, serde_json::Error> {
    layout(owner, total, results.iter().cloned())?
        .into_iter()
        .map(|report| {
            let body = report_body(owner, &report.name, report.summary, &results[report.range]);
            planned(report.name, body)
        })
        .collect()
}

/// A 404 that says the resource type is missing (no PolicyReport CRD), not a named object: the
/// API server answers a missing group with a plain-text 404, a missing resource with a Status
/// that names nothing.
fn type_absent(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status)
        if status.code == 404
            && status.details.as_ref().is_none_or(|details| details.name.is_empty()))
}

/// The fingerprints of the reports this owner has now, by name (read as metadata only, so a big
/// policy's results are not downloaded every pass).
async fn existing(
    api: &Api<DynamicObject>,
    owner: &Owner,
) -> Result<BTreeMap<String, Option<String>>, kube::Error> {
    let selector = format!(
        "{MANAGED_BY_LABEL}={MANAGER},{POLICY_LABEL}={}",
        label_value(&owner.name)
    );
    let listed = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await?;
    Ok(listed
        .items
        .into_iter()
        // A shortened label may be shared, and a report of an owner since deleted and recreated
        // under the same name belongs to the garbage collector.
        .filter(|report| {
            let owners = report
                .metadata
                .owner_references
                .as_deref()
                .unwrap_or_default();
            owners.iter().any(|reference| reference.uid == owner.uid)
        })
        .filter_map(|report| {
            let fingerprint = report
                .metadata
                .annotations
                .and_then(|mut annotations| annotations.remove(FINGERPRINT_ANNOTATION));
            report.metadata.name.map(|name| (name, fingerprint))
        })
        .collect())
}

/// Applies one report. The answer (the whole object again) is read as text and dropped: as a
/// `DynamicObject` a 900 KiB report's answer would take ten times that in memory.
async fn apply_report(
    client: &kube::Client,
    owner: &Owner,
    name: &str,
    params: &PatchParams,
    body: &ReportBody<'_>,
) -> Result<(), kube::Error> {
    use kube::Resource;
    let path = DynamicObject::url_path(&api_resource(), Some(&owner.namespace));
    let request = kube::core::Request::new(path)
        .patch(name, params, &Patch::Apply(body))
        .map_err(kube::Error::BuildRequest)?;
    client.request_text(request).await.map(drop)
}

/// Writes the policy's reports: `summary` spread as the module says, `results` in the order
/// given, split over as many reports as needed, each applied (server-side, forced, as `MANAGER`)
/// only when its content changed; the owner's other reports are deleted. A missing CRD is
/// `Ok(CrdAbsent)`.
pub async fn publish(
    client: &kube::Client,
    owner: &Owner,
    summary: Summary,
    results: Vec<PolicyResult>,
) -> Result<Published, kube::Error> {
    publish_with(client, owner, summary, || results.iter().cloned()).await
}

/// `publish`, with the results made by `results` each time they are needed (twice: once to
/// lay the reports out, once to write them, one report at a time), so that a policy with
/// 50,000 failing users never holds all their results, nor more than one report's JSON.
pub async fn publish_with<F, I>(
    client: &kube::Client,
    owner: &Owner,
    summary: Summary,
    results: F,
) -> Result<Published, kube::Error>
where
    F: Fn() -> I + Send + Sync,
    I: Iterator<Item = PolicyResult> + Send,
{
    let layout = layout(owner, summary, results()).map_err(kube::Error::SerdeError)?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &owner.namespace, &api_resource());
    let existing = match existing(&api, owner).await {
        Err(error) if type_absent(&error) => return Ok(Published::CrdAbsent),
        other => other?,
    };
    let apply = PatchParams::apply(MANAGER).force();
    let mut items = results();
    for report in &layout {
        let chunk: Vec<PolicyResult> = items.by_ref().take(report.range.len()).collect();
        let mut body = report_body(owner, &report.name, report.summary, &chunk);
        let fingerprint = stamp(&mut body).map_err(kube::Error::SerdeError)?;
        if existing.get(&report.name).and_then(Option::as_deref) == Some(fingerprint.as_str()) {
            continue;
        }
        match apply_report(client, owner, &report.name, &apply, &body).await {
            Err(error) if type_absent(&error) => return Ok(Published::CrdAbsent),
            other => other?,
        };
    }
    let written: BTreeSet<&str> = layout.iter().map(|report| report.name.as_str()).collect();
    for stale in existing
        .keys()
        .filter(|name| !written.contains(name.as_str()))
    {
        match api.delete(stale, &DeleteParams::default()).await {
            // Gone already (or with the CRD): nothing left to delete.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            other => {
                other?;
            }
        }
    }
    Ok(Published::Written {
        reports: layout.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;

    fn results_of(body: &Value) -> Vec<PolicyResult> {
        serde_json::from_value(body["results"].clone()).unwrap()
    }

    fn summary_of(body: &Value) -> Summary {
        serde_json::from_value(body["summary"].clone()).unwrap()
    }

    #[test]
    fn ten_thousand_long_results_split_under_the_limit_in_order() {
        let results: Vec<PolicyResult> = (0..10_000).map(|index| result(index, 300)).collect();
        // The caller also counts 5,000 passes it does not list.
        let total = Summary::of(&results).add(Summary {
            pass: 5_000,
            ..Summary::default()
        });
        let reports = plan(&owner("all-users"), total, &results).unwrap();
        assert!(reports.len() >= 4, "{} reports", reports.len());
        let mut kept = Vec::new();
        let mut summed = Summary::default();
        for (index, report) in reports.iter().enumerate() {
            let size = serde_json::to_vec(&report.body).unwrap().len();
            assert!(size <= MAX_REPORT_BYTES, "report {index}: {size} bytes");
            // Not wastefully small either: all but the last are at least nine tenths full.
            if index + 1 < reports.len() {
                assert!(
                    size > MAX_REPORT_BYTES * 9 / 10,
                    "report {index}: {size} bytes"
                );
            }
            assert_eq!(report.name, report_name("all-users", index));
            assert_eq!(report.body["metadata"]["name"], report.name.as_str());
            let own = results_of(&report.body);
            if index > 0 {
                assert_eq!(
                    summary_of(&report.body),
                    Summary::of(&own),
                    "report {index}"
                );
            }
            summed = summed.add(summary_of(&report.body));
            kept.extend(own);
        }
        assert_eq!(kept, results);
        assert_eq!(summed, total);
        assert!(summary_of(&reports[0].body).pass >= 5_000);
    }

    #[test]
    fn few_or_no_results_make_one_report_with_the_whole_summary() {
        let total = Summary {
            pass: 7,
            fail: 1,
            ..Summary::default()
        };
        let reports = plan(&owner("p"), total, &[result(1, 10)]).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(summary_of(&reports[0].body), total);
        let empty = plan(&owner("p"), Summary::default(), &[]).unwrap();
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].body["results"], json!([]));
        assert_eq!(empty[0].name, "p");
    }

    #[test]
    fn split_keeps_order_and_puts_an_oversized_item_alone() {
        assert_eq!(split(&[], 10), vec![0..0]);
        assert_eq!(split(&[4, 4, 4, 4], 10), vec![0..2, 2..4]);
        assert_eq!(split(&[4, 20, 4], 10), vec![0..1, 1..2, 2..3]);
        assert_eq!(split(&[5, 5, 5], 10), vec![0..2, 2..3]);
    }

    #[test]
    fn names_continue_with_a_number_and_stay_valid_when_long() {
        assert_eq!(report_name("all-users", 0), "all-users");
        assert_eq!(report_name("all-users", 1), "all-users-2");
        assert_eq!(report_name("all-users", 11), "all-users-12");
        let long = format!("a{}", "-b".repeat(126)); // 253 characters, a valid name
        let names: BTreeSet<String> = (0..20).map(|index| report_name(&long, index)).collect();
        assert_eq!(names.len(), 20);
        for name in &names {
            assert!(name.len() <= MAX_NAME, "{name}");
            assert!(
                name.ends_with(|c: char| c.is_ascii_alphanumeric()),
                "{name}"
            );
        }
        assert_eq!(report_name(&long, 0), long);
        assert_eq!(report_name(&long, 3), report_name(&long, 3));
    }

    #[test]
    fn long_policy_names_become_valid_distinct_label_values() {
        assert_eq!(label_value("all-users"), "all-users");
        let exact = "a".repeat(63);
        assert_eq!(label_value(&exact), exact);
        let long = format!("{}.{}", "x".repeat(49), "y".repeat(40));
        let other = format!("{}.{}", "x".repeat(49), "z".repeat(40));
        let value = label_value(&long);
        assert!(value.len() <= MAX_LABEL_VALUE, "{value}");
        assert!(value.starts_with(&"x".repeat(49)), "{value}");
        assert!(
            value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{value}"
        );
        assert!(
            value.ends_with(|c: char| c.is_ascii_alphanumeric()),
            "{value}"
        );
        assert_eq!(label_value(&long), value);
        assert_ne!(label_value(&other), value);
    }

    #[test]
    fn a_result_serializes_in_the_v1alpha2_shape() {
        let mut one = result(1, 0);
        one.timestamp = jiff::Timestamp::new(1_764_000_000, 250_000_000).unwrap();
        let json = serde_json::to_value(&one).unwrap();
        assert_eq!(
            json,
            json!({
                "policy": "all-users",
                "rule": "bound-device",
                "result": "fail",
                "severity": "high",
                "message": "user 1 ",
                "properties": {"userId": "u-00000001", "userName": "user1@example.com"},
                "timestamp": {"seconds": 1_764_000_000, "nanos": 250_000_000},
                "source": "cloudsso-mfa-operator",
                "scored": true,
            })
        );
        assert_eq!(serde_json::from_value::<PolicyResult>(json).unwrap(), one);
        one.severity = None;
        assert!(
            serde_json::to_value(&one)
                .unwrap()
                .get("severity")
                .is_none()
        );
    }

    #[test]
    fn timestamps_before_the_epoch_keep_nanos_non_negative() {
        let mut one = result(0, 0);
        one.timestamp = jiff::Timestamp::from_nanosecond(-1_500_000_000).unwrap();
        let json = serde_json::to_value(&one).unwrap();
        assert_eq!(
            json["timestamp"],
            json!({"seconds": -2, "nanos": 500_000_000})
        );
        assert_eq!(serde_json::from_value::<PolicyResult>(json).unwrap(), one);
    }

    /// The CRD's schema at `path` (object properties all the way down).
    fn schema_keys<'a>(schema: &'a serde_yaml::Value, path: &[&str]) -> BTreeSet<&'a str> {
        let mut node = schema;
        for step in path {
            node = &node[*step];
        }
        node["properties"]
            .as_mapping()
            .unwrap_or_else(|| panic!("no properties at {path:?}"))
            .keys()
            .filter_map(|key| key.as_str())
            .collect()
    }

    #[test]
    fn reports_use_only_fields_the_crd_declares() {
        let crd: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../../tests/crds/policyreport.yaml")).unwrap();
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"].as_str(), Some(VERSION));
        assert_eq!(crd["spec"]["group"].as_str(), Some(GROUP));
        assert_eq!(crd["spec"]["names"]["plural"].as_str(), Some(PLURAL));
        let schema = &version["schema"]["openAPIV3Schema"];
        let reports = plan(&owner("p"), Summary::default(), &[result(1, 5)]).unwrap();
        let body = &reports[0].body;
        let declared = |path: &[&str]| schema_keys(schema, path);
        let emitted = |value: &Value| -> BTreeSet<String> {
            value.as_object().unwrap().keys().cloned().collect()
        };
        let subset = |emitted: BTreeSet<String>, declared: BTreeSet<&str>| {
            assert!(
                emitted.iter().all(|key| declared.contains(key.as_str())),
                "{emitted:?} {declared:?}"
            );
        };
        subset(emitted(body), declared(&[]));
        subset(
            emitted(&body["summary"]),
            declared(&["properties", "summary"]),
        );
        subset(emitted(&body["scope"]), declared(&["properties", "scope"]));
        let item = &body["results"][0];
        subset(emitted(item), declared(&["properties", "results", "items"]));
        let time = declared(&["properties", "results", "items", "properties", "timestamp"]);
        assert_eq!(time, BTreeSet::from(["nanos", "seconds"]));
        assert_eq!(
            emitted(&item["timestamp"]),
            BTreeSet::from(["nanos".into(), "seconds".into()])
        );
        for key in [
            "policy",
            "rule",
            "result",
            "severity",
            "message",
            "properties",
            "timestamp",
            "source",
            "scored",
        ] {
            assert!(item.get(key).is_some(), "{key} missing");
        }
    }

    #[test]
    fn reports_are_labelled_owned_and_fingerprinted_deterministically() {
        let results: Vec<PolicyResult> = (0..10).map(|index| result(index, 5)).collect();
        let first = plan(&owner("p"), Summary::of(&results), &results).unwrap();
        let again = plan(&owner("p"), Summary::of(&results), &results).unwrap();
        assert_eq!(first[0].fingerprint, again[0].fingerprint);
        let metadata = &first[0].body["metadata"];
        assert_eq!(metadata["labels"][MANAGED_BY_LABEL], MANAGER);
        assert_eq!(metadata["labels"][POLICY_LABEL], "p");
        assert_eq!(
            metadata["annotations"][FINGERPRINT_ANNOTATION],
            first[0].fingerprint.as_str()
        );
        assert_eq!(
            metadata["ownerReferences"][0]["uid"],
            owner("p").uid.as_str()
        );
        assert_eq!(metadata["ownerReferences"][0]["controller"], true);
        let mut changed = results.clone();
        changed[3].message.push('!');
        let other = plan(&owner("p"), Summary::of(&changed), &changed).unwrap();
        assert_ne!(other[0].fingerprint, first[0].fingerprint);
    }
}

/// `publish` against an in-process API (kube's Client on a tower service): what it calls, not
/// only what it builds.
#[cfg(test)]
mod publish_tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use parking_lot::Mutex;

    use super::tests_support::*;
    use super::*;

    /// The reports the fake holds by name, every call as `METHOD name`, and whether the CRD is
    /// installed.
    #[derive(Default)]
    struct Fake {
        reports: BTreeMap<String, Value>,
        calls: Vec<String>,
        absent: bool,
    }

    fn answer(fake: &mut Fake, method: &str, path: &str, body: &[u8]) -> (StatusCode, String) {
        if fake.absent {
            return (StatusCode::NOT_FOUND, "404 page not found".into());
        }
        let name = path
            .rsplit_once("/policyreports")
            .map(|(_, rest)| rest.trim_start_matches('/'));
        let name = name.unwrap_or_default().to_string();
        fake.calls
            .push(format!("{method} {name}").trim().to_string());
        match (method, name.is_empty()) {
            ("GET", true) => {
                let items: Vec<Value> = fake
                    .reports
                    .values()
                    .map(|report| json!({"metadata": report["metadata"]}))
                    .collect();
                let list = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                    "metadata": {}, "items": items});
                (StatusCode::OK, list.to_string())
            }
            ("PATCH", false) => {
                let report: Value = serde_json::from_slice(body).unwrap_or_default();
                fake.reports.insert(name, report.clone());
                (StatusCode::OK, report.to_string())
            }
            ("DELETE", false) => match fake.reports.remove(&name) {
                Some(_) => (
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1",
                    "status": "Success", "code": 200})
                    .to_string(),
                ),
                None => (
                    StatusCode::NOT_FOUND,
                    json!({"kind": "Status", "apiVersion": "v1",
                    "status": "Failure", "reason": "NotFound", "code": 404,
                    "details": {"name": name, "kind": PLURAL}})
                    .to_string(),
                ),
            },
            _ => (StatusCode::METHOD_NOT_ALLOWED, "{}".into()),
        }
    }

    fn client() -> (kube::Client, Arc<Mutex<Fake>>) {
        let shared: Arc<Mutex<Fake>> = Arc::default();
        let fake = shared.clone();
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let fake = fake.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let (status, text) = answer(
                    &mut fake.lock(),
                    parts.method.as_str(),
                    parts.uri.path(),
                    &body,
                );
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(text)))
                    .expect("a response");
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        (kube::Client::new(service, "default"), shared)
    }

    fn results(count: usize) -> Vec<PolicyResult> {
        (0..count).map(|index| result(index, 300)).collect()
    }

    #[tokio::test]
    async fn without_the_crd_nothing_is_written_and_nothing_fails() {
        let (client, fake) = client();
        fake.lock().absent = true;
        let published = publish(&client, &owner("p"), Summary::default(), results(3)).await;
        assert_eq!(published.unwrap(), Published::CrdAbsent);
    }

    #[tokio::test]
    async fn unchanged_reports_are_not_rewritten_and_extra_ones_are_deleted() {
        let (client, fake) = client();
        let many = results(10_000);
        let published = publish(&client, &owner("p"), Summary::of(&many), many.clone()).await;
        let Ok(Published::Written { reports }) = published else {
            panic!("{published:?}")
        };
        assert!(reports >= 4, "{reports}");
        assert_eq!(fake.lock().reports.len(), reports);
        assert_eq!(
            fake.lock()
                .calls
                .iter()
                .filter(|call| call.starts_with("PATCH"))
                .count(),
            reports
        );

        // The same content again: one list, no write.
        fake.lock().calls.clear();
        let again = publish(&client, &owner("p"), Summary::of(&many), many)
            .await
            .unwrap();
        assert_eq!(again, Published::Written { reports });
        assert_eq!(fake.lock().calls, vec!["GET".to_string()]);

        // Fewer results: the first report rewritten, the others deleted.
        fake.lock().calls.clear();
        let few = results(2);
        let fewer = publish(&client, &owner("p"), Summary::of(&few), few)
            .await
            .unwrap();
        assert_eq!(fewer, Published::Written { reports: 1 });
        let mut expected = vec!["GET".to_string(), "PATCH p".to_string()];
        expected.extend((1..reports).map(|index| format!("DELETE {}", report_name("p", index))));
        // The deletions go in name order (p-10 before p-2): compared as sets.
        let mut calls = fake.lock().calls.clone();
        calls[2..].sort();
        expected[2..].sort();
        assert_eq!(calls, expected);
        assert_eq!(fake.lock().reports.keys().collect::<Vec<_>>(), vec!["p"]);
    }

    #[tokio::test]
    async fn reports_of_another_owner_are_left_alone() {
        let (client, fake) = client();
        let mut previous = owner("p");
        previous.uid = "an-owner-since-deleted".into();
        let many = results(10_000);
        publish(&client, &previous, Summary::of(&many), many)
            .await
            .unwrap();
        let before = fake.lock().reports.len();
        fake.lock().calls.clear();
        let published = publish(&client, &owner("p"), Summary::default(), vec![])
            .await
            .unwrap();
        assert_eq!(published, Published::Written { reports: 1 });
        // `p` itself is taken over by the apply; the garbage collector removes the rest.
        assert_eq!(
            fake.lock().calls,
            vec!["GET".to_string(), "PATCH p".to_string()]
        );
        assert_eq!(fake.lock().reports.len(), before);
    }
}

/// What both test modules build on.
#[cfg(test)]
mod tests_support {
    use super::*;

    pub fn owner(name: &str) -> Owner {
        Owner {
            api_version: "cloudsso.mfa-operator.dev/v1alpha1".into(),
            kind: "UserMfaPolicy".into(),
            name: name.into(),
            namespace: "team-a".into(),
            uid: "0b6c2b47-8d4e-4c1e-9d0e-3f1b2a4c5d6e".into(),
        }
    }

    pub fn result(index: usize, message_len: usize) -> PolicyResult {
        let outcome = [
            Outcome::Pass,
            Outcome::Fail,
            Outcome::Warn,
            Outcome::Error,
            Outcome::Skip,
        ];
        PolicyResult {
            policy: "all-users".into(),
            rule: "bound-device".into(),
            result: outcome[index % outcome.len()],
            severity: Some(Severity::High),
            message: format!("user {index} {}", "x".repeat(message_len)),
            properties: BTreeMap::from([
                ("userId".to_string(), format!("u-{index:08}")),
                ("userName".to_string(), format!("user{index}@example.com")),
            ]),
            timestamp: jiff::Timestamp::from_second(1_764_000_000 + index as i64)
                .expect("in range"),
        }
    }
}
