//! The kit for providers that hold one persistent connection (IRC, XMPP):
//! a task per provider instance that owns the socket, connects lazily on
//! the first send, reconnects with jittered backoff while it has channels
//! or rooms to sit in, keeps the link alive while idle, and closes it when
//! the instance is dropped (config reload). Each protocol implements
//! [`Protocol`] and keeps only its wire dialogue.
//!
//! The send-with-ack contract: [`Link::send`] answers `Sent` only after the
//! server confirmed the message (IRC: a PING answered after the lines; XMPP:
//! the room's echo); a link lost mid-message is a `Retry` without a delay
//! (it may be half sent; at-least-once), and a send inside the backoff
//! window answers the last failure with the time left as `after`.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::kit::backoff;

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
use crate::providers::Outcome;

/// A connected socket, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(crate) fn retry(reason: impl Into<String>) -> Outcome {
    Outcome::Retry {
        reason: reason.into(),
        after: None,
    }
}

pub(crate) fn permanent(reason: impl Into<String>) -> Outcome {
    Outcome::Permanent {
        reason: reason.into(),
    }
}

pub(crate) fn reason_of(o: &Outcome) -> &str {
    match o {
        Outcome::Retry { reason, .. } | Outcome::Permanent { reason } => reason,
        Outcome::Sent { .. } => "sent",
    }
}

/// A host name or IP address (no scheme, no `host:port`), as the socket
/// providers (IRC, XMPP, SMTP) accept in `server`.
pub(crate) fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
        // host:port is not a host (an IPv6 address has at least two colons).
        && h.matches(':').count() != 1
}

