//! The kit for providers that hold one persistent connection (IRC, XMPP):
//! a task per provider instance owns the socket, connects on the first
//! send, reconnects with jittered backoff while it has channels or rooms to
//! sit in, keeps the link alive while idle, and says goodbye when the
//! instance is dropped (config reload). A protocol implements [`Protocol`]
//! and keeps only its wire dialogue; [`Wire`] is the socket both share.
//!
//! [`Sender::send`] answers `Sent` only once the server confirmed the
//! message (IRC: a PING answered after the lines; XMPP: the room's echo); a
//! link lost mid-message is a `Retry` without a delay (it may be half sent;
//! at-least-once), and a send inside the backoff window answers the last
//! failure with the time left as `after`. See shared/providers.md §3.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};

use super::kit::backoff;

use crate::config::Rate;
use crate::providers::{Message, NativeSender, Outbound, Outcome};
use crate::render::Dialect;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

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

/// `o` with its retry's wait set to `after`.
fn waiting(o: Outcome, after: Option<Duration>) -> Outcome {
    match o {
        Outcome::Retry { reason, .. } => Outcome::Retry { reason, after },
        other => other,
    }
}

pub(crate) fn reason_of(o: &Outcome) -> &str {
    match o {
        Outcome::Retry { reason, .. } | Outcome::Permanent { reason } => reason,
        Outcome::Sent { .. } => "sent",
    }
}

