//! Concurrency groups (`concurrency { group = '…' }`): who holds each group and who waits,
//! in arrival order, kept in the store so that a queue survives a restart in its order.
//!
//! A group holds members of one kind: runs (a pipeline's group, on the node that started
//! the runs) or stages (a stage's group, on the node that runs the stage). The member that
//! joined first holds the group; the others wait behind it. A member leaves when its run
//! or stage reaches a final state, in the same transaction as that state
//! ([`leave_in`]), so no crash leaves a finished member holding a group.
#![warn(clippy::unwrap_used)]

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::codec::{self, GROUP_MEMBERS, GROUPS, RUNS, STAGES};
use super::{Error, Run, RunId, Stage, Store};

/// What a group holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// Runs of pipelines whose `concurrency { }` names the group.
    Run,
    /// Stages whose `concurrency { }` names the group.
    Stage,
}

/// A member of a group, waiting for it or holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The run.
    pub run: RunId,
    /// The stage, for a stage group.
    pub stage: Option<String>,
    /// The org that started the run, for a run another org started (`None`: this node's
    /// own). A newer member cancels only members of its own org.
    pub org: Option<String>,
    /// Whether this member, when it joined, cancelled the ones before it of its org.
    pub cancel_in_progress: bool,
    /// When it joined, milliseconds since the Unix epoch.
    pub joined_at: u64,
    /// The newer run that cancelled this member, once one did.
    #[serde(default)]
    pub superseded_by: Option<RunId>,
}

/// Where a member stands in its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupTurn {
    /// It holds the group: it may run.
    Holds,
    /// It waits for `holder`, the member that holds the group; `ahead` members (the
    /// holder included) are before it.
    Waits {
        /// The member holding the group.
        holder: GroupMember,
        /// How many members are before this one.
        ahead: usize,
    },
    /// A newer member of its org cancelled it.
    Superseded {
        /// The newer member's run.
        by: RunId,
    },
}

/// What [`Store::join_group`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// The member is in the group (it was already, or joined now), standing at `turn`;
    /// `superseded` are the members it cancelled by joining (`cancel_in_progress`).
    In {
        /// Where it stands.
        turn: GroupTurn,
        /// The members it cancelled now.
        superseded: Vec<GroupMember>,
    },
    /// The group has `members` members already, as many as the cap: not joined.
    Full {
        /// How many members the group has.
        members: usize,
    },
}

impl Store {
    /// Joins `member` to group `name` of `kind` at the end of its queue, unless it is a
    /// member already (then only where it stands is returned) or the group has `cap`
    /// members. A member with `cancel_in_progress` marks every member before it of the same
    /// org as superseded by its run, in the same transaction, and returns them.
    pub fn join_group(
        &self,
        kind: GroupKind,
        name: &str,
        member: GroupMember,
        cap: usize,
    ) -> Result<Joined, Error> {
        self.write(|txn| {
            let index_key = member_key(&member.run, member.stage.as_deref());
            let prefix = group_prefix(kind, name);
            let mut groups = txn.open_table(GROUPS)?;
            let mut index = txn.open_table(GROUP_MEMBERS)?;
            if index.get(index_key.as_slice())?.is_some() {
                drop(index);
                let queue = queue(&groups, &prefix)?;
                let turn = turn_of(&queue, &member.run, member.stage.as_deref())
                    .ok_or(Error::Invalid("a member is in another group than its own"))?;
                return Ok(Joined::In {
                    turn,
                    superseded: Vec::new(),
                });
            }
            let queue = queue(&groups, &prefix)?;
            if queue.len() >= cap {
                return Ok(Joined::Full {
                    members: queue.len(),
                });
            }
            let seq = queue.last().map_or(0, |(seq, _)| seq.saturating_add(1));
            let mut superseded = Vec::new();
            if member.cancel_in_progress {
                for (seq, earlier) in &queue {
                    if earlier.org == member.org && earlier.superseded_by.is_none() {
                        let mut marked = earlier.clone();
                        marked.superseded_by = Some(member.run);
                        groups.insert(
                            entry_key(&prefix, *seq).as_slice(),
                            codec::encode(&marked)?.as_slice(),
                        )?;
                        superseded.push(marked);
                    }
                }
            }
            let key = entry_key(&prefix, seq);
            groups.insert(key.as_slice(), codec::encode(&member)?.as_slice())?;
            index.insert(index_key.as_slice(), key.as_slice())?;
            drop(index);
            let queue = self::queue(&groups, &prefix)?;
            let turn = turn_of(&queue, &member.run, member.stage.as_deref())
                .ok_or(Error::Invalid("a member just joined is not in its group"))?;
            Ok(Joined::In { turn, superseded })
        })
    }

    /// Where the member (`run`, and `stage` for a stage group) stands in group `name`;
    /// `None` when it is not a member.
    pub fn group_turn(
        &self,
        kind: GroupKind,
        name: &str,
        run: &RunId,
        stage: Option<&str>,
    ) -> Result<Option<GroupTurn>, Error> {
        self.read(|txn| {
            let groups = txn.open_table(GROUPS)?;
            let queue = queue(&groups, &group_prefix(kind, name))?;
            Ok(turn_of(&queue, run, stage))
        })
    }

