//! Localisation of each anomalous window to its target, its client or the pair (pure, no IO).
//!
//! Per minute and label (SPEC §6): `target` when, among the clients that reported the target
//! that minute, at least half and at least three are anomalous on it with the same label;
//! `client` when the client is anomalous with the same label on at least half and at least
//! three of the targets it reported that minute; else `pair`. A client counts once per target
//! whatever number of series (kinds, families) it has there, anomalous when any of them is.
//! Only measurements that can show the label count as reporting it: a client's pings report
//! loss, its HTTP series every stage but loss (see [`observable`]), so a client losing packets
//! to the three hosts it pings is a client fault whatever number of URLs it also fetches.

use std::collections::HashMap;

use netqoe_model::{Label, Scope};

use crate::series::Metric;

/// Fewest anomalous clients (or targets) for a target (or client) scope.
pub const MIN_SHARED: u32 = 3;

fn index(l: Label) -> usize {
    Label::ALL.iter().position(|x| *x == l).unwrap_or(0)
}

/// A set of labels, one bit each.
pub fn mask(labels: impl IntoIterator<Item = Label>) -> u8 {
    labels.into_iter().fold(0, |m, l| m | 1 << index(l))
}

/// The labels a series of `probe_kind` can show: pings loss, dns probes dns, tcp probes
/// connect, HTTP (and anything else) every stage but loss.
pub fn observable(probe_kind: &str) -> u8 {
    match probe_kind {
        "ping" => mask([Label::Loss]),
        "dns" => mask([Label::Dns]),
        "tcp" => mask([Label::Connect]),
        _ => mask(
            Metric::ALL
                .iter()
                .map(|m| m.label())
                .filter(|l| *l != Label::Loss),
        ),
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    reporting: [u32; 7],
    anomalous: [u32; 7],
}

impl Counts {
    fn add(&mut self, observable: u8, labels: u8) {
        for i in 0..7 {
            if (observable | labels) & (1 << i) != 0 {
                self.reporting[i] += 1;
            }
            if labels & (1 << i) != 0 {
                self.anomalous[i] += 1;
            }
        }
    }

    fn shared(&self, l: Label) -> bool {
        let n = self.anomalous[index(l)];
        n >= MIN_SHARED && 2 * n >= self.reporting[index(l)]
    }
}

/// Reporting and anomalous counts per (target, minute) and (client, minute).
#[derive(Debug, Default)]
pub struct Localiser {
    target_ids: HashMap<String, u32>,
    client_ids: HashMap<String, u32>,
    targets: HashMap<(u32, i64), Counts>,
    clients: HashMap<(u32, i64), Counts>,
}

fn intern(ids: &mut HashMap<String, u32>, s: &str) -> u32 {
    if let Some(id) = ids.get(s) {
        return *id;
    }
    let id = ids.len() as u32;
    ids.insert(s.to_string(), id);
    id
}

impl Localiser {
    /// Records that `client` reported `target` in each of `minutes` (window start, labels its
    /// series there can show, labels it was anomalous with, 0 when healthy). Call once per
    /// (client, target) and minute.
    pub fn add(
        &mut self,
        client: &str,
        target: &str,
        minutes: impl IntoIterator<Item = (i64, u8, u8)>,
    ) {
        let c = intern(&mut self.client_ids, client);
        let t = intern(&mut self.target_ids, target);
        for (minute, observable, labels) in minutes {
            self.targets
                .entry((t, minute))
                .or_default()
                .add(observable, labels);
            self.clients
                .entry((c, minute))
                .or_default()
                .add(observable, labels);
        }
    }

    /// The scope of `client`'s `label` anomaly on `target` at `minute`, and its evidence.
    pub fn scope(&self, client: &str, target: &str, minute: i64, label: Label) -> (Scope, String) {
        let tc = self
            .target_ids
            .get(target)
            .and_then(|t| self.targets.get(&(*t, minute)))
            .copied()
            .unwrap_or_default();
        let cc = self
            .client_ids
            .get(client)
            .and_then(|c| self.clients.get(&(*c, minute)))
            .copied()
            .unwrap_or_default();
        let on_target = format!(
            "{} of {} clients reporting this target",
            tc.anomalous[index(label)],
            tc.reporting[index(label)]
        );
        let of_client = format!(
            "{} of {} targets this client reported",
            cc.anomalous[index(label)],
            cc.reporting[index(label)]
        );
        if tc.shared(label) {
            (Scope::Target, on_target)
        } else if cc.shared(label) {
            (Scope::Client, of_client)
        } else {
            (Scope::Pair, format!("{on_target}; {of_client}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a minute from (client, target, anomalous?) triples, all with `label`.
    fn minute(obs: &[(&str, &str, bool)], label: Label) -> Localiser {
        let mut l = Localiser::default();
        for (c, t, bad) in obs {
            let m = if *bad { mask([label]) } else { 0 };
            l.add(c, t, [(0, observable("http"), m)]);
        }
        l
    }

    #[test]
    fn scope_table() {
        let connect = Label::Connect;
        // 3 of 4 clients of target A: target.
        let l = minute(
            &[
                ("c1", "A", true),
                ("c2", "A", true),
                ("c3", "A", true),
                ("c4", "A", false),
            ],
            connect,
        );
        assert_eq!(l.scope("c1", "A", 0, connect).0, Scope::Target);
        assert_eq!(
            l.scope("c1", "A", 0, connect).1,
            "3 of 4 clients reporting this target"
        );
        // Only 2 of 2 clients: not enough for target scope.
        let l = minute(&[("c1", "A", true), ("c2", "A", true)], connect);
        assert_eq!(l.scope("c1", "A", 0, connect).0, Scope::Pair);
        // 2 of 5: pair.
        let l = minute(
            &[
                ("c1", "A", true),
                ("c2", "A", true),
                ("c3", "A", false),
                ("c4", "A", false),
                ("c5", "A", false),
            ],
            connect,
        );
        assert_eq!(l.scope("c1", "A", 0, connect).0, Scope::Pair);
        // One client on 3 of its 4 targets, each target with healthy other clients: client.
        let mut obs = vec![
            ("c1", "A", true),
            ("c1", "B", true),
            ("c1", "C", true),
            ("c1", "D", false),
        ];
        for t in ["A", "B", "C", "D"] {
            obs.push(("c2", t, false));
            obs.push(("c3", t, false));
        }
        let l = minute(&obs, connect);
        let (scope, evidence) = l.scope("c1", "A", 0, connect);
        assert_eq!(scope, Scope::Client);
        assert_eq!(evidence, "3 of 4 targets this client reported");
        // A different label does not count.
        assert_eq!(l.scope("c1", "A", 0, Label::Dns).0, Scope::Pair);
        // Loss on the three hosts a client pings is the client's, whatever it fetches too.
        let mut l = Localiser::default();
        let loss = mask([Label::Loss]);
        for t in ["a:443", "b:443", "c:443"] {
            l.add("c1", t, [(0, observable("ping"), loss)]);
            l.add("c2", t, [(0, observable("ping"), 0)]);
        }
        for t in ["https://a/", "https://b/", "https://c/", "https://d/"] {
            l.add("c1", t, [(0, observable("http"), 0)]);
        }
        let (scope, evidence) = l.scope("c1", "a:443", 0, Label::Loss);
        assert_eq!(scope, Scope::Client);
        assert_eq!(evidence, "3 of 3 targets this client reported");
    }

    proptest! {
        #[test]
        fn target_scope_needs_three_and_half(n_bad in 0u32..10, n_ok in 0u32..10) {
            let mut l = Localiser::default();
            for i in 0..n_bad {
                l.add(&format!("bad{i}"), "T", [(60_000, observable("http"), mask([Label::Tls]))]);
            }
            for i in 0..n_ok {
                l.add(&format!("ok{i}"), "T", [(60_000, observable("http"), 0)]);
            }
            if n_bad > 0 {
                let (scope, _) = l.scope("bad0", "T", 60_000, Label::Tls);
                let want = n_bad >= 3 && n_bad >= n_ok;
                prop_assert_eq!(scope == Scope::Target, want);
            }
        }
    }
}