/// Server text for a reason: at most 200 characters, then `…`.
pub(crate) fn short(clean: &str) -> String {
    let mut out: String = clean.chars().take(200).collect();
    if clean.chars().count() > 200 {
        out.push('…');
    }
    out
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
    match timeout(CONNECT_TIMEOUT, connect).await {
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

/// Wraps `io` in TLS for the certificate name `sni`, by `deadline` (or
/// `CONNECT_TIMEOUT` from now).
pub(crate) async fn tls_wrap<S>(
    name: &str,
    sni: &str,
    addr: &str,
    io: S,
    deadline: Option<Instant>,
) -> Result<tokio_rustls::client::TlsStream<S>, Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connector = tls_connector().map_err(|e| retry(format!("{name}: TLS setup: {e}")))?;
    let server = tokio_rustls::rustls::pki_types::ServerName::try_from(sni.to_string())
        .map_err(|_| permanent(format!("{name}: `{sni}` is not a valid TLS server name")))?;
    let deadline = deadline.unwrap_or_else(|| Instant::now() + CONNECT_TIMEOUT);
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

/// A chat of a provider that speaks its own protocol (IRC, XMPP, SMTP):
/// plain text, and no message ids (nothing to thread under, edit or delete).
pub(crate) trait NativeChat: fmt::Debug + Send + Sync {
    const KIND: &'static str;
    /// The platform's pace for one chat ([`Destination::default_rate`]).
    const RATE: Rate;
    /// [`super::kit::Chat::CARDS`]: the protocol has a card format (email's HTML part).
    const CARDS: bool = false;
    /// [`Destination::target`].
    fn place(&self) -> String;
    /// [`Destination::request`].
    fn native(&self, msg: &Message<'_>) -> Outbound;
    /// [`Destination::probe`].
    fn probe(&self) -> super::probe::Probe {
        super::probe::Probe::none()
    }
    /// [`Destination::check_card`].
    fn check_card(&self, card: &serde_json::Value) -> Result<(), String> {
        let _ = card;
        Ok(())
    }
}

impl<T: NativeChat> super::kit::Chat for T {
    const KIND: &'static str = T::KIND;
    const TARGET: &'static str = T::KIND;
    const DIALECT: Dialect = Dialect::Plain;
    const RATE: Option<Rate> = Some(T::RATE);
    const CARDS: bool = T::CARDS;

    fn target(&self) -> String {
        self.place()
    }

    fn request(&self, msg: &Message<'_>) -> Outbound {
        self.native(msg)
    }

    fn probe(&self) -> super::probe::Probe {
        NativeChat::probe(self)
    }

    fn check_card(&self, card: &serde_json::Value) -> Result<(), String> {
        NativeChat::check_card(self, card)
    }
}

/// The socket of one connection: bytes read but not yet parsed, bounded
/// writes, and the reasons a lost link gives (`name: … addr …`).
pub(crate) struct Wire {
    pub io: Box<dyn Io>,
    pub buf: Vec<u8>,
    pub addr: String,
    name: &'static str,
    pub last_tx: Instant,
}

impl Wire {
    pub(crate) fn new(name: &'static str, io: Box<dyn Io>, addr: String) -> Self {
        Self {
            io,
            buf: Vec::new(),
            addr,
            name,
            last_tx: Instant::now(),
        }
    }

    /// Reads more bytes into `buf`; past `max` unparsed bytes the server is
    /// `too_long`. Cancel safe: bytes are kept only once a read completed,
    /// so a `select!` may drop this future at any time.
    pub(crate) async fn fill(&mut self, max: usize, too_long: &str) -> io::Result<()> {
        if self.buf.len() > max {
            return Err(io::Error::new(io::ErrorKind::InvalidData, too_long));
        }
        let mut chunk = [0u8; 8192];
        let n = self.io.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Writes `data`, bounded by `WRITE_TIMEOUT`.
    pub(crate) async fn write(&mut self, data: &str) -> Result<(), Outcome> {
        let write = async {
            self.io.write_all(data.as_bytes()).await?;
            self.io.flush().await
        };
        match timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {
                self.last_tx = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(retry(format!(
                "{}: connection to {} lost while sending: {e}",
                self.name, self.addr
            ))),
            Err(_) => Err(retry(format!(
                "{}: {} stopped reading for {} s",
                self.name,
                self.addr,
                WRITE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The link failed while reading.
    pub(crate) fn lost(&self, e: io::Error) -> Outcome {
        retry(format!(
            "{}: connection to {} lost: {e}",
            self.name, self.addr
        ))
    }

    /// A last line before closing, if the server takes it within 2 s.
    pub(crate) async fn bye(&mut self, data: &str) {
        let _ = timeout(Duration::from_secs(2), self.write(data)).await;
    }
}

/// One protocol's side of the connection task. `Err(Outcome)` from any
/// method means the link failed (the supervisor drops it and backs off);
/// `Ok(outcome)` from [`Protocol::send`] is the message's own answer.
pub(crate) trait Protocol: Send + 'static {
    type Config: fmt::Debug + Send + Sync + 'static;
    type Job: Send + Sync + 'static;
    type Conn: Send;
    /// `irc`, `xmpp`: the first word of logs and reasons.
    const NAME: &'static str;

    /// The task's state, on first use.
    fn start(cfg: Arc<Self::Config>) -> Self;
    /// The job a payload asks for (`Err`: the message's outcome).
    fn job(payload: &serde_json::Value) -> Result<Self::Job, Outcome>;
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

/// The [`NativeSender`] of one provider instance: its settings and the
/// connection task's queue, the task started on first use.
pub(crate) struct Sender<P: Protocol> {
    pub cfg: Arc<P::Config>,
    tx: Mutex<Option<mpsc::Sender<Request<P::Job>>>>,
}

impl<P: Protocol> fmt::Debug for Sender<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(P::NAME).field("cfg", &self.cfg).finish()
    }
}

impl<P: Protocol> Sender<P> {
    pub(crate) fn new(cfg: Arc<P::Config>) -> Self {
        Self {
            cfg,
            tx: Mutex::new(None),
        }
    }

    /// The task's queue, starting it when there is none (first send) or
    /// it is gone (its runtime ended).
    fn queue(&self) -> Option<mpsc::Sender<Request<P::Job>>> {
        let mut slot = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = slot.as_ref().filter(|tx| !tx.is_closed()) {
            return Some(tx.clone());
        }
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(256);
        handle.spawn(run(P::start(self.cfg.clone()), rx));
        *slot = Some(tx.clone());
        Some(tx)
    }

    /// Hands `job` to the connection task and waits for its outcome.
    async fn enqueue(&self, job: P::Job) -> Outcome {
        let name = P::NAME;
        let (reply, answer) = oneshot::channel();
        let mut req = Request { job, reply };
        // Twice: a task whose runtime ended is replaced once.
        for _ in 0..2 {
            let Some(tx) = self.queue() else {
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

/// `doctor`'s check: a connection of its own (not the task's), opened and
/// logged in as a send would, then closed; no channel or room is joined and
/// nothing is said. A relay running with the same nick may make the server
/// refuse or rename this one.
impl<P: Protocol> super::probe::NativeProbe for Sender<P>
where
    P::Config: Sync,
{
    fn run(&self) -> Pin<Box<dyn Future<Output = Vec<super::probe::NativeCheck>> + Send + '_>> {
        use super::probe::{Judgement, NativeCheck};
        Box::pin(async move {
            let mut p = P::start(self.cfg.clone());
            let addr = p.addr();
            let judgement = match p.connect().await {
                Ok(mut c) => {
                    P::close(&mut c).await;
                    Judgement::pass(format!("{addr} accepted the connection and the login"))
                }
                Err(o) => {
                    Judgement::fail(reason_of(&o), "check server, port, tls and the credentials")
                }
            };
            let what = "connect and log in (joining is not checked)".to_string();
            vec![NativeCheck { what, judgement }]
        })
    }
}

impl<P: Protocol> NativeSender for Sender<P> {
    fn send<'a>(
        &'a self,
        payload: &'a serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        Box::pin(async move {
            match P::job(payload) {
                Ok(job) => self.enqueue(job).await,
                Err(o) => o,
            }
        })
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
                return Err(waiting(outcome.clone(), Some(*until - now)));
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
                waiting(o, None)
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
        let bad = [
            "",
            "irc.example:6697",
            "ircs://irc.example",
            "a b",
            "a/b",
            "irc://x",
            "h/x",
        ];
        for bad in bad {
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
