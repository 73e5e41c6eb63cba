//! Invites: issuing a token, answering a join request, and joining with a token.
//!
//! ```text
//!   inviter                                   joiner
//!   invite() ── token (out of band) ──▶       join(token)
//!                                             open_invite: signed by the node its cert names,
//!                                             unexpired; dial an address from it
//!   handle_join() ◀── join_request ──────     (token, own certificate, own addresses)
//!   redeem (single use), pin the joiner's
//!   org, grant the invite's scope, record
//!   the node
//!                  ── join_response ──▶       pin the inviter's org, alias it, record the
//!                     (certificate, scope)    grant back (default nothing), record the node
//! ```

use otto_protocol::{Envelope, HandoffId, JoinRequest, JoinResponse, Message, RejectCode, Scope};
use otto_trust::Unverified;
use otto_trust::invite::{InviteParams, open_invite};
use otto_trust::rand_core::CryptoRng;
use otto_trust::store::AliasTarget;

use super::{
    InviteRequest, Invited, JoinOptions, Joined, Membership, MembershipError, TARGET, dial_addrs,
    known_node, peer_key,
};
use crate::mesh::{Multiaddr, PeerId};

/// The longest an invite may stay valid: 30 days.
pub const MAX_INVITE_SECS: u64 = 30 * 24 * 60 * 60;

impl Membership {
    /// Issues an invite: a token signed by this node carrying its certificate, its mesh
    /// addresses, the scope offered and the expiry (`now` plus `request.expires_in_secs`).
    /// Expired invites are forgotten at the same time.
    pub fn invite<R: CryptoRng + ?Sized>(
        &self,
        request: &InviteRequest,
        rng: &mut R,
        now: u64,
    ) -> Result<Invited, MembershipError> {
        let scope = check_invite(request)?;
        check_secret_globs(&request.secrets)?;
        let max_parallel = check_max_parallel(
            request
                .max_parallel
                .unwrap_or(otto_trust::policy::DEFAULT_MAX_PARALLEL),
        )?;
        let addrs: Vec<String> = self.addrs().iter().map(ToString::to_string).collect();
        if addrs.is_empty() {
            return Err(MembershipError::Invalid(
                "the mesh listens on no address, so no one could join; set [mesh] listen in config.toml"
                    .to_owned(),
            ));
        }
        let expires_at = now.saturating_add(request.expires_in_secs);
        let params = InviteParams {
            cert: self.certificate().clone(),
            addrs: addrs.clone(),
            scope: scope.clone(),
            definitions: request.definitions,
            secrets: request.secrets.clone(),
            max_parallel,
            expires_at,
        };
        let key = &self.0.key;
        let token = self.update_trust(|trust| {
            trust.invites_mut().prune(now);
            Ok(trust.invites_mut().issue(params, key, rng, now)?)
        })?;
        tracing::info!(target: TARGET, roles = ?scope.roles, expires_at, "invite issued");
        Ok(Invited {
            token,
            expires_at,
            scope,
            definitions: request.definitions,
            secrets: request.secrets.clone(),
            max_parallel,
            addrs,
        })
    }

    /// Answers a join request from `peer` (the inviter's side): checks the invite it
    /// carries (signed here, unexpired, issued here, unused) and the joiner's certificate
    /// (valid, for the key on the connection), marks the invite used, pins the joiner's org
    /// under the name its certificate claims with the invite's scope, and records the node.
    /// The answer is a signed join response; a refused join gets `accepted = false` and the
    /// reason in one line. Blocks on the store and `trust.toml`.
    pub fn handle_join(
        &self,
        peer: PeerId,
        envelope: Unverified<Envelope>,
    ) -> Result<Envelope, MembershipError> {
        let response = match self.accept_join(peer, envelope) {
            Ok(scope) => JoinResponse {
                accepted: true,
                reason: None,
                cert: Some(self.certificate().clone()),
                scope: Some(scope),
            },
            Err(err) => {
                tracing::info!(target: TARGET, %peer, "join refused: {err}");
                // Failures inside this node are not the joiner's business: no paths.
                let reason = match err {
                    MembershipError::Store(_)
                    | MembershipError::Persist(_)
                    | MembershipError::Sign(_) => {
                        "the inviting node failed to record the join; its log has the cause"
                            .to_owned()
                    }
                    other => other.to_string(),
                };
                JoinResponse {
                    accepted: false,
                    reason: Some(reason),
                    cert: None,
                    scope: None,
                }
            }
        };
        Ok(self.sign(&Message::JoinResponse(response))?)
    }

