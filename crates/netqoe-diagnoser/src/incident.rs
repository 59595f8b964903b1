//! Incidents: anomalous windows of one label, scope and entity grouped over time, the sentence
//! that sums one up, and how a run's groups update the stored incidents (pure, no IO).
//!
//! Consecutive anomalous minutes of an entity belong to one incident while the gap between
//! them is at most two of the series' own measurement intervals (at least 2 minutes), so a
//! series measured every 5 minutes forms one incident across its empty minutes. A group
//! becomes an incident once it holds `min_windows` distinct anomalous minutes. It stays open
//! while the newest data processed is still within that gap of its last anomalous minute.
//! Scope is decided per minute, and a shared fault has minutes where too few of its series
//! showed it to say so: a pair-scope window of a label on a client (or target) that has a
//! client (or target) incident of that label around that time belongs to that incident,
//! rather than making one of its own.

use std::collections::BTreeSet;

use netqoe_model::{Label, Scope, Severity};

use crate::baseline::MIN_INTERVAL_MS;

/// One stored or new diagnosis, as incident grouping needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diag {
    pub label: Label,
    pub scope: Scope,
    pub client_id: String,
    pub target: String,
    /// The series (kind and family) it came from.
    pub series: String,
    pub ts_ms: i64,
    pub severity: Severity,
    pub interval_ms: f64,
    pub detail: String,
    pub score: f64,
}

impl Diag {
    /// (label, scope, client, target) of the incident it belongs to.
    pub fn entity(&self) -> Entity {
        let client = (self.scope != Scope::Target).then(|| self.client_id.clone());
        let target = (self.scope != Scope::Client).then(|| self.target.clone());
        (self.label, self.scope, client, target)
    }
}

/// Label, scope, client (client and pair scope), target (target and pair scope).
pub type Entity = (Label, Scope, Option<String>, Option<String>);

/// A group of anomalous windows: an incident once it has enough of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub entity: Entity,
    pub start_ms: i64,
    /// End of the last anomalous window (its start + 1 minute).
    pub end_ms: i64,
    /// Distinct anomalous minutes.
    pub windows: usize,
    /// Distinct series (client, target, kind, family) involved.
    pub series: usize,
    pub peak: Severity,
    /// Detail of the most severe, highest-scoring window.
    pub peak_detail: String,
    pub open: bool,
}

/// Longest gap allowed between two anomalous minutes of one incident.
pub fn max_gap_ms(interval_ms: f64) -> i64 {
    (2.0 * interval_ms.max(MIN_INTERVAL_MS)) as i64
}

/// Groups `diags` into incidents with at least `min_windows` distinct minutes. `data_end_ms`
/// is the start of the newest window processed: a group that could still be extended by a
/// window at or after it is open.
pub fn group(diags: &[Diag], min_windows: usize, data_end_ms: i64) -> Vec<Group> {
    let shared: Vec<Diag> = diags
        .iter()
        .filter(|d| d.scope != Scope::Pair)
        .cloned()
        .collect();
    let shared = group_as_stated(&shared, min_windows, data_end_ms);
    let adopted: Vec<Diag> = diags
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if d.scope == Scope::Pair {
                if let Some(g) = shared.iter().find(|g| adopts(g, &d)) {
                    d.scope = g.entity.1;
                }
            }
            d
        })
        .collect();
    group_as_stated(&adopted, min_windows, data_end_ms)
}

/// Whether the client or target incident `g` takes pair window `d` in.
fn adopts(g: &Group, d: &Diag) -> bool {
    let (label, scope, client, target) = &g.entity;
    let gap = max_gap_ms(d.interval_ms);
    let on = match scope {
        Scope::Client => client.as_deref() == Some(d.client_id.as_str()),
        Scope::Target => target.as_deref() == Some(d.target.as_str()),
        Scope::Pair => false,
    };
    on && *label == d.label && d.ts_ms >= g.start_ms - gap && d.ts_ms < g.end_ms + gap
}