/// Loopback hosts, where plaintext (and a password over it) stays on the machine.
pub(crate) fn is_loopback(h: &str) -> bool {
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// TLS client config with the platform's roots (aws-lc-rs, TLS 1.2+).
pub(crate) fn tls_connector() -> Result<tokio_rustls::TlsConnector, tokio_rustls::rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Connects the TCP socket (bounded by `CONNECT_TIMEOUT`); `addr` is
/// `server:port` as reasons show it.
pub(crate) async fn dial(
    name: &str,
    server: &str,
    port: u16,
    addr: &str,
) -> Result<tokio::net::TcpStream, Outcome> {
    let connect = tokio::net::TcpStream::connect((server, port));
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(retry(format!("{name}: cannot connect to {addr}: {e}"))),
        Err(_) => Err(retry(format!(
            "{name}: connecting to {addr} timed out after {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Wraps `io` in TLS for the certificate name `sni`, by `deadline`.
pub(crate) async fn tls_wrap<S>(
    name: &str,
    sni: &str,
    addr: &str,
    io: S,
    deadline: Instant,
) -> Result<tokio_rustls::client::TlsStream<S>, Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connector = tls_connector().map_err(|e| retry(format!("{name}: TLS setup: {e}")))?;
    let server = tokio_rustls::rustls::pki_types::ServerName::try_from(sni.to_string())
        .map_err(|_| permanent(format!("{name}: `{sni}` is not a valid TLS server name")))?;
    match tokio::time::timeout_at(deadline, connector.connect(server, io)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(retry(format!(
            "{name}: TLS handshake with {addr} failed: {e}"
        ))),
        Err(_) => Err(retry(format!(
            "{name}: TLS handshake with {addr} timed out"
        ))),
    }
}

/// One protocol's side of the connection task. `Err(Outcome)` from any
/// method means the link failed (the supervisor drops it and backs off);
/// `Ok(outcome)` from [`Protocol::send`] is the message's own answer.
pub(crate) trait Protocol: Send + 'static {
    type Job: Send + Sync + 'static;
    type Conn: Send;
    /// `irc`, `xmpp`: the first word of logs and reasons.
    const NAME: &'static str;

    fn addr(&self) -> String;
    /// Opens the socket and logs in.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Conn, Outcome>> + Send;
    /// Right after a connect: sit in every channel or room again (answers
    /// arrive as the link is read).
    fn rejoin(&mut self, c: &mut Self::Conn) -> impl Future<Output = Result<(), Outcome>> + Send;
    /// Whether a lost link should be re-opened without a send waiting.
    fn wants_link(&self) -> bool;
    /// When [`Protocol::keepalive`] is due next.
    fn keepalive_at(c: &Self::Conn) -> Instant;
    /// Probes or pads the link; `Err` = it is dead.
    fn keepalive(&mut self, c: &mut Self::Conn)
    -> impl Future<Output = Result<(), Outcome>> + Send;
    /// Reads and handles one server unit while idle. Must be cancel safe.
    fn read_idle(c: &mut Self::Conn) -> impl Future<Output = Result<(), Outcome>> + Send;
    /// Sends one job and waits for the server's confirmation.
    fn send(
        &mut self,
        c: &mut Self::Conn,
        job: &Self::Job,
    ) -> impl Future<Output = Result<Outcome, Outcome>> + Send;
    /// Says goodbye (bounded in time).
    fn close(c: &mut Self::Conn) -> impl Future<Output = ()> + Send;
}

struct Request<J> {
    job: J,
    reply: oneshot::Sender<Outcome>,
}

/// The handle a `NativeSender` holds: the connection task's queue, the
/// task started on first use.
pub(crate) struct Link<J> {
    tx: Mutex<Option<mpsc::Sender<Request<J>>>>,
}

impl<J: Send + Sync + 'static> Link<J> {
    pub(crate) fn new() -> Self {
        Self {
            tx: Mutex::new(None),
        }
    }

    /// The task's queue, starting it (`start()` builds its protocol) when
    /// there is none (first send) or it is gone (its runtime ended).
    fn queue<P: Protocol<Job = J>>(
        &self,
        start: &impl Fn() -> P,
    ) -> Option<mpsc::Sender<Request<J>>> {
        let mut slot = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = slot.as_ref().filter(|tx| !tx.is_closed()) {
            return Some(tx.clone());
        }
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(256);
        handle.spawn(run(start(), rx));
        *slot = Some(tx.clone());
        Some(tx)
    }

    /// Hands `job` to the connection task and waits for its outcome.
    pub(crate) async fn send<P: Protocol<Job = J>>(
        &self,
        job: J,
        start: impl Fn() -> P,
    ) -> Outcome {
        let name = P::NAME;
        let (reply, answer) = oneshot::channel();
        let mut req = Request { job, reply };
        // Twice: a task whose runtime ended is replaced once.
        for _ in 0..2 {
            let Some(tx) = self.queue(&start) else {
                return retry(format!("{name}: no async runtime to run the connection on"));
            };
            match tx.send(req).await {
                Ok(()) => {
                    return answer.await.unwrap_or_else(|_| {
                        retry(format!(
                            "{name}: the connection task stopped before answering"
                        ))
                    });
                }
                Err(mpsc::error::SendError(r)) => req = r,
            }
        }
        retry(format!("{name}: the connection task is not running"))
    }
}

struct Supervisor<P: Protocol> {
    p: P,
    conn: Option<P::Conn>,
    /// Failed connects and lost links since the last good connect.
    attempts: u32,
    /// While set, sends answer this outcome without trying to connect.
    failed: Option<(Instant, Outcome)>,
}

async fn run<P: Protocol>(p: P, mut rx: mpsc::Receiver<Request<P::Job>>) {
    let mut st = Supervisor {
        p,
        conn: None,
        attempts: 0,
        failed: None,
    };
    loop {
        let keepalive_at = st.conn.as_ref().map(P::keepalive_at);
        let reconnect_at = match (&st.conn, &st.failed) {
            (None, Some((at, _))) if st.p.wants_link() => Some(*at),
            _ => None,
        };
        tokio::select! {
            req = rx.recv() => match req {
                Some(req) => {
                    let outcome = st.deliver(&req.job).await;
                    let _ = req.reply.send(outcome);
                }
                None => {
                    if let Some(c) = st.conn.as_mut() {
                        P::close(c).await;
                    }
                    return;
                }
            },
            r = read_idle::<P>(&mut st.conn) => {
                if let Err(o) = r {
                    st.lost(o);
                }
            }
            _ = sleep_until(keepalive_at.unwrap_or_else(Instant::now)), if keepalive_at.is_some() => {
                if let Some(c) = st.conn.as_mut()
                    && let Err(o) = st.p.keepalive(c).await
                {
                    st.lost(o);
                }
            }
            _ = sleep_until(reconnect_at.unwrap_or_else(Instant::now)), if reconnect_at.is_some() => {
                st.failed = None;
                let _ = st.ensure_connected().await;
            }
        }
    }
}

/// Pending forever without a connection.
async fn read_idle<P: Protocol>(conn: &mut Option<P::Conn>) -> Result<(), Outcome> {
    match conn {
        Some(c) => P::read_idle(c).await,
        None => std::future::pending().await,
    }
}

impl<P: Protocol> Supervisor<P> {
    /// Starts (or extends) the backoff window with `outcome` as its answer.
    fn back_off(&mut self, outcome: Outcome) {
        self.attempts = self.attempts.saturating_add(1);
        self.failed = Some((Instant::now() + backoff(self.attempts), outcome));
    }

    /// The connection dropped: forget it, reconnect later with backoff.
    fn lost(&mut self, outcome: Outcome) {
        tracing::info!(server = %self.p.addr(), reason = %reason_of(&outcome), "{} connection lost", P::NAME);
        self.conn = None;
        self.back_off(outcome);
    }

    async fn ensure_connected(&mut self) -> Result<(), Outcome> {
        if self.conn.is_some() {
            return Ok(());
        }
        if let Some((until, outcome)) = &self.failed {
            let now = Instant::now();
            if now < *until {
                return Err(match outcome.clone() {
                    Outcome::Retry { reason, .. } => Outcome::Retry {
                        reason,
                        after: Some(*until - now),
                    },
                    other => other,
                });
            }
        }
        match self.p.connect().await {
            Ok(mut c) => {
                self.attempts = 0;
                self.failed = None;
                if let Err(o) = self.p.rejoin(&mut c).await {
                    self.lost(o.clone());
                    return Err(o);
                }
                self.conn = Some(c);
                Ok(())
            }
            Err(o) => {
                tracing::info!(server = %self.p.addr(), reason = %reason_of(&o), "{} connection failed", P::NAME);
                self.back_off(o.clone());
                Err(o)
            }
        }
    }

    async fn deliver(&mut self, job: &P::Job) -> Outcome {
        if let Err(o) = self.ensure_connected().await {
            return o;
        }
        let Some(c) = self.conn.as_mut() else {
            return retry(format!("{}: not connected", P::NAME));
        };
        match self.p.send(c, job).await {
            Ok(outcome) => outcome,
            Err(o) => {
                // The link failed mid-message: it may be half sent.
                self.lost(o.clone());
                match o {
                    Outcome::Retry { reason, .. } => Outcome::Retry {
                        reason,
                        after: None,
                    },
                    other => other,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_loopback() {
        assert!(valid_host("irc.libera.chat"));
        assert!(valid_host("127.0.0.1"));
        assert!(valid_host("::1"));
        for bad in ["", "irc.example:6697", "ircs://irc.example", "a b", "a/b"] {
            assert!(!valid_host(bad), "{bad:?}");
        }
        assert!(is_loopback("localhost") && is_loopback("127.0.0.1") && is_loopback("::1"));
        assert!(!is_loopback("irc.example") && !is_loopback("10.0.0.1"));
    }

    #[test]
    fn tls_connector_builds_with_the_platform_roots() {
        assert!(tls_connector().is_ok());
    }
}