    /// The members of group `name`, in arrival order (the first holds it).
    pub fn group_members(&self, kind: GroupKind, name: &str) -> Result<Vec<GroupMember>, Error> {
        self.read(|txn| {
            let groups = txn.open_table(GROUPS)?;
            Ok(queue(&groups, &group_prefix(kind, name))?
                .into_iter()
                .map(|(_, m)| m)
                .collect())
        })
    }

    /// Takes the member (`run`, and `stage` for a stage member) out of its group; whether
    /// it was in one.
    pub fn leave_group(&self, run: &RunId, stage: Option<&str>) -> Result<bool, Error> {
        self.write(|txn| leave_in(txn, run, stage))
    }

    /// Takes out of their groups every member whose run or stage ended (or is gone): what
    /// a node does when it starts, for groups written before members left with their final
    /// state. Returns how many it took out.
    pub fn prune_groups(&self) -> Result<usize, Error> {
        self.write(|txn| {
            let mut stale = Vec::new();
            {
                let index = txn.open_table(GROUP_MEMBERS)?;
                let runs = txn.open_table(RUNS)?;
                let stages = txn.open_table(STAGES)?;
                for entry in index.iter()? {
                    let (key, _) = entry?;
                    let Some((run, stage)) = parse_member_key(key.value()) else {
                        stale.push(key.value().to_vec());
                        continue;
                    };
                    let ended = match &stage {
                        None => codec::get::<Run>(&runs, "runs", run.as_bytes())?
                            .is_none_or(|r| r.state.is_final()),
                        Some(stage) => {
                            codec::get::<Stage>(&stages, "stages", &codec::stage_key(&run, stage))?
                                .is_none_or(|s| s.state.is_final())
                        }
                    };
                    if ended {
                        stale.push(key.value().to_vec());
                    }
                }
            }
            let mut index = txn.open_table(GROUP_MEMBERS)?;
            let mut groups = txn.open_table(GROUPS)?;
            for key in &stale {
                if let Some(entry) = index.remove(key.as_slice())? {
                    groups.remove(entry.value())?;
                }
            }
            Ok(stale.len())
        })
    }
}

/// Takes the member out of its group inside `txn`: `stage` `None` is the run's own
/// membership (of a pipeline group) together with every stage membership of the run.
pub(super) fn leave_in(
    txn: &WriteTransaction,
    run: &RunId,
    stage: Option<&str>,
) -> Result<bool, Error> {
    let mut index = txn.open_table(GROUP_MEMBERS)?;
    let mut groups = txn.open_table(GROUPS)?;
    let keys: Vec<Vec<u8>> = match stage {
        Some(stage) => vec![member_key(run, Some(stage))],
        None => {
            let prefix = run.as_bytes().as_slice();
            let mut keys = Vec::new();
            for entry in index.range(prefix..)? {
                let (key, _) = entry?;
                if !key.value().starts_with(prefix) {
                    break;
                }
                keys.push(key.value().to_vec());
            }
            keys
        }
    };
    let mut left = false;
    for key in keys {
        if let Some(entry) = index.remove(key.as_slice())? {
            groups.remove(entry.value())?;
            left = true;
        }
    }
    Ok(left)
}

/// A group's queue: its entries in arrival order, with their sequence numbers.
fn queue(
    groups: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> Result<Vec<(u64, GroupMember)>, Error> {
    let mut out = Vec::new();
    for entry in groups.range(prefix..)? {
        let (key, value) = entry?;
        let key = key.value();
        let Some(seq) = key.strip_prefix(prefix) else {
            break;
        };
        let Ok(seq) = <[u8; 8]>::try_from(seq) else {
            break;
        };
        out.push((
            u64::from_be_bytes(seq),
            codec::decode("groups", value.value())?,
        ));
    }
    Ok(out)
}

fn turn_of(queue: &[(u64, GroupMember)], run: &RunId, stage: Option<&str>) -> Option<GroupTurn> {
    let at = queue
        .iter()
        .position(|(_, m)| m.run == *run && m.stage.as_deref() == stage)?;
    let me = &queue[at].1;
    if let Some(by) = me.superseded_by {
        return Some(GroupTurn::Superseded { by });
    }
    Some(match queue.first() {
        Some((_, holder)) if at > 0 => GroupTurn::Waits {
            holder: holder.clone(),
            ahead: at,
        },
        _ => GroupTurn::Holds,
    })
}

/// The key prefix of a group's entries: its kind, the name's length, the name.
fn group_prefix(kind: GroupKind, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + 4 + name.len() + 8);
    key.push(match kind {
        GroupKind::Run => 0,
        GroupKind::Stage => 1,
    });
    key.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes());
    key.extend_from_slice(name.as_bytes());
    key
}

fn entry_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The membership index key: the stage key of (`run`, `stage`), an empty stage id for
/// the run's own membership (stage ids are never empty).
fn member_key(run: &RunId, stage: Option<&str>) -> Vec<u8> {
    codec::stage_key(run, stage.unwrap_or_default())
}

fn parse_member_key(key: &[u8]) -> Option<(RunId, Option<String>)> {
    let run = codec::run_of_key(key)?;
    let rest = key.get(16..)?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let stage = std::str::from_utf8(rest.get(4..4 + len)?).ok()?;
    Some((run, (!stage.is_empty()).then(|| stage.to_owned())))
}
