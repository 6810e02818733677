//! Partition assignors: which member of a group reads which partition
//! (docs/CONSUMERS.md, "Assignors"). Pure functions of the members, their
//! subscriptions, the topics' partition counts and (for the sticky one) the
//! previous assignment; deterministic, so every run assigns the same way.

use std::collections::{BTreeMap, BTreeSet};

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.topic, self.partition)
    }
}

/// How a group's partitions are shared among its members (Kafka's
/// `partition.assignment.strategy`). Every member of a group uses the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Assignor {
    /// Per topic, members in id order each take a contiguous range of its
    /// partitions, the first ones one more when they do not divide evenly.
    /// Eager: every rebalance revokes every partition before assigning.
    #[default]
    Range,
    /// All subscribed partitions, in (topic, partition) order, dealt to the
    /// members in id order in turn (skipping members not subscribed to the
    /// topic). Eager.
    RoundRobin,
    /// Balanced as round robin, but a member keeps the partitions it had
    /// that it may keep; only the partitions that move are revoked, and only
    /// from the members that lose them (incremental, cooperative).
    CooperativeSticky,
}

impl Assignor {
    /// Whether a rebalance revokes only the partitions that move.
    pub fn is_cooperative(self) -> bool {
        self == Assignor::CooperativeSticky
    }

    /// The assignor's name, as Kafka spells it: `range`, `roundrobin`,
    /// `cooperative-sticky`.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }
}

/// The partitions each member gets. `members` maps each member id to the
/// topics it subscribes to; `partitions` gives each topic's partition count
/// (topics missing from it have none); `previous` is the assignment before
/// (used by the sticky assignor). Every partition of a subscribed topic goes
/// to exactly one member subscribed to it; every member appears in the
/// result (possibly with nothing).
pub(crate) fn assign(
    assignor: Assignor,
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &BTreeMap<String, BTreeSet<TopicPartition>>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out: BTreeMap<String, BTreeSet<TopicPartition>> =
        members.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    let subscribers = |topic: &str| -> Vec<&String> {
        members.iter().filter(|(_, topics)| topics.contains(topic)).map(|(m, _)| m).collect()
    };
    match assignor {
        Assignor::Range => {
            for (topic, &count) in partitions {
                let subs = subscribers(topic);
                if subs.is_empty() {
                    continue;
                }
                let (per, extra) = (count as usize / subs.len(), count as usize % subs.len());
                let mut next = 0u32;
                for (i, m) in subs.iter().enumerate() {
                    let take = per + usize::from(i < extra);
                    for p in next..next + take as u32 {
                        out.get_mut(*m).expect("every member").insert(TopicPartition::new(topic.clone(), p));
                    }
                    next += take as u32;
                }
            }
        }
        Assignor::RoundRobin => {
            let ids: Vec<&String> = members.keys().collect();
            let mut turn = 0usize;
            for (topic, &count) in partitions {
                if subscribers(topic).is_empty() {
                    continue;
                }
                for p in 0..count {
                    // The next member in turn subscribed to this topic.
                    while !members[ids[turn % ids.len()]].contains(topic) {
                        turn += 1;
                    }
                    out.get_mut(ids[turn % ids.len()])
                        .expect("every member")
                        .insert(TopicPartition::new(topic.clone(), p));
                    turn += 1;
                }
            }
        }
        Assignor::CooperativeSticky => sticky(members, partitions, previous, &mut out),
    }
    out
}

