//! Webhooks: which events a project's receivers hear of, which audited change raises which event,
//! and how long a call that gets no 2xx is retried. The audit record of a change is the event's
//! source (the store enqueues the calls in the change's own transaction), so an event is never
//! announced for a change that did not happen nor lost for one that did.

use serde_json::Value;

use crate::access::Outcome;
use crate::audit::AuditAction;

crate::wire_enum! {
    /// What a webhook call announces (its `X-Edgefleet-Event` header).
    pub enum WebhookEvent ("webhook event") {
        DeliveryCreated = "delivery.created",
        DeliveryApproved = "delivery.approved",
        /// The delivery began to work on its targets: at once, or when its approvals or its
        /// start time came.
        DeliveryStarted = "delivery.started",
        /// A rollout's wave is done (the next opens or the rollout pauses at its gate).
        DeliveryWave = "delivery.wave",
        /// The delivery reached its final state (`succeeded`, `partial`, `failed`, `canceled`,
        /// `aborted`).
        DeliveryFinished = "delivery.finished",
        DeliveryAborted = "delivery.aborted",
        /// A rollback delivery was started (by a user or by a rollout's `on_abort`).
        DeliveryRolledBack = "delivery.rolled_back",
        /// A drift check found an edge service's objects changed since they were delivered.
        EdgeDrifted = "edge.drifted",
        /// The test button's call; sent whatever the webhook subscribes to.
        Ping = "ping",
    }
}

crate::wire_enum! {
    /// Where one webhook call stands.
    pub enum CallState ("webhook call state") {
        /// Not answered with a 2xx yet; tried again at `next_at`.
        Pending = "pending",
        Delivered = "delivered",
        /// No 2xx within [`GIVE_UP_AFTER_MS`]: not tried again.
        Failed = "failed",
    }
}

/// The events a webhook is sent: every one (`["*"]`) or those named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    All,
    /// In the order of [`WebhookEvent::ALL`], each once.
    Only(Vec<WebhookEvent>),
}

/// The most event names one webhook lists.
pub const MAX_EVENT_NAMES: usize = 16;

impl Subscription {
    /// `["*"]`, or a non-empty list of event names (`ping` is not one to subscribe to: every
    /// webhook gets its test calls).
    pub fn parse(names: &[String]) -> Result<Subscription, String> {
        if names.is_empty() {
            return Err("events: name at least one event, or \"*\" for all".into());
        }
        if names.len() > MAX_EVENT_NAMES {
            return Err(format!("events: at most {MAX_EVENT_NAMES} names"));
        }
        if names.iter().any(|name| name == "*") {
            return if names.len() == 1 { Ok(Subscription::All) } else { Err("events: \"*\" stands alone".into()) };
        }
        let mut chosen = Vec::with_capacity(names.len());
        for name in names {
            let event = name.parse::<WebhookEvent>().map_err(|e| format!("events: {e}"))?;
            if event == WebhookEvent::Ping {
                return Err(
                    "events: `ping` is sent by the test button to every webhook; it is not subscribed to".into()
                );
            }
            chosen.push(event);
        }
        Ok(Subscription::Only(WebhookEvent::ALL.iter().copied().filter(|e| chosen.contains(e)).collect()))
    }

    pub fn names(&self) -> Vec<String> {
        match self {
            Subscription::All => vec!["*".into()],
            Subscription::Only(events) => events.iter().map(|e| e.as_str().to_owned()).collect(),
        }
    }

    pub fn includes(&self, event: WebhookEvent) -> bool {
        match self {
            Subscription::All => true,
            Subscription::Only(events) => events.contains(&event),
        }
    }
}

