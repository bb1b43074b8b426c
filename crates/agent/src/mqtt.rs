//! One MQTT session, 3.1.1 or 5, over TCP or TLS, as the rest of the crate needs it: publish,
//! subscribe, and a stream of what comes in. rumqttc reconnects on the next poll after an error;
//! the caller waits between polls (back-off) and subscribes again when a session was not kept.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5 as v5bytes;
use url::Url;

use crate::protocol::MAX_PACKET_BYTES;

/// Where the broker is and how to sign in: `mqtt://[user:password@]host[:1883][?version=5]` or
/// `mqtts://...` (port 8883 by default; `ca_file` or the system's roots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub version: MqttVersion,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    V311,
    V5,
}

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("not a broker URL: {0}")]
    Parse(String),
    #[error("a broker URL starts with mqtt:// or mqtts://, not {0}://")]
    Scheme(String),
    #[error("the broker URL has no host")]
    NoHost,
    #[error("unknown MQTT version {0:?} (3.1.1 or 5)")]
    Version(String),
}

impl BrokerUrl {
    pub fn parse(text: &str) -> Result<BrokerUrl, UrlError> {
        let url = Url::parse(text).map_err(|e| UrlError::Parse(e.to_string()))?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => return Err(UrlError::Scheme(other.to_owned())),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or(UrlError::NoHost)?.to_owned();
        let mut version = MqttVersion::V311;
        for (key, value) in url.query_pairs() {
            if key == "version" || key == "protocol" {
                version = match value.as_ref() {
                    "3" | "3.1.1" | "4" => MqttVersion::V311,
                    "5" => MqttVersion::V5,
                    other => return Err(UrlError::Version(other.to_owned())),
                };
            }
        }
        let decode =
            |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        let username = Some(url.username()).filter(|u| !u.is_empty()).and_then(decode);
        let password = url.password().and_then(decode);
        Ok(BrokerUrl {
            host,
            port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
            version,
            username,
            password,
        })
    }

    /// The URL without credentials, for logs and answers.
    pub fn display(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let version = if self.version == MqttVersion::V5 { "?version=5" } else { "" };
        format!("{scheme}://{}:{}{version}", self.host, self.port)
    }
}

/// How one session connects.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Published by the broker when the connection dies (topic, payload), retained.
    pub last_will: Option<(String, Vec<u8>)>,
    /// PEM file of the broker's CA for `mqtts`; the system's roots otherwise.
    pub ca_file: Option<std::path::PathBuf>,
    pub keep_alive: Duration,
}

impl SessionOptions {
    /// A session as `client_id`: the URL's credentials, no last will, the system's roots for TLS,
    /// a 30 s keep-alive.
    pub fn new(client_id: impl Into<String>) -> SessionOptions {
        SessionOptions {
            client_id: client_id.into(),
            username: None,
            password: None,
            last_will: None,
            ca_file: None,
            keep_alive: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Connected {
        session_present: bool,
    },
    Message {
        topic: String,
        payload: Vec<u8>,
    },
    /// The broker accepted a subscription.
    Subscribed,
    /// The broker refused a subscription (its ACL).
    SubscriptionRefused,
    /// Anything else (acks, pings).
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot read the broker's CA file {path}: {error}")]
    CaFile { path: String, error: String },
    #[error("broker connection: {0}")]
    Connection(String),
    #[error("the session is closed")]
    Closed,
}

/// Sends on a session; cheap to clone.
#[derive(Clone)]
pub enum Publisher {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// Receives on a session; poll it in one task.
pub enum Events {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// Many commands can be in flight at once (one per target the server works on).
const CHANNEL: usize = 4096;

/// A clean session, always: neither end keeps one across reconnects. An agent must not get
/// commands queued while it was away (the server stopped waiting for them; running them then would
/// change a gateway behind a result already written), and the server's waiters do not outlive its
/// process. Whoever reconnects subscribes again.
pub fn connect(broker: &BrokerUrl, options: &SessionOptions) -> Result<(Publisher, Events), SessionError> {
    let transport = transport(broker, options)?;
    let username = options.username.clone().or_else(|| broker.username.clone());
    let password = options.password.clone().or_else(|| broker.password.clone());
    match broker.version {
        MqttVersion::V311 => {
            let mut mqtt = rumqttc::MqttOptions::new(&options.client_id, &broker.host, broker.port);
            mqtt.set_keep_alive(options.keep_alive)
                .set_clean_session(true)
                .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
                .set_inflight(1000)
                .set_transport(transport);
            if let Some(user) = username {
                mqtt.set_credentials(user, password.unwrap_or_default());
            }
            if let Some((topic, payload)) = &options.last_will {
                mqtt.set_last_will(rumqttc::LastWill::new(topic, payload.clone(), rumqttc::QoS::AtLeastOnce, true));
            }
            let (client, mut events) = rumqttc::AsyncClient::new(mqtt, CHANNEL);
            events.set_network_options(network_options());
            Ok((Publisher::V311(client), Events::V311(Box::new(events))))
        }
        MqttVersion::V5 => {
            let mut mqtt = rumqttc::v5::MqttOptions::new(&options.client_id, &broker.host, broker.port);
            mqtt.set_keep_alive(options.keep_alive)
                .set_clean_start(true)
                .set_max_packet_size(Some(MAX_PACKET_BYTES as u32))
                .set_transport(transport);
            if let Some(user) = username {
                mqtt.set_credentials(user, password.unwrap_or_default());
            }
            if let Some((topic, payload)) = &options.last_will {
                let will = v5bytes::LastWill::new(
                    topic,
                    payload.clone(),
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    true,
                    None,
                );
                mqtt.set_last_will(will);
            }
            mqtt.set_network_options(network_options());
            let (client, events) = rumqttc::v5::AsyncClient::new(mqtt, CHANNEL);
            Ok((Publisher::V5(client), Events::V5(Box::new(events))))
        }
    }
}

/// Commands and answers are small and each waits for the other: Nagle's algorithm would hold
/// each back until the peer's delayed acknowledgement (tens of milliseconds per exchange).
fn network_options() -> rumqttc::NetworkOptions {
    let mut options = rumqttc::NetworkOptions::new();
    options.set_tcp_nodelay(true);
    options
}

fn transport(broker: &BrokerUrl, options: &SessionOptions) -> Result<rumqttc::Transport, SessionError> {
    if !broker.tls {
        return Ok(rumqttc::Transport::Tcp);
    }
    let path = options.ca_file.clone().unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let ca = std::fs::read(&path)
        .map_err(|e| SessionError::CaFile { path: path.display().to_string(), error: e.to_string() })?;
    Ok(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple { ca, alpn: None, client_auth: None }))
}

impl Publisher {
    /// QoS 1.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), SessionError> {
        let sent = match self {
            Publisher::V311(c) => {
                c.publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload).await.map_err(|e| e.to_string())
            }
            Publisher::V5(c) => c
                .publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, retain, payload)
                .await
                .map_err(|e| e.to_string()),
        };
        sent.map_err(|_| SessionError::Closed)
    }