/// The cooperative sticky assignment: each member keeps what it had and may
/// keep (the partition still exists, the member still subscribes to its
/// topic, and it is not over its share), then the rest go one at a time to
/// the subscribed member with the fewest.
fn sticky(
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &BTreeMap<String, BTreeSet<TopicPartition>>,
    out: &mut BTreeMap<String, BTreeSet<TopicPartition>>,
) {
    let all: Vec<TopicPartition> = partitions
        .iter()
        .filter(|(t, _)| members.values().any(|topics| topics.contains(*t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect();
    if members.is_empty() {
        return;
    }
    // Each member's fair share: the total divided evenly, the remainder one
    // more each for as many members (a bound, as subscriptions may differ).
    let share = all.len().div_ceil(members.len());
    let mut taken: BTreeSet<TopicPartition> = BTreeSet::new();
    for (m, had) in previous {
        let Some(topics) = members.get(m) else { continue };
        for tp in had {
            let exists = partitions.get(&tp.topic).is_some_and(|&n| tp.partition < n);
            if exists && topics.contains(&tp.topic) && out[m].len() < share && taken.insert(tp.clone()) {
                out.get_mut(m).expect("every member").insert(tp.clone());
            }
        }
    }
    for tp in all {
        if taken.contains(&tp) {
            continue;
        }
        let fewest = out
            .iter()
            .filter(|(m, _)| members[*m].contains(&tp.topic))
            .min_by_key(|(m, got)| (got.len(), (*m).clone()))
            .map(|(m, _)| m.clone());
        if let Some(m) = fewest {
            out.get_mut(&m).expect("every member").insert(tp.clone());
            taken.insert(tp);
        }
    }
    // Subscriptions that differ can leave a member over the others by more
    // than one: move partitions from the fullest to the emptiest member that
    // can take them, until no move narrows the gap.
    loop {
        let mut moved = false;
        let ids: Vec<String> = out.keys().cloned().collect();
        for from in &ids {
            for to in &ids {
                if out[from].len() <= out[to].len() + 1 {
                    continue;
                }
                let candidate = out[from].iter().find(|tp| members[to].contains(&tp.topic)).cloned();
                if let Some(tp) = candidate {
                    out.get_mut(from).expect("every member").remove(&tp);
                    out.get_mut(to).expect("every member").insert(tp);
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        spec.iter().map(|(m, ts)| (m.to_string(), ts.iter().map(ToString::to_string).collect())).collect()
    }

    fn counts(spec: &[(&str, u32)]) -> BTreeMap<String, u32> {
        spec.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn show(a: &BTreeMap<String, BTreeSet<TopicPartition>>) -> Vec<(String, Vec<String>)> {
        a.iter().map(|(m, tps)| (m.clone(), tps.iter().map(ToString::to_string).collect())).collect()
    }

    /// Every partition of a subscribed topic to exactly one subscribed member.
    fn check_complete(
        a: &BTreeMap<String, BTreeSet<TopicPartition>>,
        m: &BTreeMap<String, BTreeSet<String>>,
        c: &BTreeMap<String, u32>,
    ) {
        let mut seen = BTreeSet::new();
        for (member, tps) in a {
            for tp in tps {
                assert!(m[member].contains(&tp.topic), "{member} got {tp} without subscribing");
                assert!(seen.insert(tp.clone()), "{tp} assigned twice");
            }
        }
        for (t, &n) in c {
            if m.values().any(|ts| ts.contains(t)) {
                for p in 0..n {
                    assert!(seen.contains(&TopicPartition::new(t.clone(), p)), "{t}:{p} unassigned");
                }
            }
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let m = members(&[("a", &["t", "u"]), ("b", &["t", "u"]), ("c", &["t"])]);
        let c = counts(&[("t", 7), ("u", 3)]);
        let a = assign(Assignor::Range, &m, &c, &BTreeMap::new());
        check_complete(&a, &m, &c);
        assert_eq!(
            show(&a),
            [
                ("a".into(), vec!["t:0".into(), "t:1".into(), "t:2".into(), "u:0".into(), "u:1".into()]),
                ("b".into(), vec!["t:3".into(), "t:4".into(), "u:2".into()]),
                ("c".into(), vec!["t:5".into(), "t:6".into()]),
            ]
        );
    }

    #[test]
    fn round_robin_deals_partitions_in_turn() {
        let m = members(&[("a", &["t", "u"]), ("b", &["t", "u"]), ("c", &["u"])]);
        let c = counts(&[("t", 3), ("u", 3)]);
        let a = assign(Assignor::RoundRobin, &m, &c, &BTreeMap::new());
        check_complete(&a, &m, &c);
        assert_eq!(
            show(&a),
            [
                ("a".into(), vec!["t:0".into(), "t:2".into(), "u:2".into()]),
                ("b".into(), vec!["t:1".into(), "u:0".into()]),
                ("c".into(), vec!["u:1".into()]),
            ]
        );
    }

    #[test]
    fn sticky_keeps_what_members_had_and_balances() {
        let c = counts(&[("t", 6)]);
        let two = members(&[("a", &["t"]), ("b", &["t"])]);
        let first = assign(Assignor::CooperativeSticky, &two, &c, &BTreeMap::new());
        check_complete(&first, &two, &c);
        assert_eq!(first.values().map(BTreeSet::len).collect::<Vec<_>>(), [3, 3]);
        // A third member takes one from each; a and b keep the rest.
        let three = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let second = assign(Assignor::CooperativeSticky, &three, &c, &first);
        check_complete(&second, &three, &c);
        assert_eq!(second.values().map(BTreeSet::len).collect::<Vec<_>>(), [2, 2, 2]);
        assert!(second["a"].is_subset(&first["a"]) && second["b"].is_subset(&first["b"]), "{:?}", show(&second));
        // b leaves: a and c keep theirs and share b's.
        let two_again = members(&[("a", &["t"]), ("c", &["t"])]);
        let third = assign(Assignor::CooperativeSticky, &two_again, &c, &second);
        check_complete(&third, &two_again, &c);
        assert!(second["a"].is_subset(&third["a"]) && second["c"].is_subset(&third["c"]), "{:?}", show(&third));
    }

    #[test]
    fn every_assignor_is_complete_for_random_groups() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..300 {
            let topics = ["t", "u", "v"];
            let c: BTreeMap<String, u32> = topics.iter().map(|t| (t.to_string(), next(9) as u32)).collect();
            let m: BTreeMap<String, BTreeSet<String>> = (0..1 + next(6))
                .map(|i| {
                    let mut subs: BTreeSet<String> =
                        topics.iter().filter(|_| next(2) == 0).map(ToString::to_string).collect();
                    if subs.is_empty() {
                        subs.insert("t".into());
                    }
                    (format!("m{i}"), subs)
                })
                .collect();
            let previous = assign(Assignor::RoundRobin, &m, &c, &BTreeMap::new());
            for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::CooperativeSticky] {
                let a = assign(assignor, &m, &c, &previous);
                check_complete(&a, &m, &c);
                assert_eq!(a.len(), m.len());
            }
        }
    }
}
