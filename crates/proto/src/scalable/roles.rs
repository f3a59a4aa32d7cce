//! The two tiers: when a leaf becomes an ultrapeer, and an ultrapeer a
//! leaf.
//!
//! - **Promotion.** A leaf that is reachable (not firewalled), has the
//!   bandwidth ([`ScalableConfig::ultrapeer_min_bandwidth`]) and the uptime
//!   ([`ScalableConfig::ultrapeer_min_uptime`]), and has had fewer than
//!   [`ScalableConfig::leaf_ultrapeers`] ultrapeers for
//!   [`ScalableConfig::promote_wait`] (times a random factor between 1 and
//!   2, so that the leaves that wait together do not all change at once)
//!   while some ultrapeer refused it for lack of slots (`"Full"`) or no
//!   ultrapeer was known, becomes an ultrapeer.
//! - **Demotion.** An ultrapeer with fewer than
//!   [`ScalableConfig::demote_below_leaves`] leaves for
//!   [`ScalableConfig::demote_after`] (times a random factor between 1
//!   and 2) while it has at least [`ScalableConfig::min_degree`] ultrapeer
//!   neighbours (ultrapeers are plentiful around it) and gained no leaf
//!   (leaves that still come show it is needed: under churn a new
//!   ultrapeer fills slowly) becomes a leaf.
//!
//! Either change drops every link (each neighbour is told with
//! `"Accept": false`), and the node then looks for links of its new tier.
//! A demoted ultrapeer hands its leaves over: the pong that drops each
//! leaf names its ultrapeer neighbours (`"Hosts"`), which the leaf asks at
//! once.
//!
//! [`ScalableConfig::ultrapeer_min_bandwidth`]: super::ScalableConfig::ultrapeer_min_bandwidth
//! [`ScalableConfig::ultrapeer_min_uptime`]: super::ScalableConfig::ultrapeer_min_uptime
//! [`ScalableConfig::leaf_ultrapeers`]: super::ScalableConfig::leaf_ultrapeers
//! [`ScalableConfig::promote_wait`]: super::ScalableConfig::promote_wait
//! [`ScalableConfig::demote_below_leaves`]: super::ScalableConfig::demote_below_leaves
//! [`ScalableConfig::demote_after`]: super::ScalableConfig::demote_after
//! [`ScalableConfig::min_degree`]: super::ScalableConfig::min_degree

use super::{Ctx, Scalable, Tier};
use rand::Rng;
use serde_json::{Map, Value};
use std::net::SocketAddr;
use std::time::Instant;

/// What the tier decisions remember.
#[derive(Debug, Default)]
pub(super) struct RoleState {
    /// Since when a leaf has had too few ultrapeers.
    short_since: Option<Instant>,
    /// Refusals for lack of leaf slots since then.
    pub(super) full_refusals: u32,
    /// When a leaf becomes an ultrapeer if nothing changes.
    promote_at: Option<Instant>,
    /// When an ultrapeer with few leaves becomes a leaf if nothing changes.
    pub(super) demote_at: Option<Instant>,
    /// Tier changes so far.
    pub(super) changes: u32,
}

impl Scalable {
    /// Whether this node may be an ultrapeer now.
    fn capable(&self, now: Instant) -> bool {
        self.reachable
            && self.bandwidth >= self.cfg.ultrapeer_min_bandwidth
            && now.saturating_duration_since(self.started) >= self.cfg.ultrapeer_min_uptime
    }

    /// Whether some ultrapeer we do not have is worth asking.
    fn knows_free_candidate(&self) -> bool {
        self.hosts
            .iter()
            .any(|a| !self.neighbours.contains_key(&a) && !self.refused.contains_key(&a))
    }

    /// Promotes or demotes this node when the conditions hold (run at
    /// every maintenance tick).
    pub(super) fn manage_tier(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        match self.cfg.tier {
            Tier::Ultrapeer => {
                if !self.ultrapeer {
                    self.change_tier(cx, now, true);
                }
                return;
            }
            Tier::Leaf => {
                if self.ultrapeer {
                    self.change_tier(cx, now, false);
                }
                return;
            }
            Tier::Auto => {}
        }
        if self.ultrapeer {
            let few = self.n_leaves < self.cfg.demote_below_leaves
                && self.degree() >= self.cfg.min_degree;
            if !few {
                self.roles.demote_at = None;
                return;
            }
            let wait = self.cfg.demote_after.mul_f64(1.0 + cx.sh.rng.gen::<f64>());
            let at = *self.roles.demote_at.get_or_insert(now + wait);
            if now >= at {
                tracing::info!(
                    leaves = self.n_leaves,
                    ultrapeers = self.degree(),
                    "few leaves among many ultrapeers: becoming a leaf"
                );
                self.change_tier(cx, now, false);
            }
            return;
        }
        let short = self.degree() < self.cfg.leaf_ultrapeers;
        if !short {
            self.roles.short_since = None;
            self.roles.promote_at = None;
            self.roles.full_refusals = 0;
            return;
        }
        self.roles.short_since.get_or_insert(now);
        // Scarce: refused for lack of slots by as many ultrapeers as a leaf
        // keeps since its last new ultrapeer (one refusal only shows that
        // one ultrapeer is full), or none left to ask.
        let refusals = self.cfg.leaf_ultrapeers.max(1);
        let scarce = self.roles.full_refusals as usize >= refusals || !self.knows_free_candidate();
        if !scarce || !self.capable(now) {
            return;
        }
        let since = self.roles.short_since.unwrap_or(now);
        let wait = self.cfg.promote_wait.mul_f64(1.0 + cx.sh.rng.gen::<f64>());
        let at = *self.roles.promote_at.get_or_insert(since + wait);
        if now >= at {
            tracing::info!(
                ultrapeers = self.degree(),
                full_refusals = self.roles.full_refusals,
                "ultrapeers scarce: becoming an ultrapeer"
            );
            self.change_tier(cx, now, true);
        }
    }

    /// Becomes an ultrapeer (`up`) or a leaf: every link is dropped, then
    /// links of the new tier are looked for.
    pub(super) fn change_tier(&mut self, cx: &mut Ctx<'_>, now: Instant, up: bool) {
        // The pongs that drop the links already tell the new tier.
        self.ultrapeer = up;
        let mut addrs: Vec<SocketAddr> = self.neighbours.keys().copied().collect();
        // The leaves first, while the ultrapeers they are named are linked.
        addrs.sort_by_key(|a| !self.is_leaf(a));
        for a in addrs {
            let mut extra = Map::new();
            extra.insert("Accept".into(), Value::Bool(false));
            if self.is_leaf(&a) {
                // A leaf dropped is handed over: it is named our other
                // ultrapeers, which it asks at once.
                extra.insert("Hosts".into(), self.hosts_value(cx, a));
            }
            let m = self.scalable_pong(cx, a, extra);
            self.send_self(cx, a, m);
            self.remove_neighbour(cx, a);
        }
        self.pending.clear();
        self.n_leaves = 0;
        self.roles.short_since = None;
        self.roles.promote_at = None;
        self.roles.demote_at = None;
        self.roles.full_refusals = 0;
        self.roles.changes = self.roles.changes.saturating_add(1);
        self.fill_degree(cx, now, 2);
    }
}
