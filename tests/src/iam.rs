//! The least-privilege rules both templates must keep, checked on every IAM statement they
//! declare (the central stack's function policies and guard, the member role's policies).
//!
//! The bed's moto evaluates each role's actions ([`bed_roles`]) but not its resources, conditions
//! or Deny guards, so these are the proof that a policy change keeps the rules:
//! no function may write the exemption tag or act on what carries it; a mutating action on every
//! resource needs a condition that narrows it; tag writes name their keys; roles are passed only
//! to EC2 and only from the account; an Auto Scaling group is changed only once the swap marked
//! it, and marked only when opted in; an address moves only onto an instance a switch marked.

use std::path::Path;

use anyhow::{Context, Result};
use serde_norway::Value;

use crate::template::workspace_root;

/// One statement, with where it came from (for the failure message).
#[derive(Debug, Clone)]
pub struct Statement {
    pub origin: String,
    pub effect: String,
    pub actions: Vec<String>,
    pub resources: Vec<Value>,
    pub condition: Option<Value>,
}

#[cfg(test)]
impl Statement {
    fn has(&self, action: &str) -> bool {
        self.actions.iter().any(|a| a == action)
    }

    fn on_everything(&self) -> bool {
        self.resources.iter().any(|r| r.as_str() == Some("*"))
    }

    /// The condition block `operator` → `key`, if present.
    fn condition(&self, operator: &str, key: &str) -> Option<&Value> {
        self.condition.as_ref()?.get(operator)?.get(key)
    }

    fn requires_tag(&self, key: &str) -> bool {
        self.condition("Null", key).and_then(Value::as_str) == Some("false")
    }

    /// Each resource's text (an intrinsic such as `!Sub` reads as its template string).
    fn resource_texts(&self) -> Vec<String> {
        self.resources.iter().map(text).collect()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Tagged(t) => text(&t.value),
        Value::Sequence(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        other => format!("{other:?}"),
    }
}

fn strings(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Sequence(items)) => items.clone(),
        Some(other) => vec![other.clone()],
        None => Vec::new(),
    }
}

fn statements_of(origin: &str, document: &Value, out: &mut Vec<Statement>) {
    for s in strings(document.get("Statement")) {
        // `!If [condition, statement, !Ref AWS::NoValue]`: the statement, as deployed with the
        // condition true (the bed has every optional resource, such as the approval topic).
        let s = match &s {
            Value::Tagged(t) if t.tag == "If" => match t.value.as_sequence() {
                Some(branches) if branches.len() == 3 => branches[1].clone(),
                _ => s.clone(),
            },
            _ => s,
        };
        out.push(Statement {
            origin: format!(
                "{origin} {}",
                s.get("Sid").and_then(Value::as_str).unwrap_or("(no Sid)")
            ),
            effect: s
                .get("Effect")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            actions: strings(s.get("Action"))
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            resources: strings(s.get("Resource")),
            condition: s.get("Condition").cloned(),
        });
    }
}

