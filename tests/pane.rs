//! The admin pane over HTTP, as a browser without JavaScript uses it: log in
//! with the admin token, read chats and rules, filter with `?q=`, press
//! "send test message" (a CSRF-checked form) and see the mock receive it,
//! open a chat's dead letters. Forged form posts are refused. Each chat's
//! row has a chart of its last 24 hours and links to its page of recent
//! deliveries; both survive a restart.
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

/// A config with a working hook and one that always fails permanently
/// (`/broken` must answer 400), behind the admin token.
fn two_hooks(mock: &Mock, dir: &std::path::Path) -> std::path::PathBuf {
    let text = config(
        "0s",
        &[
            ("support-hook", &mock.url("/hook")),
            ("broken hook", &mock.url("/broken")),
        ],
        "admin_token = \"${RELAY_ADMIN_TOKEN}\"\n",
    );
    write(dir, "relay.toml", text)
}

#[test]
fn pane_login_filter_test_button_and_dead_letters() {
    let mock = Mock::start();
    // The second chat always fails permanently: it ends in dead letters.
    mock.route("/broken", Reply::new(400, "bad payload"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = two_hooks(&mock, dir.path());
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

/// The chart (`<svg class="hours" ...>...</svg>`) in `html`'s row of `chat`.
fn chart_of<'a>(html: &'a str, chat: &str) -> &'a str {
    let row = &html[html
        .find(&format!("data-chat=\"{chat}\""))
        .unwrap_or_else(|| panic!("no row for {chat}: {html}"))..];
    let svg = &row[row
        .find("<svg class=\"hours\"")
        .expect("a chart in the row")..];
    &svg[..svg.find("</svg>").expect("the chart ends") + 6]
}

/// (delivered, retried, failed) summed over a chart's bar titles, and how
/// many bars it has.
fn bar_totals(svg: &str) -> ((u64, u64, u64), usize) {
    let mut sum = (0, 0, 0);
    let mut bars = 0;
    for title in svg.split("<title>").skip(1) {
        let title = &title[..title.find("</title>").unwrap()];
        let counts = title.rsplit(": ").next().unwrap();
        let n: Vec<u64> = counts
            .split(", ")
            .map(|c| c.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(
            counts.ends_with(" failed") && counts.contains(" delivered, "),
            "{title}"
        );
        sum = (sum.0 + n[0], sum.1 + n[1], sum.2 + n[2]);
        bars += 1;
    }
    (sum, bars)
}

#[test]
fn pane_charts_each_chats_hours_and_lists_its_deliveries_across_a_restart() {
    let mock = Mock::start();
    mock.route("/broken", Reply::new(400, "bad payload"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = two_hooks(&mock, dir.path());
    let data = dir.path().join("data");
    let env = [("RELAY_ADMIN_TOKEN", TOKEN)];
    let http = Client::builder().redirect(Policy::none()).build().unwrap();
    let get = |relay: &Relay, path: &str| {
        http.get(relay.admin_url(path))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
    };
    let mut relay = Relay::start(&cfg, &data, &env);

    // Three posts reach both chats: sent to one, dead letters in the other.
    let markers: Vec<String> = (0..3)
        .map(|_| relay.post_marker("post_created_first_post"))
        .collect();
    let end = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s: serde_json::Value = get(&relay, "/api/status").json().unwrap();
        let chats = s["chats"].as_array().unwrap();
        let of = |name: &str| chats.iter().find(|c| c["name"] == name).unwrap().clone();
        if of("support-hook")["delivered"] == 3 && of("broken hook")["dead_letters"] == 3 {
            break;
        }
        assert!(std::time::Instant::now() < end, "not delivered: {s:#}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let check_pane = |relay: &Relay| {
        let html = get(relay, "/").text().unwrap();
        let ok = chart_of(&html, "support-hook");
        assert!(ok.contains("role=\"img\""), "{ok}");
        assert!(
            ok.contains(
                "aria-label=\"support-hook: last 24 hours, 3 delivered, 0 retried, 0 failed\""
            ),
            "{ok}"
        );
        // The bars' titles say the same (hour by hour, however the hours fell).
        assert_eq!(bar_totals(ok), ((3, 0, 0), 24), "{ok}");
        let broken = chart_of(&html, "broken hook");
        assert_eq!(bar_totals(broken), ((0, 0, 3), 24), "{broken}");
        assert!(broken.contains("class=\"bar-err\""), "{broken}");
        assert!(!broken.contains("class=\"bar-ok\""), "{broken}");
        assert!(
            html.contains("<a href=\"/chats/broken%20hook\" class=\"chat-link\">broken hook</a>")
        );
    };
    check_pane(&relay);

    let check_pages = |relay: &Relay| {
        // The chat's page lists what was sent, newest first.
        let r = get(relay, "/chats/support-hook");
        assert_eq!(r.status(), 200);
        let page = r.text().unwrap();
        assert!(page.contains("<h1>support-hook</h1>"), "{page}");
        assert_eq!(
            page.matches("<tr class=\"delivery sent\">").count(),
            3,
            "{page}"
        );
        let (first, last) = (
            page.find(markers[2].as_str()).unwrap(),
            page.find(markers[0].as_str()).unwrap(),
        );
        assert!(first < last, "newest first: {page}");
        assert!(page.contains("post created · topic "), "{page}");
        assert!(page.contains("<svg class=\"hours big\" role=\"img\""));
        let v: serde_json::Value = get(relay, "/api/chats/support-hook/deliveries")
            .json()
            .unwrap();
        let titles: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, [&markers[2], &markers[1], &markers[0]], "{v:#}");
        assert!(v.as_array().unwrap().iter().all(|d| d["result"] == "sent"
            && d["kind"] == "post_created"
            && d["latency_ms"].is_u64()));
        // The failing chat's page says why.
        let page = get(relay, "/chats/broken%20hook").text().unwrap();
        assert_eq!(
            page.matches("<tr class=\"delivery dead_lettered\">")
                .count(),
            3,
            "{page}"
        );
        assert!(page.contains("<span class=\"error\">dead-lettered</span><pre class=\"reason\">"));
        assert!(page.contains("400"), "{page}");
        let v: serde_json::Value = get(relay, "/api/chats/broken%20hook/deliveries")
            .json()
            .unwrap();
        assert!(v[0]["reason"].as_str().unwrap().contains("400"), "{v:#}");
    };
    check_pages(&relay);

    // Unknown chats are 404; without the token, 401.
    assert_eq!(get(&relay, "/chats/nope").status(), 404);
    assert_eq!(get(&relay, "/api/chats/nope/deliveries").status(), 404);
    for path in ["/chats/support-hook", "/api/chats/support-hook/deliveries"] {
        let r = http.get(relay.admin_url(path)).send().unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }

    // A clean restart keeps the counts and the log (they are in the store).
    relay.signal("TERM");
    let _ = relay.child.wait();
    drop(relay);
    let relay = Relay::start(&cfg, &data, &env);
    check_pane(&relay);
    check_pages(&relay);
}
