//! The admin pane over HTTP, as a browser without JavaScript uses it: log in
//! with the admin token, read chats and rules, filter with `?q=`, press
//! "send test message" (a CSRF-checked form) and see the mock receive it,
//! open a chat's dead letters. Forged form posts are refused.
//! (`scripts/ci/browser-test` drives the same pane in headless Chromium.)

mod common;

use std::time::Duration;

use common::*;
use reqwest::blocking::Client;
use reqwest::redirect::Policy;

const TOKEN: &str = "pane-admin-token";

/// `application/x-www-form-urlencoded`, as a browser posts a form.
trait FormBody {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::blocking::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().unwrap().to_string()
}

#[test]
fn pane_login_filter_test_button_and_dead_letters() {
    let mock = Mock::start();
    // The second chat always fails permanently: it ends in dead letters.
    mock.route("/broken", Reply::new(400, "bad payload"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("relay.toml");
    std::fs::write(
        &cfg,
        config(
            "0s",
            &[
                ("support-hook", &mock.url("/hook")),
                ("broken hook", &mock.url("/broken")),
            ],
            "admin_token = \"${RELAY_ADMIN_TOKEN}\"\n",
        ),
    )
    .unwrap();
    let relay = Relay::start(
        &cfg,
        &dir.path().join("data"),
        &[("RELAY_ADMIN_TOKEN", TOKEN)],
    );
    let http = Client::builder().redirect(Policy::none()).build().unwrap();
    let base = relay.admin_url("");

    // A browser without the token gets the login form; scripts get text.
    let r = http
        .get(&base)
        .header("Accept", "text/html")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let login_page = r.text().unwrap();
    assert!(login_page.contains("type=\"password\""), "{login_page}");
    assert_eq!(
        http.get(relay.admin_url("/api/status"))
            .send()
            .unwrap()
            .status(),
        401
    );
    let csrf = csrf_of(&login_page);

    let r = http
        .post(relay.admin_url("/login"))
        .form_body(&[("csrf", csrf.as_str()), ("token", "wrong")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(relay.admin_url("/login"))
        .form_body(&[("csrf", "forged"), ("token", TOKEN)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "login without the form's token");
    let r = http
        .post(relay.admin_url("/login"))
        .form_body(&[("csrf", csrf.as_str()), ("token", TOKEN)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    assert!(!set_cookie.contains(TOKEN), "the cookie is not the token");
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    // The pane: chats, rules, config hash, reload history, CSP.
    let r = http.get(&base).header("Cookie", &cookie).send().unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'sha256-") && csp.contains("frame-ancestors 'none'"));
    let html = r.text().unwrap();
    assert!(html.contains("data-chat=\"support-hook\""), "{html}");
    assert!(html.contains("data-chat=\"broken hook\""));
    assert!(html.contains("<li>watch all</li>"));
    assert!(html.contains("Reload history"));
    let status: serde_json::Value = http
        .get(relay.admin_url("/api/status"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(html.contains(&status["config"]["hash"].as_str().unwrap()[..12]));

    // Filter without JavaScript: ?q= hides the other rows.
    let filtered = http
        .get(format!("{base}/?q=support"))
        .header("Cookie", &cookie)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        filtered.contains("data-chat=\"support-hook\" data-search=\"support-hook webhook webhook")
    );
    assert!(
        filtered.contains("(<span id=\"shown\">1</span> of 2)"),
        "{filtered}"
    );
    assert_eq!(filtered.matches(" hidden>").count(), 1);

    // "Send test message": the form post needs the page's token and our origin.
    let csrf = csrf_of(&html);
    let test_url = relay.admin_url("/chats/support-hook/test");
    let post = |form: &[(&str, &str)], origin: Option<&str>, site: Option<&str>| {
        let mut req = http
            .post(&test_url)
            .header("Cookie", &cookie)
            .form_body(form);
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        if let Some(s) = site {
            req = req.header("Sec-Fetch-Site", s);
        }
        req.send().unwrap()
    };
    assert_eq!(post(&[], None, None).status(), 403);
    assert_eq!(post(&[("csrf", "x")], None, None).status(), 403);
    assert_eq!(
        post(&[("csrf", &csrf)], Some("http://evil.example"), None).status(),
        403
    );
    assert_eq!(
        post(&[("csrf", &csrf)], None, Some("cross-site")).status(),
        403
    );
    let origin = format!("http://{}", relay.admin);
    let r = post(&[("csrf", &csrf)], Some(&origin), Some("same-origin"));
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/?sent=support-hook#chat-support-hook"
    );
    let got = mock.wait_for(1, Duration::from_secs(15));
    assert_eq!(got[0].path, "/hook");
    assert!(got[0].body.contains("Test message from discourse-relay"));
    // Refused posts send nothing: one they queued would sit ahead of the
    // accepted one in the chat's queue, so once that queue is empty every
    // test message it held has been delivered and counted.
    let end = std::time::Instant::now() + Duration::from_secs(15);
    let hook = loop {
        let s: serde_json::Value = http
            .get(relay.admin_url("/api/status"))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let hook = s["chats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "support-hook")
            .unwrap()
            .clone();
        if hook["queue_depth"] == 0 && hook["delivered"].as_u64() >= Some(1) {
            break hook;
        }
        assert!(std::time::Instant::now() < end, "queue not drained: {hook}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(hook["delivered"], 1, "refused posts send nothing: {hook}");
    assert_eq!(mock.requests().len(), 1, "{:#?}", mock.requests());
    let after = http
        .get(format!("{base}/?sent=support-hook"))
        .header("Cookie", &cookie)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(after.contains("Test message queued for chat <strong>support-hook</strong>"));

    // A permanent failure becomes a dead letter, listed with the platform's reason.
    let r = http
        .post(relay.admin_url("/chats/broken%20hook/test"))
        .header("Cookie", &cookie)
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let end = std::time::Instant::now() + Duration::from_secs(15);
    let letters = loop {
        let v: serde_json::Value = http
            .get(relay.admin_url("/api/chats/broken%20hook/dead-letters"))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if v.as_array().is_some_and(|a| !a.is_empty()) || std::time::Instant::now() > end {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(letters[0]["what"], "test message requested by admin pane");
    assert!(
        letters[0]["reason"].as_str().unwrap().contains("400"),
        "{letters}"
    );
    let page = http
        .get(relay.admin_url("/chats/broken%20hook/dead-letters"))
        .header("Cookie", &cookie)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        page.contains("<h1>Dead letters of broken hook</h1>"),
        "{page}"
    );
    assert!(page.contains("test message requested by admin pane"));
    let pane = http
        .get(&base)
        .header("Cookie", &cookie)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        pane.contains(
            "href=\"/chats/broken%20hook/dead-letters\" title=\"see the failed messages\">1</a>"
        ),
        "{pane}"
    );
    assert_eq!(
        http.get(relay.admin_url("/chats/nope/dead-letters"))
            .header("Cookie", &cookie)
            .send()
            .unwrap()
            .status(),
        404
    );

    // Log out: the cookie is cleared and no longer needed by the server to refuse.
    let r = http
        .post(relay.admin_url("/logout"))
        .header("Cookie", &cookie)
        .form_body(&[("csrf", csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}