/// Groups `diags` by the scope each one states.
fn group_as_stated(diags: &[Diag], min_windows: usize, data_end_ms: i64) -> Vec<Group> {
    let mut sorted: Vec<&Diag> = diags.iter().collect();
    sorted.sort_by(|a, b| a.entity().cmp(&b.entity()).then(a.ts_ms.cmp(&b.ts_ms)));
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let entity = sorted[i].entity();
        let mut j = i;
        let mut members: Vec<&Diag> = Vec::new();
        let mut gap = 0i64;
        while j < sorted.len() && sorted[j].entity() == entity {
            let d = sorted[j];
            if let Some(last) = members.last() {
                gap = gap.max(max_gap_ms(d.interval_ms));
                if d.ts_ms - last.ts_ms > gap {
                    finish(&members, gap, min_windows, data_end_ms, &mut out);
                    members.clear();
                }
            }
            if members.is_empty() {
                gap = max_gap_ms(d.interval_ms);
            }
            members.push(d);
            j += 1;
        }
        finish(&members, gap, min_windows, data_end_ms, &mut out);
        i = j;
    }
    out
}

fn finish(members: &[&Diag], gap: i64, min_windows: usize, data_end_ms: i64, out: &mut Vec<Group>) {
    let minutes: BTreeSet<i64> = members.iter().map(|d| d.ts_ms).collect();
    if minutes.len() < min_windows.max(1) {
        return;
    }
    let series: BTreeSet<(&str, &str, &str)> = members
        .iter()
        .map(|d| (d.client_id.as_str(), d.target.as_str(), d.series.as_str()))
        .collect();
    let peak = members
        .iter()
        .max_by(|a, b| {
            a.severity
                .cmp(&b.severity)
                .then(a.score.total_cmp(&b.score))
        })
        .expect("a group has members");
    let first = *minutes.first().expect("non-empty");
    let last = *minutes.last().expect("non-empty");
    out.push(Group {
        entity: members[0].entity(),
        start_ms: first,
        end_ms: last + 60_000,
        windows: minutes.len(),
        series: series.len(),
        peak: peak.severity,
        peak_detail: peak.detail.clone(),
        open: data_end_ms - last <= gap,
    });
}

/// What each label means and what to check, by scope.
fn words(label: Label, scope: Scope) -> (&'static str, &'static str) {
    use Label::*;
    use Scope::*;
    match (label, scope) {
        (Dns, Target) => (
            "name resolution is slow or failing",
            "check the authoritative DNS of this name",
        ),
        (Dns, _) => (
            "name resolution is slow or failing",
            "check the client's resolver",
        ),
        (Connect, Target) => (
            "TCP connects are slow or failing",
            "check the target's network path, load balancer and firewall",
        ),
        (Connect, _) => (
            "TCP connects are slow or failing",
            "check the client's uplink, Wi-Fi or VPN",
        ),
        (Tls, Target) => (
            "TLS handshakes are slow or failing",
            "check the target's TLS terminator (certificate chain, handshake CPU)",
        ),
        (Tls, _) => (
            "TLS handshakes are slow or failing",
            "check for TLS interception (proxy, VPN) on the client side",
        ),
        (Server, _) => (
            "the server is slow to send its first byte while connects are normal",
            "check the application and its backends",
        ),
        (Errors, Target) => (
            "HTTP errors or timeouts are up",
            "check the application's logs and recent deploys",
        ),
        (Errors, _) => (
            "HTTP errors or timeouts are up",
            "check the client's proxy and credentials",
        ),
        (Throughput, Target) => (
            "transfers are slow while latency is normal",
            "check the target's bandwidth, shaping or CDN",
        ),
        (Throughput, _) => (
            "transfers are slow while latency is normal",
            "check the client's link capacity and shaping",
        ),
        (Loss, Target) => (
            "packets are lost or jitter is up",
            "check the path to the target",
        ),
        (Loss, _) => (
            "packets are lost or jitter is up",
            "check the client's link",
        ),
    }
}

