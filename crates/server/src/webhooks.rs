//! The webhook sender. Calls are enqueued by the store with the change that raised them; one
//! replica at a time (the `webhooks` lease) sends the due ones, signs each body with its webhook's
//! key and records every try. A call is sent at least once: a sender that dies after the receiver
//! answered but before the answer was recorded sends it again, with the same
//! `X-Edgefleet-Delivery` for the receiver to drop.

use std::time::Duration;

use domain::webhook::{CallState, next_try_at};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use store::{CallTry, DueCall};

use crate::AppState;

/// Due calls read at once, and sent at once (a slow receiver holds one slot, not the others).
const BATCH: i64 = 64;
const IN_FLIGHT: usize = 8;
/// How often the sender looks for due calls when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);
/// The sender's lease: another replica takes over this long after the holder stops renewing it.
const LEASE_MS: i64 = 10_000;
/// Delivered and given-up calls are listed for a week, then forgotten.
const KEEP_MS: i64 = 7 * 24 * 60 * 60 * 1000;

pub async fn run_forever(state: AppState) {
    loop {
        match state.store.hold_singleton("webhooks", state.engine.worker_id(), LEASE_MS).await {
            Ok(true) => {
                if let Err(err) = send_due(&state).await {
                    tracing::warn!(error = %err, "cannot send webhook calls");
                }
            }
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "cannot take the webhook sender's lease"),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = state.config.clock.moved() => {}
        }
    }
}

async fn send_due(state: &AppState) -> store::Result<()> {
    loop {
        let due = state.store.due_webhook_calls(state.config.clock.now_ms(), BATCH).await?;
        let read = due.len();
        let tries: Vec<(String, CallTry)> = futures::stream::iter(due)
            .map(|call| async move { (call.call.id.clone(), try_call(state, &call, true).await) })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (id, done) in &tries {
            state.store.record_webhook_try(id, done).await?;
        }
        if (read as i64) < BATCH {
            break;
        }
    }
    state.store.prune_webhook_calls(state.config.clock.now_ms() - KEEP_MS).await?;
    Ok(())
}

/// Sends one call and says how it went; with `retry`, a failure is tried again later (until the
/// call is a day old), without it (the test button) it is final.
pub async fn try_call(state: &AppState, due: &DueCall, retry: bool) -> CallTry {
    let began = std::time::Instant::now();
    let done = send(state, due, retry).await;
    let event = due.call.event.as_str();
    state.metrics.webhook_try_seconds.observe(format!("event=\"{event}\""), began.elapsed());
    let result = match done.state {
        CallState::Delivered => "delivered",
        CallState::Pending => "retrying",
        CallState::Failed => "failed",
    };
    state.metrics.webhook_tries.inc(format!("event=\"{event}\",result=\"{result}\""));
    done
}

async fn send(state: &AppState, due: &DueCall, retry: bool) -> CallTry {
    let sent = match state.secrets.open(&due.secret_sealed) {
        Ok(secret) => {
            let headers = [
                ("x-edgefleet-event", due.call.event.as_str().to_owned()),
                ("x-edgefleet-delivery", due.call.id.clone()),
                ("x-edgefleet-signature", signature(&secret, due.call.body.as_bytes())),
                ("user-agent", format!("edgefleet/{}", env!("CARGO_PKG_VERSION"))),
            ];
            state.engine.client().post_json(&due.url, &headers, due.call.body.clone()).await
        }
        Err(err) => Err(format!("cannot open the webhook's secret: {err}")),
    };
    let at = state.config.clock.now_ms();
    let (status, error) = match sent {
        Ok(code) if (200..300).contains(&code) => {
            return CallTry {
                state: CallState::Delivered,
                next_at: None,
                status: Some(code.into()),
                error: String::new(),
                at,
            };
        }
        Ok(code) => (Some(i64::from(code)), format!("the receiver answered HTTP {code}")),
        Err(error) => (None, error),
    };
    let attempts = u32::try_from(due.call.attempts + 1).unwrap_or(u32::MAX);
    let next_at = if retry { next_try_at(due.call.created_at, at, attempts) } else { None };
    let state = if next_at.is_some() { CallState::Pending } else { CallState::Failed };
    CallTry { state, next_at, status, error, at }
}

/// `sha256=<hex HMAC-SHA256 of the body with the webhook's secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes a key of any length; this cannot fail.
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    /// RFC 4231 test case 2 ("Jefe"), the vector receivers' own libraries check against.
    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
