//! `serve` on the PostgreSQL store (`[server] store`, `serve --store`): the
//! real binary against the throwaway PostgreSQL of scripts/ci/start-postgres
//! (`DISCOURSE_RELAY_TEST_PG`; without it these SKIP, and fail under
//! CI=true), a schema per test. The store's own behaviour is the shared
//! suite in src/delivery/store_suite.rs; this is what a user sees.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// A config with one webhook chat whose `[server] store` is `${RELAY_STORE}`.
fn pg_config(dir: &std::path::Path, mock: &Mock) -> std::path::PathBuf {
    let text = config("0s", &[("hook", &mock.url("/hook"))], "").replace(
        "[server]\nmax_age = \"1h\"\n",
        "[server]\nmax_age = \"1h\"\nstore = \"${RELAY_STORE}\"\n",
    );
    assert!(text.contains("RELAY_STORE"), "the config's [server] moved");
    write(dir, "relay.toml", text)
}

fn post_ids(got: &[Recorded]) -> Vec<u64> {
    got.iter()
        .map(|r| r.json()["post"]["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn serves_from_postgres_and_kill_9_loses_nothing_that_was_accepted() {
    let Some(url) = postgres_store("kill9") else {
        return;
    };
    let dir = temp();
    let dead = Mock::start();
    // First run: the chat answers 500, so everything stays queued.
    dead.always(Reply::new(500, "down"));
    let cfg = pg_config(dir.path(), &dead);
    let env = [("RELAY_STORE", url.as_str())];
    let relay = Relay::start(&cfg, &dir.path().join("data-1"), &env);
    let names = [
        "post_created_first_post",
        "post_created_reply_group_mention",
        "post_created_subcategory",
    ];
    for n in names {
        assert_eq!(relay.post_fixture(n).0, 202);
    }
    // Duplicates are caught by the shared window.
    assert_eq!(relay.post_fixture(names[0]).0, 200);
    assert!(
        !relay.logs().contains("relay-ci-password"),
        "the password reached the log"
    );
    relay.kill9();
    // Nothing was in the redb data dir: the queue is in PostgreSQL.
    assert!(!dir.path().join("data-1/relay.redb").exists());

    // Second run, another data dir, the chat up: all delivered, in order, once.
    let mock = Mock::start();
    let cfg = pg_config(dir.path(), &mock);
    let relay = Relay::start(&cfg, &dir.path().join("data-2"), &env);
    let got = mock.wait_for(3, WAIT);
    assert_eq!(post_ids(&got), vec![1001, 1003, 1012], "all, in order");
    let marker = relay.post_marker("post_created_first_post");
    let sent = relay.settle(&mock, &marker, 1);
    assert_eq!(sent.len(), 3, "none twice: {sent:#?}");
    assert_eq!(relay.status()["storage"]["ok"], true);
}

#[test]
fn an_unreachable_database_at_start_is_a_clear_error() {
    // No server needed: nothing listens on port 1.
    let dir = temp();
    let mock = Mock::start();
    let cfg = write(
        dir.path(),
        "relay.toml",
        config("0s", &[("hook", &mock.url("/hook"))], ""),
    );
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--store", "postgres://relay:s3cret-pw@127.0.0.1:1/relay"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("DISCOURSE_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to PostgreSQL at relay@127.0.0.1:1/relay"),
        "{err}"
    );
    assert!(
        !err.contains("s3cret-pw"),
        "the password was printed: {err}"
    );
}

/// A TCP forwarder in front of the database that can be cut (every
/// connection closed, new ones refused) and restored: PostgreSQL going away
/// for one relay, while the other tests keep theirs.
struct Cut {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Cut {
    fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, open2) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut o = open2.lock().unwrap();
                o.push(client.try_clone().unwrap());
                o.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self { addr, up, open }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[test]
fn postgres_gone_mid_run_answers_503_and_recovers_by_itself() {
    let Some(url) = postgres_store("gone") else {
        return;
    };
    // The same database, reached through the forwarder.
    let parsed = url::Url::parse(&url).unwrap();
    let upstream = format!(
        "{}:{}",
        parsed.host_str().unwrap(),
        parsed.port().unwrap_or(5432)
    );
    let cut = Cut::start(upstream.parse().unwrap());
    let mut via = parsed.clone();
    via.set_port(Some(cut.addr.port())).unwrap();
    let dir = temp();
    let mock = Mock::start();
    let cfg = pg_config(dir.path(), &mock);
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[("RELAY_STORE", via.as_str())],
    );
    assert_eq!(relay.post_fixture("post_created_first_post").0, 202);
    mock.wait_for(1, WAIT);
    // Acked first: an ack cut off would re-send it (at-least-once), which
    // is not what this test is about.
    relay.wait_status("the queue empty", |s| s["chats"][0]["queue_depth"] == 0);

    cut.cut();
    let (status, body) = relay.post_fixture("post_created_reply_group_mention");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("storage unavailable"), "{body}");
    let s = relay.status();
    assert_eq!(s["storage"]["ok"], false, "{s:#}");
    assert!(
        s["storage"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("PostgreSQL"),
        "{s:#}"
    );

    // Back: Discourse's retry of the refused event is accepted and delivered.
    cut.restore();
    let t = Instant::now();
    let mut last = (0, String::new());
    while t.elapsed() < WAIT {
        last = relay.post_fixture("post_created_reply_group_mention");
        if last.0 == 202 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(last.0, 202, "no recovery: {}", last.1);
    eprintln!("recovered {:?} after the database came back", t.elapsed());
    let got = mock.wait_for(2, WAIT);
    assert_eq!(post_ids(&got), vec![1001, 1003]);
    relay.wait_status("storage ok again", |s| s["storage"]["ok"] == true);
    assert!(!relay.logs().contains("relay-ci-password"));
}

#[test]
fn kill_9_after_the_queue_drained_re_sends_nothing() {
    let Some(url) = postgres_store("drained") else {
        return;
    };
    let dir = temp();
    let mock = Mock::start();
    let cfg = pg_config(dir.path(), &mock);
    let env = [("RELAY_STORE", url.as_str())];
    let relay = Relay::start(&cfg, &dir.path().join("data"), &env);
    for n in [
        "post_created_first_post",
        "post_created_reply_group_mention",
    ] {
        assert_eq!(relay.post_fixture(n).0, 202);
    }
    mock.wait_for(2, WAIT);
    // The ack that emptied the queue was a synchronous commit.
    relay.wait_status("the queue drained", |s| s["chats"][0]["queue_depth"] == 0);
    relay.kill9();
    let relay = Relay::start(&cfg, &dir.path().join("data"), &env);
    let marker = relay.post_marker("post_created_first_post");
    let sent = relay.settle(&mock, &marker, 1);
    assert_eq!(sent.len(), 2, "re-sent after the kill: {sent:#?}");
    // A clean stop closes the store's connections without a panic (they
    // must not be closed on the async runtime's threads).
    let mut relay = relay;
    relay.signal("TERM");
    let status = relay.child.wait().unwrap();
    assert!(status.success(), "{status:?}:\n{}", relay.logs());
}