/// The events an audited change raises: by its action, outcome and, for a new delivery, the state
/// it was stored in (`details.state`). Refused and failed attempts raise none.
pub fn events_for(action: AuditAction, outcome: Outcome, details: &Value) -> Vec<WebhookEvent> {
    use AuditAction as A;
    use WebhookEvent::*;
    let started = details.get("state").and_then(Value::as_str) == Some("running");
    let created = |also: &[WebhookEvent]| {
        let mut events = vec![DeliveryCreated];
        events.extend_from_slice(also);
        if started {
            events.push(DeliveryStarted);
        }
        events
    };
    match (action, outcome) {
        (A::DeliveryFinish, Outcome::Ended(_)) => vec![DeliveryFinished],
        (_, Outcome::Success) => match action {
            A::DeliveryStart | A::DeliveryApplyPlan => created(&[]),
            A::DeliveryRollback => created(&[DeliveryRolledBack]),
            A::DeliveryRetry | A::DeliveryBegin => vec![DeliveryStarted],
            A::DeliveryResume if details.get("from").and_then(Value::as_str) == Some("scheduled") => {
                vec![DeliveryStarted]
            }
            A::DeliveryApprove if started => vec![DeliveryApproved, DeliveryStarted],
            A::DeliveryApprove => vec![DeliveryApproved],
            A::DeliveryWave => vec![DeliveryWave],
            A::DeliveryAbort => vec![DeliveryAborted],
            A::EdgeServiceDrift => vec![EdgeDrifted],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// A call not answered with a 2xx is tried again for this long after the event, then given up.
pub const GIVE_UP_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// The wait before try `attempts + 1`, after `attempts` tries failed: 10 s doubling to one hour
/// (about 30 tries in 24 hours).
pub fn retry_delay_ms(attempts: u32) -> i64 {
    const FIRST_MS: i64 = 10_000;
    const MOST_MS: i64 = 60 * 60 * 1000;
    let doublings = attempts.saturating_sub(1).min(20);
    (FIRST_MS << doublings).min(MOST_MS)
}

/// When try `attempts + 1` is due, or `None` when the call is given up (the next try would come
/// past [`GIVE_UP_AFTER_MS`] after the event).
pub fn next_try_at(created_at: i64, now: i64, attempts: u32) -> Option<i64> {
    let next = now + retry_delay_ms(attempts);
    (next <= created_at + GIVE_UP_AFTER_MS).then_some(next)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::delivery::DeliveryState;

    #[test]
    fn subscriptions_parse_every_event_name_and_refuse_the_rest() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(Subscription::parse(&names(&["*"])), Ok(Subscription::All));
        let every: Vec<String> =
            WebhookEvent::ALL.iter().filter(|e| **e != WebhookEvent::Ping).map(|e| e.as_str().to_owned()).collect();
        let parsed = Subscription::parse(&every).expect("every event");
        assert_eq!(parsed.names(), every, "named in the order of WebhookEvent::ALL");
        assert!(WebhookEvent::ALL.iter().filter(|e| **e != WebhookEvent::Ping).all(|e| parsed.includes(*e)));
        let cases: &[(&[&str], &str)] = &[
            (&[], "name at least one event"),
            (&["*", "delivery.created"], "stands alone"),
            (&["delivery.create"], "unknown webhook event `delivery.create`: use delivery.created,"),
            (&["ping"], "not subscribed to"),
            (&["delivery.wave"; 17], "at most 16"),
        ];
        for (list, words) in cases {
            let refused = Subscription::parse(&names(list)).expect_err("refused");
            assert!(refused.contains(words), "{list:?}: {refused}");
        }
    }

    #[test]
    fn each_audited_change_raises_its_events() {
        use WebhookEvent::*;
        let running = json!({"state": "running"});
        let waiting = json!({"state": "awaiting_approval"});
        let cases: Vec<(&str, Outcome, Value, Vec<WebhookEvent>)> = vec![
            ("delivery.start", Outcome::Success, running.clone(), vec![DeliveryCreated, DeliveryStarted]),
            ("delivery.start", Outcome::Success, waiting.clone(), vec![DeliveryCreated]),
            ("delivery.apply_plan", Outcome::Success, running.clone(), vec![DeliveryCreated, DeliveryStarted]),
            (
                "delivery.rollback",
                Outcome::Success,
                running.clone(),
                vec![DeliveryCreated, DeliveryRolledBack, DeliveryStarted],
            ),
            ("delivery.retry", Outcome::Success, json!({}), vec![DeliveryStarted]),
            ("delivery.begin", Outcome::Success, json!({}), vec![DeliveryStarted]),
            ("delivery.approve", Outcome::Success, json!({"state": "awaiting_approval"}), vec![DeliveryApproved]),
            ("delivery.approve", Outcome::Success, running.clone(), vec![DeliveryApproved, DeliveryStarted]),
            ("delivery.resume", Outcome::Success, json!({"from": "scheduled"}), vec![DeliveryStarted]),
            ("delivery.resume", Outcome::Success, json!({"from": "paused"}), vec![]),
            ("delivery.approve", Outcome::Denied, json!({}), vec![]),
            ("delivery.wave", Outcome::Success, json!({}), vec![DeliveryWave]),
            ("delivery.abort", Outcome::Success, json!({}), vec![DeliveryAborted]),
            ("delivery.finish", Outcome::Ended(DeliveryState::Partial), json!({}), vec![DeliveryFinished]),
            ("edge_service.drift", Outcome::Success, json!({}), vec![EdgeDrifted]),
            ("template.create", Outcome::Success, json!({}), vec![]),
            ("auth.login", Outcome::Failure, json!({}), vec![]),
        ];
        for (action, outcome, details, events) in cases {
            assert_eq!(
                events_for(action.parse().expect("an audit action"), outcome, &details),
                events,
                "{action} {outcome:?}"
            );
        }
    }

    #[test]
    fn retries_back_off_to_an_hour_and_stop_after_a_day() {
        let delays: Vec<i64> = (1..=10).map(retry_delay_ms).collect();
        assert_eq!(&delays[..4], &[10_000, 20_000, 40_000, 80_000]);
        assert_eq!(retry_delay_ms(9), 2_560_000);
        assert_eq!(retry_delay_ms(10), 3_600_000);
        assert_eq!(retry_delay_ms(u32::MAX), 3_600_000);
        let mut now = 0;
        let mut tries = 0;
        while let Some(next) = next_try_at(0, now, tries + 1) {
            (now, tries) = (next, tries + 1);
        }
        assert!((30..=35).contains(&tries), "{tries} tries in a day");
        assert!(now <= GIVE_UP_AFTER_MS);
    }
}
