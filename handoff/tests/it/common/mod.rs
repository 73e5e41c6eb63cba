//! A small world of three orgs for the handoff tests: `dev` runs the early stages, `ops`
//! owns `Deploy` and receives the offer, `qa` owns `Smoke`. Keys come from fixed seeds and
//! every time is relative to `T0`, so nothing depends on the clock or on chance.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use otto_handoff::definition_digest;
use otto_pipeline::Plan;
use otto_pipeline::plan::{
    Body, Environment, Facts, Gates, Notify, ORIGIN, OwnerBinding, Provenance, Runtime,
    RuntimeKind, SCHEMA, Stage, Step,
};
use otto_protocol::{
    Artifact, Digest, Envelope, HandoffId, KeyBytes, NodeIdentity, Offer, Outcome, Payload as _,
    Receipt, RunSource,
};
use otto_trust::cert::issue_cert;
use otto_trust::{
    CertSpec, Definitions, NodeKey, OrgKey, Policy, PublicKey, TrustStore, Unverified, dsse,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// 2025-01-01T00:00:00Z.
pub(crate) const T0: u64 = 1_735_689_600;
/// The time the offer is checked at.
pub(crate) const NOW: u64 = T0 + 100;
pub(crate) const RUN: &str = "run-0001";

/// One node: its org, its key and its certificate.
pub(crate) struct Node {
    pub(crate) name: &'static str,
    pub(crate) org_name: &'static str,
    pub(crate) org: OrgKey,
    pub(crate) key: NodeKey,
    pub(crate) cert: Envelope,
}

impl Node {
    pub(crate) fn new(
        name: &'static str,
        org_name: &'static str,
        org_seed: u8,
        node_seed: u8,
    ) -> Self {
        let org = OrgKey::from_seed(&[org_seed; 32]);
        let key = NodeKey::from_seed(&[node_seed; 32]);
        let cert = certificate(&org, org_name, name, &key, T0 - 86_400, T0 + 365 * 86_400);
        Self {
            name,
            org_name,
            org,
            key,
            cert,
        }
    }

    pub(crate) fn identity(&self) -> NodeIdentity {
        NodeIdentity {
            name: self.name.to_owned(),
            org: self.org_name.to_owned(),
            key: KeyBytes(*self.key.public_key().as_bytes()),
        }
    }
}

pub(crate) fn certificate(
    org: &OrgKey,
    org_name: &str,
    node: &str,
    key: &NodeKey,
    not_before: u64,
    not_after: u64,
) -> Envelope {
    issue_cert(
        &CertSpec {
            node: node.to_owned(),
            org: org_name.to_owned(),
            node_key: key.public_key(),
            roles: vec!["deploy".to_owned()],
            not_before,
            not_after,
        },
        org,
    )
    .unwrap()
}

pub(crate) fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

pub(crate) fn step(command: &str) -> Step {
    Step {
        args: vec![Value::String(command.to_owned())],
        block: Vec::new(),
        kwargs: BTreeMap::new(),
        symbol: "sh".to_owned(),
    }
}

/// `archive path: 'out/', name: NAME`.
pub(crate) fn archive(name: &str) -> Step {
    Step {
        args: Vec::new(),
        block: Vec::new(),
        kwargs: BTreeMap::from([
            ("name".to_owned(), Value::String(name.to_owned())),
            ("path".to_owned(), Value::String("out/".to_owned())),
        ]),
        symbol: "archive".to_owned(),
    }
}

pub(crate) fn stage(id: &str, owner: Option<&str>, needs: &[&str]) -> Stage {
    Stage {
        blueprint: None,
        caches: Vec::new(),
        concurrency: None,
        environment: None,
        gates: Gates::default(),
        group: Vec::new(),
        handoffs_from: Vec::new(),
        id: id.to_owned(),
        name: id.to_owned(),
        needs: needs.iter().map(|n| (*n).to_owned()).collect(),
        notify: Notify::default(),
        owner: owner.map(str::to_owned),
        parallel: None,
        runtime: Runtime {
            from: None,
            image: None,
            kind: RuntimeKind::Local,
            label: None,
        },
        secrets: Vec::new(),
        skipped: false,
        steps: vec![
            step(&format!("make {}", id.to_lowercase())),
            archive(&format!("{}.tar", id.to_lowercase())),
        ],
        timeout: None,
        uses: Vec::new(),
        when: None,
    }
}

/// Build → Test → Deploy (ops, production) → Smoke (qa); Lint after Build on the side;
/// Docs after Build, skipped by its condition, needed by Deploy.
pub(crate) fn plan() -> Plan {
    let mut docs = stage("Docs", None, &["Build"]);
    docs.skipped = true;
    let mut deploy = stage("Deploy", Some("ops"), &["Docs", "Test"]);
    deploy.environment = Some("production".to_owned());
    deploy.handoffs_from = vec!["origin".to_owned()];
    let mut smoke = stage("Smoke", Some("qa"), &["Deploy"]);
    smoke.handoffs_from = vec!["ops".to_owned()];
    Plan {
        body: Body {
            concurrency: None,
            config: Value::Object(serde_json::Map::new()),
            environments: BTreeMap::from([("production".to_owned(), Environment::default())]),
            facts: Facts {
                branch: Some("main".to_owned()),
                ..Facts::default()
            },
            libraries: Vec::new(),
            owners: BTreeMap::from([
                bound(ORIGIN, "dev", 0x0d),
                bound("ops", "ops", 0x0e),
                bound("qa", "qa", 0x0f),
            ]),
            pipeline: "webapp".to_owned(),
            schema: SCHEMA.to_owned(),
            stages: vec![
                stage("Build", None, &[]),
                stage("Test", None, &["Build"]),
                stage("Lint", None, &["Build"]),
                docs,
                deploy,
                smoke,
            ],
            triggers: Vec::new(),
        },
        provenance: Provenance::default(),
    }
}

/// An entry of a plan's owner binding: `owner` is the org `org` whose key has seed `seed`.
pub(crate) fn bound(owner: &str, org: &str, seed: u8) -> (String, OwnerBinding) {
    (
        owner.to_owned(),
        OwnerBinding {
            key: OrgKey::from_seed(&[seed; 32]).public_key().keyid(),
            org: org.to_owned(),
            node: None,
        },
    )
}

pub(crate) struct World {
    pub(crate) dev: Node,
    /// A second node of the dev org that ran `Build`.
    pub(crate) builder: Node,
    pub(crate) ops: Node,
    pub(crate) qa: Node,
    pub(crate) plan: Plan,
}

impl World {
    pub(crate) fn new() -> Self {
        Self {
            dev: Node::new("dev-1", "acme-dev", 0x0d, 0x1d),
            builder: Node::new("build-1", "acme-dev", 0x0d, 0x2d),
            ops: Node::new("ops-1", "acme-ops", 0x0e, 0x1e),
            qa: Node::new("qa-1", "acme-qa", 0x0f, 0x1f),
            plan: plan(),
        }
    }

    /// The policy ops grants dev: the webapp pipeline, every stage, production, approved
    /// inline definitions.
    pub(crate) fn policy() -> Policy {
        Policy {
            roles: vec!["deploy".to_owned()],
            pipelines: vec!["webapp".to_owned()],
            stages: vec!["*".to_owned()],
            environments: vec!["production".to_owned()],
            definitions: Definitions::Approved,
            ..Policy::default()
        }
    }

    /// Ops's trust store: dev, its own org and qa pinned; dev may hand stages under
    /// [`World::policy`]; the Deploy stage's definition approved.
    pub(crate) fn ops_trust(&self) -> TrustStore {
        let mut trust = TrustStore::new();
        trust.pin_org("dev", self.dev.org.public_key(), T0).unwrap();
        trust.pin_org("ops", self.ops.org.public_key(), T0).unwrap();
        trust.pin_org("qa", self.qa.org.public_key(), T0).unwrap();
        trust.set_policy("dev", Self::policy()).unwrap();
        trust.approve(&self.deploy_digest(), T0);
        trust
    }

    pub(crate) fn deploy_digest(&self) -> String {
        definition_digest(&self.plan.body, self.plan.stage("Deploy").unwrap())
    }

    pub(crate) fn receipt(
        &self,
        by: &Node,
        stage: &str,
        outcome: Outcome,
        upstream: Vec<Digest>,
    ) -> Receipt {
        Receipt {
            run: RUN.to_owned(),
            plan_digest: self.plan.digest(),
            stage: stage.to_owned(),
            attempt: 1,
            outcome,
            outputs: vec![Artifact {
                name: format!("{}.tar", stage.to_lowercase()),
                sha256: sha256(format!("output of {stage}").as_bytes()),
                size: 1000,
            }],
            log_digest: sha256(format!("log of {stage}").as_bytes()),
            started_at: T0 + 10,
            finished_at: T0 + 20,
            started_at_ms: None,
            finished_at_ms: None,
            upstream,
            node: by.identity(),
        }
    }

    /// The receipts Deploy's offer carries: Build (by the builder) and Test (by dev), each
    /// naming the receipts before it.
    pub(crate) fn chain(&self) -> Vec<Envelope> {
        let build = sign_receipt(
            &self.builder,
            &self.receipt(&self.builder, "Build", Outcome::Success, vec![]),
        );
        let test = sign_receipt(
            &self.dev,
            &self.receipt(&self.dev, "Test", Outcome::Success, vec![digest(&build)]),
        );
        vec![build, test]
    }

    /// The offer of Deploy from dev to ops, valid at [`NOW`].
    pub(crate) fn offer(&self) -> Offer {
        let plan = self.plan.canonical_bytes();
        Offer {
            id: HandoffId([0x42; 16]),
            run: RUN.to_owned(),
            source: RunSource::Snapshot {
                digest: sha256(b"snapshot"),
            },
            plan_digest: self.plan.digest(),
            plan,
            stage: "Deploy".to_owned(),
            attempt: 1,
            facts: otto_protocol::Facts::default(),
            inputs: Vec::new(),
            receipts: self.chain(),
            sender: self.dev.cert.clone(),
            expires_at: T0 + 3_600,
            created_at: T0 + 50,
            certificates: vec![self.builder.cert.clone()],
            retry: None,
        }
    }

    /// The origin's (dev-1's) retry of attempt `attempt` of `stage` of [`RUN`], unsigned.
    pub(crate) fn retry_of(&self, stage: &str, attempt: u32) -> otto_protocol::Retry {
        otto_protocol::Retry {
            id: HandoffId([0x7e; 16]),
            run: RUN.to_owned(),
            plan_digest: self.plan.digest(),
            stage: stage.to_owned(),
            attempt,
            reason: "retried by alice@dev-1".to_owned(),
            created_at: T0 + 60,
            sender: self.dev.cert.clone(),
        }
    }

    /// A retry of attempt `attempt` of `stage` of [`RUN`] made and signed by `by` (the
    /// run's origin is dev's org).
    pub(crate) fn retry(&self, by: &Node, stage: &str, attempt: u32) -> Envelope {
        sign_retry(
            by,
            &otto_protocol::Retry {
                sender: by.cert.clone(),
                ..self.retry_of(stage, attempt)
            },
        )
    }

    /// `offer` signed by dev.
    pub(crate) fn signed(&self, offer: &Offer) -> Unverified<Envelope> {
        Unverified::new(sign_offer(&self.dev, offer))
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn sign_retry(by: &Node, retry: &otto_protocol::Retry) -> Envelope {
    dsse::sign(
        otto_protocol::Retry::KIND.payload_type(),
        otto_protocol::encode_payload(retry),
        &by.key,
    )
    .unwrap()
}

pub(crate) fn sign_offer(by: &Node, offer: &Offer) -> Envelope {
    dsse::sign(
        Offer::KIND.payload_type(),
        otto_protocol::encode_payload(offer),
        &by.key,
    )
    .unwrap()
}

pub(crate) fn sign_receipt(by: &Node, receipt: &Receipt) -> Envelope {
    dsse::sign(
        Receipt::KIND.payload_type(),
        otto_protocol::encode_payload(receipt),
        &by.key,
    )
    .unwrap()
}

/// How receipts name each other: sha256 of the envelope's canonical bytes.
pub(crate) fn digest(env: &Envelope) -> Digest {
    sha256(&env.canonical_bytes())
}

/// The ops org's key: the org of the node the offers go to.
pub(crate) fn ops_org() -> &'static PublicKey {
    static KEY: LazyLock<PublicKey> = LazyLock::new(|| OrgKey::from_seed(&[0x0e; 32]).public_key());
    &KEY
}

pub(crate) fn ops_names() -> Vec<String> {
    vec!["ops".to_owned()]
}