/// The incident's one-sentence summary.
pub fn summary(g: &Group) -> String {
    let (label, scope, client, target) = &g.entity;
    let (what, action) = words(*label, *scope);
    let who = match scope {
        Scope::Target => format!(
            "Target {} ({} series affected)",
            target.as_deref().unwrap_or("?"),
            g.series
        ),
        Scope::Client => format!(
            "Client {} on most of its targets ({} series affected)",
            client.as_deref().unwrap_or("?"),
            g.series
        ),
        Scope::Pair => format!(
            "Client {} measuring {}",
            client.as_deref().unwrap_or("?"),
            target.as_deref().unwrap_or("?")
        ),
    };
    let minutes = (g.end_ms - g.start_ms) / 60_000;
    format!(
        "{who}: {what} for {minutes} min ({} anomalous minutes, {}; worst: {}); {action}.",
        g.windows,
        g.peak.as_str(),
        g.peak_detail
    )
}

/// A stored incident, as reconciling needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: i64,
    pub entity: Entity,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// How the stored incidents change: rows to update (id, group), to insert, to delete.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub update: Vec<(i64, Group)>,
    pub insert: Vec<Group>,
    pub delete: Vec<i64>,
}

/// Matches the groups rebuilt over a span with the incidents stored over it: a group that
/// overlaps (or touches) a stored incident of the same entity keeps its id, so a later run
/// extends an open incident instead of adding one.
pub fn reconcile(stored: &[Stored], groups: Vec<Group>) -> Changes {
    let mut changes = Changes::default();
    let mut used = vec![false; stored.len()];
    for g in groups {
        let hit = stored.iter().enumerate().find(|(i, s)| {
            !used[*i] && s.entity == g.entity && s.start_ms <= g.end_ms && g.start_ms <= s.end_ms
        });
        match hit {
            Some((i, s)) => {
                used[i] = true;
                changes.update.push((s.id, g));
            }
            None => changes.insert.push(g),
        }
    }
    changes.delete = stored
        .iter()
        .zip(used)
        .filter(|(_, u)| !u)
        .map(|(s, _)| s.id)
        .collect();
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;

    fn diag(client: &str, minute: i64, interval_min: f64) -> Diag {
        Diag {
            label: Label::Connect,
            scope: Scope::Pair,
            client_id: client.into(),
            target: "https://a/".into(),
            series: "http".into(),
            ts_ms: minute * MIN,
            severity: Severity::Major,
            interval_ms: interval_min * 60_000.0,
            detail: "tcp connect p95 412 ms vs usual 18 ms (±6)".into(),
            score: 10.0,
        }
    }

    type Case<'a> = (&'a [i64], f64, &'a [(i64, i64, usize)]);

    #[test]
    fn grouping_table() {
        // (anomalous minutes, interval in minutes, expected (start, end, windows) per incident)
        let cases: &[Case] = &[
            // Five consecutive minutes: one incident.
            (&[10, 11, 12, 13, 14], 1.0, &[(10, 15, 5)]),
            // Two isolated spikes: nothing.
            (&[10, 11], 1.0, &[]),
            // A one-minute hole is within the 2-minute tolerance.
            (&[10, 12, 14], 1.0, &[(10, 15, 3)]),
            // A 3-minute hole splits a 1-minute series, leaving two short groups.
            (&[10, 11, 14, 15], 1.0, &[]),
            // A series measured every 5 minutes over 40 minutes: one incident.
            (&[0, 5, 10, 15, 20, 25, 30, 35], 5.0, &[(0, 36, 8)]),
            // Every 5 minutes, a 15-minute hole splits.
            (&[0, 5, 10, 25, 30, 35], 5.0, &[(0, 11, 3), (25, 36, 3)]),
        ];
        for (minutes, interval, want) in cases {
            let diags: Vec<Diag> = minutes.iter().map(|m| diag("c1", *m, *interval)).collect();
            let got: Vec<(i64, i64, usize)> = group(&diags, 3, 1000 * MIN)
                .iter()
                .map(|g| (g.start_ms / MIN, g.end_ms / MIN, g.windows))
                .collect();
            assert_eq!(&got, want, "{minutes:?} every {interval} min");
        }
    }

    #[test]
    fn target_scope_groups_clients_and_counts_minutes_once() {
        let mut diags = Vec::new();
        for c in ["c1", "c2", "c3"] {
            for m in 0..4 {
                let mut d = diag(c, m, 1.0);
                d.scope = Scope::Target;
                diags.push(d);
            }
        }
        let g = group(&diags, 3, 3 * MIN);
        assert_eq!(g.len(), 1);
        assert_eq!((g[0].windows, g[0].series), (4, 3));
        assert_eq!(g[0].entity.2, None);
        assert!(g[0].open);
        let s = summary(&g[0]);
        assert!(
            s.starts_with("Target https://a/ (3 series affected): TCP connects"),
            "{s}"
        );
        // Long after its last minute it is closed.
        assert!(!group(&diags, 3, 30 * MIN)[0].open);
    }

    #[test]
    fn pair_minutes_of_a_client_incident_belong_to_it() {
        let mut diags = Vec::new();
        for m in 0..10 {
            for t in ["https://a/", "https://b/", "https://c/"] {
                let mut d = diag("c1", m, 1.0);
                d.target = t.into();
                // Minutes 4 to 6: only some targets showed it, so those minutes said pair.
                d.scope = if (4..7).contains(&m) {
                    Scope::Pair
                } else {
                    Scope::Client
                };
                diags.push(d);
            }
        }
        // A pair fault elsewhere, and one on another client, stay pairs.
        diags.extend((20..25).map(|m| diag("c1", m, 1.0)));
        diags.extend((0..5).map(|m| diag("c2", m, 1.0)));
        let got: Vec<(Scope, Option<String>, i64, i64)> = group(&diags, 3, 100 * MIN)
            .into_iter()
            .map(|g| (g.entity.1, g.entity.2, g.start_ms / MIN, g.end_ms / MIN))
            .collect();
        let c = |s: &str| Some(s.to_string());
        assert_eq!(
            got,
            vec![
                (Scope::Client, c("c1"), 0, 10),
                (Scope::Pair, c("c1"), 20, 25),
                (Scope::Pair, c("c2"), 0, 5),
            ]
        );
    }

    #[test]
    fn reconcile_keeps_ids_of_extended_incidents() {
        let diags: Vec<Diag> = (0..5).map(|m| diag("c1", m, 1.0)).collect();
        let g = group(&diags, 3, 4 * MIN).remove(0);
        let stored = vec![
            Stored {
                id: 7,
                entity: g.entity.clone(),
                start_ms: 0,
                end_ms: 3 * MIN,
            },
            Stored {
                id: 8,
                entity: g.entity.clone(),
                start_ms: 100 * MIN,
                end_ms: 104 * MIN,
            },
        ];
        let c = reconcile(&stored, vec![g.clone()]);
        assert_eq!(c.update, vec![(7, g.clone())]);
        assert!(c.insert.is_empty());
        assert_eq!(c.delete, vec![8]);
    }

    proptest! {
        #[test]
        fn every_group_is_long_enough_and_groups_do_not_overlap(
            minutes in proptest::collection::btree_set(0i64..300, 0..80),
        ) {
            let diags: Vec<Diag> = minutes.iter().map(|m| diag("c1", *m, 1.0)).collect();
            let groups = group(&diags, 3, 400 * MIN);
            let mut prev_end = i64::MIN;
            let mut covered = 0;
            for g in &groups {
                prop_assert!(g.windows >= 3);
                prop_assert!(g.start_ms >= prev_end);
                prev_end = g.end_ms;
                covered += g.windows;
            }
            prop_assert!(covered <= minutes.len());
        }
    }
}