    /// Joins the node that issued `options.token` (the joiner's side): checks the token,
    /// dials the inviter, presents the token with this node's certificate and addresses,
    /// and on acceptance pins the inviter's org, aliases it (`options.alias`, default its
    /// org name), records what it may ask of this node (`options.grant`, default nothing)
    /// and records the inviting node.
    pub async fn join(&self, options: &JoinOptions) -> Result<Joined, MembershipError> {
        let now = self.now();
        let token: String = options
            .token
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let opened = open_invite(&token, now)?;
        let inviter = opened.inviter;
        if *inviter.node_key() == self.0.key.public_key() {
            return Err(MembershipError::Invalid(
                "this invite was issued by this node; give it to the node that should join"
                    .to_owned(),
            ));
        }
        let org = inviter.org().to_owned();
        let alias = options.alias.clone().filter(|alias| *alias != org);
        let record = |trust: &mut otto_trust::TrustStore| -> Result<(), MembershipError> {
            trust.pin_org(&org, *inviter.org_key(), now)?;
            if let Some(alias) = &alias {
                trust.set_alias(alias, AliasTarget::Org(org.clone()))?;
            }
            if let Some(grant) = &options.grant {
                trust.set_policy(&org, grant.clone())?;
            }
            Ok(())
        };
        // Try the change on a copy first, so a join the inviter accepts never fails here;
        // an inviter its org revoked is refused.
        let mut trial = otto_trust::TrustStore::clone(&self.trust());
        record(&mut trial)?;
        trial.verify_cert(inviter.envelope(), now)?;

        let client = self.client()?;
        let peer = inviter.node_key().peer_id();
        let addrs = dial_addrs(&opened.invite.addrs);
        if addrs.is_empty() {
            return Err(MembershipError::Invalid(
                "the invite carries no address to dial".to_owned(),
            ));
        }
        client.dial(peer, addrs).await?;
        let request = JoinRequest {
            token,
            cert: self.certificate().clone(),
            addrs: self.addrs().iter().map(ToString::to_string).collect(),
        };
        let answer = client
            .send_join(peer, self.sign(&Message::JoinRequest(request))?)
            .await?;
        let inviter_name = format!("{} ({org})", inviter.node());
        let answer = answer.verify(inviter.node_key()).map_err(|err| {
            MembershipError::BadAnswer(format!(
                "the answer of {inviter_name} is not signed by it: {err}"
            ))
        })?;
        let scope = match answer.get().message() {
            Ok(Message::JoinResponse(JoinResponse {
                accepted: true,
                scope,
                ..
            })) => scope.unwrap_or_default(),
            Ok(Message::JoinResponse(JoinResponse { reason, .. })) => {
                return Err(MembershipError::Refused {
                    inviter: inviter_name,
                    reason: reason.unwrap_or_else(|| "no reason given".to_owned()),
                });
            }
            Ok(Message::Reject(reject)) => {
                return Err(MembershipError::Refused {
                    inviter: inviter_name,
                    reason: reject.message,
                });
            }
            Ok(other) => {
                return Err(MembershipError::BadAnswer(format!(
                    "{inviter_name} answered a join request with a {}",
                    other.kind()
                )));
            }
            Err(err) => {
                return Err(MembershipError::BadAnswer(format!(
                    "the answer of {inviter_name} does not decode: {err}"
                )));
            }
        };
        self.update_trust(record)?;
        let node = self.0.store.put_node(&known_node(
            &inviter,
            opened.invite.addrs.clone(),
            true,
            now,
        ))?;
        self.remember(node.clone());
        tracing::info!(target: TARGET, org = %org, node = %node.name, "joined");
        Ok(Joined {
            org,
            alias,
            node: node.name,
            peer_id: node.peer_id,
            org_key: inviter.org_key().keyid(),
            scope,
            granted: options.grant.clone(),
        })
    }

    /// The inviter's checks and records for a join request; the scope granted.
    fn accept_join(
        &self,
        peer: PeerId,
        envelope: Unverified<Envelope>,
    ) -> Result<Scope, MembershipError> {
        let presenter = peer_key(&peer).ok_or_else(|| {
            MembershipError::Invalid("the joining peer's id is not an ed25519 key".to_owned())
        })?;
        let verified = envelope.verify(&presenter).map_err(|_| {
            MembershipError::Invalid(
                "the join request is not signed by the connecting node".to_owned(),
            )
        })?;
        let request: JoinRequest = verified
            .get()
            .payload_as()
            .map_err(|err| MembershipError::Invalid(format!("malformed join request: {err}")))?;
        let now = self.now();
        let me = self.0.key.public_key();
        let joiner = self.update_trust(|trust| {
            let joiner = trust.invites_mut().redeem(&request, &me, &presenter, now)?;
            trust.add_peer(&joiner, now)?;
            // A node its org revoked stays refused, invite or not.
            trust.verify_cert(&request.cert, now)?;
            Ok(joiner)
        })?;
        let addrs = joiner
            .addrs
            .iter()
            .filter(|addr| addr.parse::<Multiaddr>().is_ok())
            .take(otto_protocol::limits::MAX_ADDRS)
            .cloned()
            .collect();
        let node = self
            .0
            .store
            .put_node(&known_node(&joiner.cert, addrs, true, now))?;
        tracing::info!(target: TARGET, org = %joiner.cert.org(), node = %node.name, %peer, "a node joined");
        self.remember(node);
        Ok(joiner.scope)
    }
}