    /// QoS 1.
    pub async fn subscribe(&self, topic: &str) -> Result<(), SessionError> {
        let sent = match self {
            Publisher::V311(c) => c.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.map_err(|e| e.to_string()),
            Publisher::V5(c) => {
                c.subscribe(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await.map_err(|e| e.to_string())
            }
        };
        sent.map_err(|_| SessionError::Closed)
    }

    pub async fn disconnect(&self) {
        let _ = match self {
            Publisher::V311(c) => c.disconnect().await.map_err(drop),
            Publisher::V5(c) => c.disconnect().await.map_err(drop),
        };
    }
}

impl Events {
    /// The next thing from the broker; an error means the connection is down (the next call
    /// reconnects).
    pub async fn next(&mut self) -> Result<Incoming, SessionError> {
        match self {
            Events::V311(events) => {
                use rumqttc::{Event, Packet};
                match events.poll().await.map_err(|e| SessionError::Connection(e.to_string()))? {
                    Event::Incoming(Packet::ConnAck(ack)) => {
                        Ok(Incoming::Connected { session_present: ack.session_present })
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        Ok(Incoming::Message { topic: p.topic, payload: p.payload.to_vec() })
                    }
                    Event::Incoming(Packet::SubAck(ack)) => {
                        if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                            Ok(Incoming::SubscriptionRefused)
                        } else {
                            Ok(Incoming::Subscribed)
                        }
                    }
                    _ => Ok(Incoming::Other),
                }
            }
            Events::V5(events) => {
                use rumqttc::v5::Event;
                use v5bytes::Packet;
                match events.poll().await.map_err(|e| SessionError::Connection(e.to_string()))? {
                    Event::Incoming(Packet::ConnAck(ack)) => {
                        Ok(Incoming::Connected { session_present: ack.session_present })
                    }
                    Event::Incoming(Packet::Publish(p)) => Ok(Incoming::Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                    }),
                    Event::Incoming(Packet::SubAck(ack)) => {
                        if ack.return_codes.iter().any(|c| !matches!(c, v5bytes::SubscribeReasonCode::Success(_))) {
                            Ok(Incoming::SubscriptionRefused)
                        } else {
                            Ok(Incoming::Subscribed)
                        }
                    }
                    _ => Ok(Incoming::Other),
                }
            }
        }
    }
}

/// Waits between reconnects: 0.5 s doubling to 30 s, with jitter so a fleet that lost its broker
/// does not come back in one wave.
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: Duration::from_millis(500) }
    }
}

impl Backoff {
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }

    pub fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(30));
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        base.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_are_read_with_their_defaults() {
        let plain = BrokerUrl::parse("mqtt://127.0.0.1").expect("plain");
        assert_eq!((plain.port, plain.tls, plain.version, plain.username), (1883, false, MqttVersion::V311, None));
        let full = BrokerUrl::parse("mqtts://agent%2F1:p%40ss@broker.plant:8884?version=5").expect("full");
        assert_eq!((full.port, full.tls, full.version), (8884, true, MqttVersion::V5));
        assert_eq!((full.username.as_deref(), full.password.as_deref()), (Some("agent/1"), Some("p@ss")));
        assert_eq!(full.display(), "mqtts://broker.plant:8884?version=5");
        for bad in ["http://x", "mqtt://", "nonsense", "mqtt://h?version=7"] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn back_off_grows_to_thirty_seconds() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| backoff.next_wait()).collect();
        assert!(waits[0] <= Duration::from_millis(625));
        assert!(waits[9] >= Duration::from_millis(22_500) && waits[9] <= Duration::from_millis(37_500));
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(625));
    }
}