/// Every statement of a template: SAM function policies (inline documents; policy templates
/// such as `LambdaInvokePolicy` are SAM's own, scoped by construction), managed policies, role
/// policies and roles' inline policies.
pub fn statements(path: &Path) -> Result<Vec<Statement>> {
    let doc: Value = serde_norway::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let mut out = Vec::new();
    let Some(resources) = doc.get("Resources").and_then(Value::as_mapping) else {
        return Ok(out);
    };
    for (id, resource) in resources {
        let id = id.as_str().unwrap_or_default();
        let props = resource.get("Properties").unwrap_or(&Value::Null);
        match resource.get("Type").and_then(Value::as_str) {
            Some("AWS::Serverless::Function" | "AWS::Serverless::StateMachine") => {
                for policy in strings(props.get("Policies")) {
                    statements_of(id, &policy, &mut out);
                }
            }
            Some("AWS::IAM::ManagedPolicy" | "AWS::IAM::RolePolicy" | "AWS::IAM::Policy") => {
                statements_of(
                    id,
                    props.get("PolicyDocument").unwrap_or(&Value::Null),
                    &mut out,
                );
            }
            Some("AWS::IAM::Role") => {
                for policy in strings(props.get("Policies")) {
                    statements_of(
                        id,
                        policy.get("PolicyDocument").unwrap_or(&Value::Null),
                        &mut out,
                    );
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// What the bed's moto can evaluate of a role: the actions its Allow statements name.
///
/// moto (`INITIAL_NO_AUTH_ACTION_COUNT`) matches a statement's actions, but it matches its
/// resources only against `*` and treats any condition as unmet, so the bed gives each role one
/// statement allowing exactly these actions on every resource. Resource ARNs, conditions and the
/// Deny guards are what this module's static tests check instead.
pub type Actions = std::collections::BTreeSet<String>;

/// The roles the bed creates in moto (`infra/local/moto_server.py` reads this as JSON): each
/// central function's role by its binary, and each member role by its name, with its actions.
#[derive(Debug, serde::Serialize)]
pub struct BedRoles {
    pub functions: std::collections::BTreeMap<String, Actions>,
    pub members: std::collections::BTreeMap<String, Actions>,
}

fn allowed(statements: &[Statement]) -> Actions {
    let mut actions: Actions = statements
        .iter()
        .filter(|s| s.effect == "Allow")
        .flat_map(|s| s.actions.iter().cloned())
        .collect();
    // moto authorises each call under its own name; AWS authorises these under another action.
    for (call, action) in AUTHORISED_AS {
        if actions.contains(*action) {
            actions.insert((*call).to_owned());
        }
    }
    actions
}

/// API calls AWS authorises with another action's permission (`sns:PublishBatch` needs
/// `sns:Publish`; there is no IAM action of its own).
const AUTHORISED_AS: &[(&str, &str)] = &[("sns:PublishBatch", "sns:Publish")];

/// `!Ref X` → `X`.
fn reference(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag == "Ref" => t.value.as_str(),
        _ => None,
    }
}

/// The statements of a policy resource (`AWS::IAM::ManagedPolicy` or a role policy).
fn policy_resource(origin: &str, resource: &Value) -> Vec<Statement> {
    let mut out = Vec::new();
    if let Some(document) = resource
        .get("Properties")
        .and_then(|p| p.get("PolicyDocument"))
    {
        statements_of(origin, document, &mut out);
    }
    out
}

/// Every role of both templates, as deployed with every capability allowed (the bed's member
/// accounts allow the switch, the swap and acting on flagged resources).
pub fn bed_roles() -> Result<BedRoles> {
    use crate::template::Template;
    let root = workspace_root();
    let managed = |template: &Template, owner: &str, policy: &str| -> Result<Vec<Statement>> {
        let resource = template
            .resource(policy)
            .with_context(|| format!("{owner} refers to a missing {policy}"))?;
        Ok(policy_resource(policy, resource))
    };

    let central = Template::load()?;
    let mut functions = std::collections::BTreeMap::new();
    for (id, resource) in central.resources_of_type("AWS::Serverless::Function") {
        let binary = central
            .function_binary(id)
            .with_context(|| format!("{id} names no binary"))?;
        let mut statements = Vec::new();
        for policy in strings(resource.get("Properties").and_then(|p| p.get("Policies"))) {
            match reference(&policy) {
                Some(policy) => statements.extend(managed(&central, id, policy)?),
                None => statements_of(id, &policy, &mut statements),
            }
        }
        functions.insert(binary, allowed(&statements));
    }

    let member = Template::from_path(&root.join("infra/member-account.yaml"))?;
    let mut members = std::collections::BTreeMap::new();
    for (id, resource) in member.resources_of_type("AWS::IAM::Role") {
        let props = resource.get("Properties").unwrap_or(&Value::Null);
        // Roles without a name are the member account's own (the forwarding rule's), never assumed.
        let Some(name) = props.get("RoleName") else {
            continue;
        };
        let name = match reference(name) {
            Some(_) => crate::bed::MEMBER_ROLE.to_owned(),
            None => text(name).replace("${RoleName}", crate::bed::MEMBER_ROLE),
        };
        let mut statements = Vec::new();
        for arn in strings(props.get("ManagedPolicyArns")) {
            let policy = reference(&arn)
                .with_context(|| format!("{id}: a managed policy not of this template"))?;
            statements.extend(managed(&member, id, policy)?);
        }
        for policy in strings(props.get("Policies")) {
            statements_of(
                id,
                policy.get("PolicyDocument").unwrap_or(&Value::Null),
                &mut statements,
            );
        }
        for (policy_id, policy) in member.resources_of_type("AWS::IAM::RolePolicy") {
            let role = policy.get("Properties").and_then(|p| p.get("RoleName"));
            if role.and_then(reference) == Some(id) {
                statements.extend(policy_resource(policy_id, policy));
            }
        }
        members.insert(name, allowed(&statements));
    }
    Ok(BedRoles { functions, members })
}

#[cfg(test)]
fn both() -> Vec<Statement> {
    let root = workspace_root();
    let mut all = statements(&root.join("infra/template.yaml")).unwrap();
    all.extend(statements(&root.join("infra/member-account.yaml")).unwrap());
    all
}

#[cfg(test)]
/// Actions that change nothing, by their verb.
fn reads(action: &str) -> bool {
    let verb = action.split(':').nth(1).unwrap_or(action);
    ["Describe", "Get", "List", "BatchGet", "Query", "Scan"]
        .iter()
        .any(|p| verb.starts_with(p))
}

#[cfg(test)]
/// Mutating actions that AWS authorises on no resource ARN at all, each with why it is harmless.
const RESOURCELESS: &[(&str, &str)] = &[
    ("cloudwatch:PutMetricData", "writes metrics only"),
    (
        "logs:CreateLogDelivery",
        "Step Functions log delivery registration",
    ),
    (
        "logs:UpdateLogDelivery",
        "Step Functions log delivery registration",
    ),
    (
        "logs:DeleteLogDelivery",
        "Step Functions log delivery registration",
    ),
    (
        "logs:PutResourcePolicy",
        "Step Functions log delivery registration",
    ),
    (
        "states:SendTaskSuccess",
        "answers only the task its token names (the approval links)",
    ),
    (
        "states:SendTaskFailure",
        "answers only the task its token names (the approval links)",
    ),
];

#[cfg(test)]
const EXEMPT: &str = "spot-optimizer:exempt";
#[cfg(test)]
const TAG_WRITES: &[&str] = &[
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "autoscaling:CreateOrUpdateTags",
    "autoscaling:DeleteTags",
];
#[cfg(test)]
const GROUP_CHANGES: &[&str] = &[
    "autoscaling:SuspendProcesses",
    "autoscaling:ResumeProcesses",
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:AttachInstances",
    "autoscaling:DetachInstances",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    #[test]
    fn the_bed_gives_every_function_and_member_role_its_allowed_actions() {
        let roles = bed_roles().unwrap();
        let template = Template::load().unwrap();
        let mut binaries = template.function_binaries();
        binaries.sort();
        assert_eq!(
            roles.functions.keys().cloned().collect::<Vec<_>>(),
            binaries
        );
        // A statement behind `!If` counts as deployed: the approval topic exists in the bed.
        assert!(roles.functions["saga-approval"].contains("sns:Publish"));
        // Managed policies referenced by `!Ref` count too.
        assert!(roles.functions["switch-launch"].contains("states:DescribeExecution"));
        assert_eq!(
            roles.members.keys().cloned().collect::<Vec<_>>(),
            [
                "SpotOptimizerMember",
                "SpotOptimizerMember-failover",
                "SpotOptimizerMember-governance",
                "SpotOptimizerMember-hibernation",
                "SpotOptimizerMember-swap",
                "SpotOptimizerMember-switch"
            ]
        );
        assert!(roles.members["SpotOptimizerMember-switch"].contains("ec2:RunInstances"));
        assert!(!roles.members["SpotOptimizerMember"].contains("ec2:RunInstances"));
        // Deny statements (the exemption guard) are not actions a role holds.
        assert!(!roles.members["SpotOptimizerMember"].contains("ec2:CreateTags"));
    }

    fn allows() -> Vec<Statement> {
        both().into_iter().filter(|s| s.effect == "Allow").collect()
    }

    #[test]
    fn every_role_carries_the_exemption_guard() {
        let template = Template::load().unwrap();
        let source = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
        let doc: Value = serde_norway::from_str(&source).unwrap();
        let mut missing = Vec::new();
        for (id, resource) in doc["Resources"].as_mapping().unwrap() {
            if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                continue;
            }
            let guarded = strings(resource["Properties"].get("Policies"))
                .iter()
                .any(|p| text_of_ref(p) == Some("ExemptGuardPolicy"));
            if !guarded {
                missing.push(id.as_str().unwrap().to_owned());
            }
        }
        assert!(
            missing.is_empty(),
            "functions without the guard: {missing:?}"
        );
        assert_eq!(template.function_binaries().len(), 34);

        // The guard itself (central and member): denies writing the tag, and acting on what
        // carries it, for every destructive action any role is allowed.
        for file in ["infra/template.yaml", "infra/member-account.yaml"] {
            let denies: Vec<_> = statements(&workspace_root().join(file))
                .unwrap()
                .into_iter()
                .filter(|s| s.effect == "Deny")
                .collect();
            let tag_guard = denies.iter().any(|s| {
                TAG_WRITES.iter().all(|a| s.has(a))
                    && s.condition("ForAnyValue:StringEquals", "aws:TagKeys")
                        .is_some_and(|v| text(v).contains(EXEMPT))
            });
            assert!(tag_guard, "{file}: no Deny on writing {EXEMPT}");
            let destructive = [
                "ec2:TerminateInstances",
                "ec2:StopInstances",
                "ec2:CreateImage",
                "ec2:DeleteVolume",
                "ec2:DeleteSnapshot",
                "ec2:DeregisterImage",
                "ec2:ReleaseAddress",
                "ec2:AssociateAddress",
            ];
            let acts_guard = denies.iter().any(|s| {
                destructive.iter().all(|a| s.has(a))
                    && s.requires_tag(&format!("aws:ResourceTag/{EXEMPT}"))
            });
            assert!(
                acts_guard,
                "{file}: no Deny on acting on {EXEMPT} resources"
            );
            let groups_guard = denies.iter().any(|s| {
                GROUP_CHANGES.iter().all(|a| s.has(a))
                    && s.requires_tag(&format!("autoscaling:ResourceTag/{EXEMPT}"))
            });
            assert!(groups_guard, "{file}: no Deny on changing {EXEMPT} groups");
        }
    }

    fn text_of_ref(v: &Value) -> Option<&str> {
        match v {
            Value::Tagged(t) if t.tag == "Ref" => t.value.as_str(),
            _ => None,
        }
    }

    #[test]
    fn no_mutating_action_on_every_resource_without_a_condition() {
        let mut problems = Vec::new();
        for s in allows() {
            if !s.on_everything() || s.condition.is_some() {
                continue;
            }
            for a in &s.actions {
                if !reads(a) && !RESOURCELESS.iter().any(|(r, _)| r == a) {
                    problems.push(format!("{}: {a} on * without a condition", s.origin));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn tag_writes_name_their_keys_and_never_the_exemption() {
        let mut problems = Vec::new();
        for s in allows() {
            if !TAG_WRITES.iter().any(|a| s.has(a)) {
                continue;
            }
            let at_creation = s.condition("StringEquals", "ec2:CreateAction").is_some();
            let keys = s.condition("ForAllValues:StringEquals", "aws:TagKeys");
            // `ForAllValues` alone is true of a request naming no keys at all (DeleteTags
            // without a list wipes every tag): the keys must also be present.
            let named = keys.is_some() && s.requires_tag("aws:TagKeys");
            if !at_creation && !named {
                problems.push(format!("{}: tag write without named keys", s.origin));
            }
            if keys.is_some_and(|k| text(k).contains(EXEMPT)) {
                problems.push(format!("{}: may write {EXEMPT}", s.origin));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn roles_are_passed_only_to_ec2_and_only_from_the_account() {
        let passes: Vec<_> = allows()
            .into_iter()
            .filter(|s| s.has("iam:PassRole"))
            .collect();
        assert!(!passes.is_empty());
        for s in passes {
            assert!(!s.on_everything(), "{}: PassRole on *", s.origin);
            assert!(
                s.resource_texts()
                    .iter()
                    .all(|r| r.contains("${AWS::AccountId}:role/")),
                "{}: PassRole beyond the account's roles: {:?}",
                s.origin,
                s.resource_texts()
            );
            assert_eq!(
                s.condition("StringEquals", "iam:PassedToService")
                    .and_then(Value::as_str),
                Some("ec2.amazonaws.com"),
                "{}",
                s.origin
            );
        }
    }

    #[test]
    fn a_group_is_changed_only_once_the_swap_marked_it_and_marked_only_when_opted_in() {
        let mut problems = Vec::new();
        let mut marks = 0;
        let mut failovers = 0;
        for s in allows() {
            // The failover swaps one member in a group the swap already put Spot members in:
            // only a group opted in, whether or not a swap runs on it now.
            let failover_on_opted_in = s.origin.starts_with("Failover")
                && s.condition(
                    "StringEquals",
                    "autoscaling:ResourceTag/spot-optimizer:enabled",
                )
                .and_then(Value::as_str)
                    == Some("true");
            failovers += usize::from(failover_on_opted_in);
            // The hibernation reconciler sets the sizes of a group that carries a schedule, and
            // nothing else.
            let scheduled_sizes = s.actions == ["autoscaling:UpdateAutoScalingGroup"]
                && s.requires_tag("autoscaling:ResourceTag/spot-optimizer:schedule");
            if GROUP_CHANGES.iter().any(|a| s.has(a))
                && !s.requires_tag("autoscaling:ResourceTag/spot-optimizer:swap")
                && !failover_on_opted_in
                && !scheduled_sizes
            {
                problems.push(format!("{}: changes a group it did not mark", s.origin));
            }
            if s.has("autoscaling:CreateOrUpdateTags") {
                marks += 1;
                let by_tag = s
                    .condition(
                        "StringEquals",
                        "autoscaling:ResourceTag/spot-optimizer:enabled",
                    )
                    .and_then(Value::as_str)
                    == Some("true");
                let by_name = s
                    .resource_texts()
                    .iter()
                    .all(|r| r.contains("AsgAllowlist") || r.contains("${Names}"));
                if !by_tag && !by_name {
                    problems.push(format!("{}: marks a group that is not opted in", s.origin));
                }
            }
        }
        assert!(marks >= 2, "the mark statements were not found");
        assert_eq!(
            failovers, 3,
            "the failover's group statements were not found"
        );
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn an_address_moves_only_onto_an_instance_a_switch_or_a_failover_marked() {
        let moves: Vec<_> = allows()
            .into_iter()
            .filter(|s| s.has("ec2:AssociateAddress"))
            .collect();
        assert!(!moves.is_empty());
        for s in moves {
            assert!(!s.on_everything(), "{}: AssociateAddress on *", s.origin);
            let onto_instances = s.resource_texts().iter().any(|r| r.contains(":instance/"));
            if onto_instances {
                assert!(
                    s.requires_tag("aws:ResourceTag/spot-optimizer:switch")
                        || s.requires_tag("aws:ResourceTag/spot-optimizer:failover"),
                    "{}: onto any instance",
                    s.origin
                );
            }
        }
    }

    /// A Spot launch is also authorised against `spot-instances-request/*`, and the first one in
    /// an account creates EC2's Spot service-linked role: every policy that launches Spot may do
    /// both (the latter only for `spot.amazonaws.com`), or every live launch fails on AWS.
    #[test]
    fn every_spot_launcher_may_request_spot_and_create_the_spot_service_linked_role() {
        let all = allows();
        let owner = |s: &Statement| s.origin.split(' ').next().unwrap_or_default().to_owned();
        let launchers: std::collections::BTreeSet<String> = all
            .iter()
            .filter(|s| s.has("ec2:RunInstances"))
            .filter(|s| {
                s.condition("StringEquals", "ec2:InstanceMarketType")
                    .is_some()
            })
            .map(owner)
            .collect();
        assert!(launchers.len() >= 4, "{launchers:?}");
        let mut problems = Vec::new();
        for launcher in &launchers {
            let mine: Vec<&Statement> = all.iter().filter(|s| owner(s) == *launcher).collect();
            if !mine.iter().any(|s| {
                s.has("ec2:RunInstances")
                    && s.resource_texts()
                        .iter()
                        .any(|r| r.contains(":spot-instances-request/"))
            }) {
                problems.push(format!(
                    "{launcher}: no RunInstances on spot-instances-request/*"
                ));
            }
            let linked = mine.iter().find(|s| s.has("iam:CreateServiceLinkedRole"));
            match linked {
                None => problems.push(format!(
                    "{launcher}: cannot create the Spot service-linked role"
                )),
                Some(s) => {
                    let service = s.condition("StringEquals", "iam:AWSServiceName");
                    if service.and_then(Value::as_str) != Some("spot.amazonaws.com") {
                        problems.push(format!("{}: for any service", s.origin));
                    }
                    if !s
                        .resource_texts()
                        .iter()
                        .all(|r| r.contains("aws-service-role/spot.amazonaws.com/"))
                    {
                        problems.push(format!("{}: on another role", s.origin));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Launching from volumes encrypted with a customer-managed key, or restarting such an
    /// instance, needs the key through EC2: every role that launches or starts instances may use
    /// keys, only via EC2, and grant them only to AWS resources.
    #[test]
    fn every_launcher_and_restarter_may_use_customer_managed_keys_only_through_ec2() {
        let all = allows();
        let owner = |s: &Statement| s.origin.split(' ').next().unwrap_or_default().to_owned();
        let users: std::collections::BTreeSet<String> = all
            .iter()
            .filter(|s| s.has("ec2:RunInstances") || s.has("ec2:StartInstances"))
            .map(owner)
            .collect();
        assert!(users.len() >= 5, "{users:?}");
        let mut problems = Vec::new();
        for user in &users {
            let mine: Vec<&Statement> = all.iter().filter(|s| owner(s) == *user).collect();
            for action in [
                "kms:Decrypt",
                "kms:GenerateDataKeyWithoutPlaintext",
                "kms:CreateGrant",
            ] {
                if !mine.iter().any(|s| s.has(action)) {
                    problems.push(format!("{user}: no {action}"));
                }
            }
        }
        for s in all
            .iter()
            .filter(|s| s.actions.iter().any(|a| a.starts_with("kms:")))
        {
            if s.condition("StringLike", "kms:ViaService")
                .and_then(Value::as_str)
                != Some("ec2.*.amazonaws.com")
            {
                problems.push(format!("{}: KMS not only through EC2", s.origin));
            }
            if s.has("kms:CreateGrant")
                && s.condition("Bool", "kms:GrantIsForAWSResource")
                    .and_then(Value::as_str)
                    != Some("true")
            {
                problems.push(format!("{}: grants not only for AWS resources", s.origin));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Each member role is assumed only by the central functions of its capability (a tag SAM puts
    /// on each function's role), and each function asks only for its capability's role: the
    /// interruption handler, the router and every plan and health check reach a read-only role.
    #[test]
    fn each_member_role_is_trusted_only_by_the_functions_of_its_capability() {
        let root = workspace_root();
        let member: Value = serde_norway::from_str(
            &std::fs::read_to_string(root.join("infra/member-account.yaml")).unwrap(),
        )
        .unwrap();
        let mut capabilities = std::collections::BTreeMap::new();
        for (id, r) in member["Resources"].as_mapping().unwrap() {
            if r["Type"] != "AWS::IAM::Role"
                || text(&r["Properties"]["AssumeRolePolicyDocument"])
                    .contains("events.amazonaws.com")
            {
                continue;
            }
            let id = id.as_str().unwrap();
            let trust = &r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]["StringEquals"];
            assert!(!trust["sts:ExternalId"].is_null(), "{id}: no ExternalId");
            let capability = trust["aws:PrincipalTag/spot-optimizer:capability"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}: trusted by any central principal"));
            let policies = text(&r["Properties"]["ManagedPolicyArns"]);
            assert!(
                policies.contains("GuardPolicy") && policies.contains("ReadPolicy"),
                "{id}"
            );
            assert!(
                capabilities
                    .insert(capability.to_owned(), id.to_owned())
                    .is_none(),
                "{capability} twice"
            );
        }
        assert_eq!(
            capabilities.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "failover",
                "governance",
                "hibernation",
                "read",
                "swap",
                "switch"
            ]
        );
        // Nothing but reads for the read role.
        let read_role = &capabilities["read"];
        for (id, r) in member["Resources"].as_mapping().unwrap() {
            let target = text(&r["Properties"]["RoleName"]);
            if r["Type"] == "AWS::IAM::RolePolicy" && target.contains(read_role.as_str()) {
                panic!("{} grants the read role more", id.as_str().unwrap());
            }
        }
        let read_policy: Vec<Statement> = statements(&root.join("infra/member-account.yaml"))
            .unwrap()
            .into_iter()
            .filter(|s| s.origin.starts_with("ReadPolicy"))
            .collect();
        assert!(!read_policy.is_empty(), "no ReadPolicy statements");
        for s in read_policy {
            assert!(
                s.actions.iter().all(|a| reads(a)),
                "{}: {:?}",
                s.origin,
                s.actions
            );
        }

        // Central: each function's tag and the role it may assume agree.
        let central: Value = serde_norway::from_str(
            &std::fs::read_to_string(root.join("infra/template.yaml")).unwrap(),
        )
        .unwrap();
        let mut read_only = Vec::new();
        for (id, r) in central["Resources"].as_mapping().unwrap() {
            if r["Type"] != "AWS::Serverless::Function" {
                continue;
            }
            let id = id.as_str().unwrap();
            let assumes: Vec<String> = statements_of_function(r)
                .into_iter()
                .filter(|s| s.has("sts:AssumeRole"))
                .flat_map(|s| s.resources.iter().map(text).collect::<Vec<_>>())
                .collect();
            if assumes.is_empty() {
                continue;
            }
            let capability = r["Properties"]["Tags"]["spot-optimizer:capability"]
                .as_str()
                .unwrap_or_else(|| panic!("{id} assumes member roles but carries no capability"));
            let wanted = match capability {
                "read" => "role/${MemberRoleName}".to_owned(),
                other => format!("role/${{MemberRoleName}}-{other}"),
            };
            assert!(
                assumes.iter().all(|a| a.ends_with(&wanted)),
                "{id}: {assumes:?} ≠ {wanted}"
            );
            if capability == "read" {
                read_only.push(id.to_owned());
            }
        }
        for id in [
            "InterruptionHandlerFunction",
            "OptimizerFunction",
            "SwitchPlanFunction",
            "SwapDiscoverFunction",
            "SwapPlanFunction",
        ] {
            assert!(
                read_only.iter().any(|r| r == id),
                "{id} is not read-only: {read_only:?}"
            );
        }
    }

    fn statements_of_function(resource: &Value) -> Vec<Statement> {
        let mut out = Vec::new();
        for policy in strings(resource["Properties"].get("Policies")) {
            statements_of("function", &policy, &mut out);
        }
        out
    }
}
