//! Owner names bound to orgs: which org's nodes may sign the receipt of a stage.
//!
//! An Ottofile names owners (`owner = 'qa'`); a name means nothing by itself. The node that
//! starts a run binds every owner name its plan uses to an org identity, the org's name
//! and key, from its trust store, and [`ORIGIN`] to its own org ([`bind_owners`]). The
//! binding is the plan body's `owners` map, so the plan digest covers it and every receipt
//! names it.
//!
//! Every node that checks a chain (an owner before it runs a stage, `otto verify`) asks
//! [`Owners::expected`] which org must have signed a stage's receipt:
//!
//! - a name this node knows (one it answers to: its own org; an alias of a pinned org; a
//!   pinned org's name) is that org, and the plan's binding, if it binds the name, must
//!   say the same (the origin leaves out names it could not resolve, e.g. the owner of a
//!   stage two orgs away that only the org before it knows);
//! - any other name, [`ORIGIN`] included, is the org the plan binds it to. Under the
//!   default, [`OwnerPolicy::Pinned`], that org must be pinned here; under
//!   [`OwnerPolicy::Bound`] an org this node never pinned is taken with the key the plan
//!   binds (see [`Owners::trust_for`]).
//!
//! A receipt counts only if the org key of its signer's certificate is the org key the
//! owner is bound to. So a trusted org can sign receipts only for stages whose owners are
//! bound to it, and a node that knows an owner name by an org takes that stage's receipts
//! from that org only, whatever a plan says.
#![warn(clippy::unwrap_used)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use otto_pipeline::plan::{Body, ORIGIN, OwnerBinding};
use otto_trust::store::AliasTarget;
use otto_trust::{PublicKey, TrustStore};
use serde::{Deserialize, Serialize};

use crate::chain::quoted;

/// Whether the org an upstream owner is bound to may be one this node has never pinned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerPolicy {
    /// The org must be pinned here (the default).
    #[default]
    Pinned,
    /// An org this node never pinned is taken with the key the plan binds the owner to:
    /// its certificates are checked against that key, and no revocation of it is known.
    Bound,
}

/// What a node knows about owner names, to check a plan's binding and a chain's signers.
#[derive(Debug, Clone, Copy)]
pub struct Owners<'a> {
    trust: &'a TrustStore,
    org: Option<&'a PublicKey>,
    answers_to: &'a [String],
    policy: OwnerPolicy,
}

/// Why a stage's owner has no org whose receipts count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unbound {
    /// The plan binds no org to the name, and this node does not know it.
    Missing,
    /// The plan binds the name to an org this node knows as another.
    Disagrees {
        /// The org the name means here, by its name here.
        known: String,
        /// The org the plan binds it to, by the name the plan gives.
        bound: String,
    },
    /// The plan binds the name to an org this node has not pinned, and the policy takes no
    /// org from a plan.
    NotPinned {
        /// The org the plan binds it to, by the name the plan gives.
        bound: String,
    },
    /// The binding's key is not a key id.
    BadKey(String),
}

/// The org an owner name stands for: its key and its name as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundOrg {
    /// The org's key.
    pub key: PublicKey,
    /// The org's name: the pinned name here, or the plan's name for it.
    pub name: String,
}

/// The result of [`bind_owners`]: the binding for the plan, and the names nothing here
/// resolves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    /// Owner name to org, for the plan body's `owners`.
    pub owners: BTreeMap<String, OwnerBinding>,
    /// Owner names no pinned org, alias or known node stands for, sorted.
    pub unresolved: Vec<String>,
}

/// Binds every owner name `body` uses: [`ORIGIN`] and the names in `answers_to` to this
/// node's org (`org`, pinned here as `org_name`), an alias of a pinned org or a pinned
/// org's name to that org, and any other name to the org key `node_org` gives for it (a
/// known node of that name, or an alias of a node key). [`ORIGIN`] also names this node
/// (`node`, its key): the one node that runs the stages without an owner
/// ([`rules::origin_node`](crate::rules::origin_node)). Names that resolve to nothing are
/// listed as unresolved and left out.
pub fn bind_owners(
    body: &Body,
    trust: &TrustStore,
    org_name: &str,
    org: &PublicKey,
    node: &PublicKey,
    answers_to: &[String],
    node_org: &dyn Fn(&str) -> Option<PublicKey>,
) -> Binding {
    let owners = Owners::new(trust, Some(org), answers_to);
    let mut binding = Binding::default();
    for name in body.owner_names() {
        let key = if name == ORIGIN {
            Some(*org)
        } else {
            owners.known(name).map(|k| k.key).or_else(|| node_org(name))
        };
        match key {
            Some(key) => {
                let org = if key == *org {
                    org_name.to_owned()
                } else {
                    trust
                        .org_by_key(&key)
                        .map_or_else(|| key.keyid(), |o| o.name.clone())
                };
                binding.owners.insert(
                    name.to_owned(),
                    OwnerBinding {
                        key: key.keyid(),
                        org,
                        node: (name == ORIGIN).then(|| node.keyid()),
                    },
                );
            }
            None => binding.unresolved.push(name.to_owned()),
        }
    }
    binding
}