/// A signed `reject` answering a request this node cannot take, with an all-zero id.
pub(crate) fn reject(
    membership: &Membership,
    code: RejectCode,
    message: &str,
) -> Result<Envelope, MembershipError> {
    let reject = Message::Reject(otto_protocol::Reject {
        id: HandoffId([0; 16]),
        code,
        message: message.to_owned(),
        hint: None,
    });
    Ok(membership.sign(&reject)?)
}

/// Checks what an invite offers; the scope it grants.
/// The longest scope pattern of an invite, in characters: 64 characters of UTF-8 stay
/// within the protocol's 256-byte bound for a glob.
const MAX_PATTERN_CHARS: usize = 64;

fn check_invite(request: &InviteRequest) -> Result<Scope, MembershipError> {
    let invalid = |message: String| Err(MembershipError::Invalid(message));
    if request.roles.is_empty() {
        return invalid("an invite needs a role (--role), e.g. deploy".to_owned());
    }
    if request.stages.is_empty() {
        return invalid(
            "the invite grants no stage; name the stages the joining org may hand to this node (--stages 'Deploy*')"
                .to_owned(),
        );
    }
    if request.expires_in_secs == 0 || request.expires_in_secs > MAX_INVITE_SECS {
        return invalid(format!(
            "an invite expires after 1 second to 30 days, not {} seconds",
            request.expires_in_secs
        ));
    }
    for role in &request.roles {
        if !otto_trust::valid_name(role) {
            return invalid(format!(
                "invalid role {role:?}: use 1 to 64 ascii letters, digits, '-', '_' or '.'"
            ));
        }
    }
    let pipelines = if request.pipelines.is_empty() {
        vec!["*".to_owned()]
    } else {
        request.pipelines.clone()
    };
    for (what, list) in [
        ("roles", &request.roles),
        ("pipelines", &pipelines),
        ("stages", &request.stages),
        ("environments", &request.environments),
    ] {
        if list.len() > otto_protocol::limits::MAX_SCOPE_ENTRIES {
            return invalid(format!(
                "too many {what}: at most {}",
                otto_protocol::limits::MAX_SCOPE_ENTRIES
            ));
        }
        if let Some(bad) = list.iter().find(|glob| {
            glob.is_empty()
                || glob.chars().count() > MAX_PATTERN_CHARS
                || glob.chars().any(char::is_control)
        }) {
            return invalid(format!(
                "invalid {what} pattern {bad:?}: use 1 to {MAX_PATTERN_CHARS} characters, no control characters"
            ));
        }
    }
    Ok(Scope {
        roles: request.roles.clone(),
        pipelines,
        stages: request.stages.clone(),
        environments: request.environments.clone(),
    })
}

/// The most [`otto_trust::Policy::max_parallel`] a policy may set.
pub const MAX_PARALLEL_LIMIT: u32 = 1000;

/// Checks the secret name globs of an invite or a policy change.
pub(crate) fn check_secret_globs(globs: &[String]) -> Result<(), MembershipError> {
    if globs.len() > otto_protocol::limits::MAX_SCOPE_ENTRIES {
        return Err(MembershipError::Invalid(format!(
            "too many secrets: at most {}",
            otto_protocol::limits::MAX_SCOPE_ENTRIES
        )));
    }
    match globs.iter().find(|glob| {
        glob.is_empty()
            || glob.len() > otto_protocol::limits::MAX_NAME_LEN
            || !glob
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*' | '?'))
    }) {
        Some(bad) => Err(MembershipError::Invalid(format!(
            "invalid secret name pattern {bad:?}: use letters, digits, '_', '-', '.', '*' and '?'"
        ))),
        None => Ok(()),
    }
}

/// Checks a `max_parallel`: 1 to [`MAX_PARALLEL_LIMIT`].
pub(crate) fn check_max_parallel(n: u32) -> Result<u32, MembershipError> {
    if (1..=MAX_PARALLEL_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(MembershipError::Invalid(format!(
            "max_parallel must be 1 to {MAX_PARALLEL_LIMIT}, not {n}"
        )))
    }
}