impl<'a> Owners<'a> {
    /// What a node with trust store `trust`, org key `org` (if it has one) and owner
    /// names `answers_to` knows, under the default [`OwnerPolicy`].
    pub fn new(
        trust: &'a TrustStore,
        org: Option<&'a PublicKey>,
        answers_to: &'a [String],
    ) -> Self {
        Self {
            trust,
            org,
            answers_to,
            policy: OwnerPolicy::default(),
        }
    }

    /// The same, under `policy`.
    pub fn with_policy(self, policy: OwnerPolicy) -> Self {
        Self { policy, ..self }
    }

    /// The trust store this knowledge comes from.
    pub fn trust(&self) -> &'a TrustStore {
        self.trust
    }

    /// The org a name stands for here, from this node's own knowledge only.
    pub fn known(&self, name: &str) -> Option<BoundOrg> {
        if let Some(org) = self.org
            && self.answers_to.iter().any(|n| n == name)
        {
            let name = self
                .trust
                .org_by_key(org)
                .map_or_else(|| org.keyid(), |o| o.name.clone());
            return Some(BoundOrg { key: *org, name });
        }
        let pinned = match self.trust.alias(name) {
            Some(AliasTarget::Org(org)) => self.trust.org(org),
            Some(AliasTarget::Node(_)) => None,
            None => self.trust.org(name),
        }?;
        Some(BoundOrg {
            key: pinned.key,
            name: pinned.name.clone(),
        })
    }

    /// The org whose nodes may sign the receipts of stages owned by `name` in `body`, or
    /// why there is none.
    pub fn expected(&self, body: &Body, name: &str) -> Result<BoundOrg, Unbound> {
        let bound = match body.owners.get(name) {
            None => None,
            Some(b) => Some(BoundOrg {
                key: PublicKey::from_keyid(&b.key).map_err(|_| Unbound::BadKey(b.key.clone()))?,
                name: b.org.clone(),
            }),
        };
        // The origin is whoever started the run: only the plan can say which org that is,
        // whatever names this node answers to.
        let known = if name == ORIGIN {
            None
        } else {
            self.known(name)
        };
        match (known, bound) {
            // The origin could not resolve the name; whoever knows it goes by that alone.
            (Some(known), None) => Ok(known),
            (None, None) => Err(Unbound::Missing),
            (Some(known), Some(bound)) if known.key == bound.key => Ok(known),
            (Some(known), Some(bound)) => Err(Unbound::Disagrees {
                known: known.name,
                bound: bound.name,
            }),
            (None, Some(bound)) => match self.trust.org_by_key(&bound.key) {
                Some(org) => Ok(BoundOrg {
                    key: bound.key,
                    name: org.name.clone(),
                }),
                None if self.policy == OwnerPolicy::Bound => Ok(bound),
                None => Err(Unbound::NotPinned { bound: bound.name }),
            },
        }
    }

    /// The first owner name of `body` whose binding disagrees with what this node knows,
    /// and how. Names the plan does not bind, or this node does not know, are not checked
    /// here: a stage of theirs fails [`Owners::expected`] when its receipt is checked.
    pub fn disagreement(&self, body: &Body) -> Option<(String, Unbound)> {
        body.owners
            .keys()
            .find_map(|name| match self.expected(body, name) {
                Err(err @ (Unbound::Disagrees { .. } | Unbound::BadKey(_))) => {
                    Some((name.clone(), err))
                }
                _ => None,
            })
    }

    /// The trust store to check the receipts of a run of `body` against: this node's, and
    /// under [`OwnerPolicy::Bound`] also every org the plan binds an owner to that is not
    /// pinned here, pinned at `now` under the name the plan gives it (or `bound-OWNER`).
    pub fn trust_for(&self, body: &Body, now: u64) -> Cow<'a, TrustStore> {
        if self.policy != OwnerPolicy::Bound {
            return Cow::Borrowed(self.trust);
        }
        let mut extended: Option<TrustStore> = None;
        for (name, bound) in &body.owners {
            let Ok(key) = PublicKey::from_keyid(&bound.key) else {
                continue;
            };
            let store = extended.get_or_insert_with(|| self.trust.clone());
            if store.org_by_key(&key).is_some() {
                continue;
            }
            for pinned_as in [bound.org.clone(), format!("bound-{name}")] {
                if store.org(&pinned_as).is_none() && store.pin_org(&pinned_as, key, now).is_ok() {
                    break;
                }
            }
        }
        extended.map_or(Cow::Borrowed(self.trust), Cow::Owned)
    }
}

impl Unbound {
    /// The reason, as a sentence part after "owner X of stage S".
    pub fn describe(&self, owner: &str) -> String {
        let owner = quoted(owner);
        match self {
            Self::Missing => {
                format!("the plan binds no org to owner {owner}, and this node does not know it")
            }
            Self::Disagrees { known, bound } => format!(
                "the plan binds owner {owner} to org {}, but here {owner} is org {}",
                quoted(bound),
                quoted(known)
            ),
            Self::NotPinned { bound } => format!(
                "the plan binds owner {owner} to org {}, which is not pinned here",
                quoted(bound)
            ),
            Self::BadKey(key) => {
                format!(
                    "the plan binds owner {owner} to {}, which is not a key id",
                    quoted(key)
                )
            }
        }
    }
}

impl fmt::Display for OwnerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pinned => "pinned",
            Self::Bound => "bound",
        })
    }
}
