//! The web interface of `rutella daemon` in a real browser: headless
//! Chromium (Debian's `chromium`), driven over the DevTools protocol, opens
//! the page of a daemon joined to two `rutella serve` peers, enters the
//! token (a wrong one first), searches, downloads a file to 100%, cancels a
//! second (slowed by the download limit it sets in the page), changes the
//! upload limit, and looks at the page on a phone-wide screen. Any
//! JavaScript exception or console error fails the test.
//!
//! Everything is on loopback, and Chromium runs with its background
//! networking off and every other address sent to a closed local proxy.
//! Address plan: 127.0.72.0/24.
//! Screenshots go to the test's temporary folder and, when
//! `RUTELLA_SCREENSHOTS=DIR` is set, are copied there.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::log::{
    EnableParams as LogEnable, EventEntryAdded, LogEntryLevel, LogEntrySource,
};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use common::{bin, pattern, wait_until, write_file, Serve, FAST};
use futures_lite::StreamExt;

const SMALL: &str = "webui small song.ogg";
const BIG: &str = "webui big film.mkv";
/// A name that is markup: the page must show it as text.
const MARKUP: &str = "webui <img src=x> & <b>bold</b>.txt";
const SMALL_LEN: usize = 300_000;
const BIG_LEN: usize = 4 << 20;
/// The download limit the page sets before the big download, so that it is
/// still running when the test cancels it (4 MiB at 64 KiB/s: about a minute).
const SLOW_KIB: u64 = 64;
const UPLOAD_KIB: u64 = 512;
const WAIT: Duration = Duration::from_secs(30);

/// Debian's Chromium, or the one `RUTELLA_CHROMIUM` names.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RUTELLA_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The Chromium flags: headless, no sandbox (tests run as root), and nothing
/// that talks to the outside: no background networking, component updates,
/// sync, QUIC; and any address that is not loopback goes to a closed proxy
/// port on 127.0.0.1 (loopback itself is always reached directly).
fn chromium_flags() -> Vec<String> {
    [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--disable-dev-shm-usage",
        "--metrics-recording-only",
        "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
        "--proxy-server=http://127.0.0.1:9",
        "--lang=en-US",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// One HTTP/1.1 request to the daemon's API, answered as (status, body).
fn http(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&api, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get_json(api: SocketAddr, path: &str, token: &str) -> serde_json::Value {
    let (status, body) = http(api, "GET", path, token, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn web_interface_in_chromium() {
    let Some(chrome) = chromium() else {
        println!(
            "skipping the web interface test: chromium is not installed (apt-get install chromium)"
        );
        return;
    };

    // Two peers: the small file on the first, the big one on both.
    let shares = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let small = pattern(SMALL_LEN, 11);
    let big = pattern(BIG_LEN, 12);
    write_file(&shares[0].path().join(SMALL), &small);
    write_file(&shares[0].path().join(BIG), &big);
    write_file(&shares[1].path().join(BIG), &big);
    write_file(&shares[1].path().join(MARKUP), b"text, not markup");
    let p1 = Serve::start(&[
        "--share",
        shares[0].path().to_str().unwrap(),
        "--bind",
        "127.0.72.2",
    ]);
    let p2 = Serve::start(&[
        "--share",
        shares[1].path().to_str().unwrap(),
        "--bind",
        "127.0.72.3",
        "--connect",
        "127.0.72.2",
    ]);

    // The daemon, with its settings, token and api.json in its own folder.
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join("settings.toml");
    let downloads = home.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let own_share = home.path().join("share");
    std::fs::create_dir_all(&own_share).unwrap();
    let mut cmd = bin();
    cmd.env("RUTELLA_CONFIG", &settings)
        .arg("daemon")
        .arg("--no-port-mapping")
        .args(FAST)
        .args([
            "--bind",
            "127.0.72.4",
            "--api-listen",
            "127.0.72.4:0",
            "--no-lan-discovery",
        ])
        .args(["--connect", "127.0.72.2", "--connect", "127.0.72.3"])
        .arg("--share")
        .arg(&own_share)
        .arg("--downloads")
        .arg(&downloads);
    let daemon_dir = tempfile::tempdir().unwrap();
    let daemon = Serve::spawn(cmd, daemon_dir);
    let api_json = home.path().join("api.json");
    daemon.wait_log("control API listening", WAIT);
    wait_until("the daemon writes api.json", WAIT, || api_json.exists());
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&api_json).unwrap()).unwrap();
    let url = info["url"].as_str().unwrap().to_string();
    let api: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let token = std::fs::read_to_string(home.path().join("api-token"))
        .unwrap()
        .trim()
        .to_string();
    wait_until("the daemon joins both peers", WAIT, || {
        get_json(api, "/api/v1/peers", &token)
            .as_array()
            .map_or(0, Vec::len)
            >= 2
    });

    let shots = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let errors = rt.block_on(drive(Drive {
        chrome,
        url,
        api,
        token: token.clone(),
        downloads: downloads.clone(),
        small,
        shots: shots.path().to_path_buf(),
    }));

    if let Some(dir) = std::env::var_os("RUTELLA_SCREENSHOTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in files_under(shots.path()) {
            std::fs::copy(shots.path().join(&name), dir.join(&name)).unwrap();
        }
    }
    assert!(
        errors.is_empty(),
        "the browser console shows errors:\n{}\n(daemon log: {})",
        errors.join("\n"),
        daemon.log_text()
    );
    drop((p1, p2, daemon));
}

struct Drive {
    chrome: PathBuf,
    url: String,
    api: SocketAddr,
    token: String,
    downloads: PathBuf,
    small: Vec<u8>,
    shots: PathBuf,
}

/// What the page shows, read by a script.
async fn js<T: serde::de::DeserializeOwned>(page: &Page, script: &str) -> T {
    page.evaluate(script)
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
        .into_value()
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Waits (bounded, polling the page every 100 ms) until `script` is true.
async fn until(page: &Page, what: &str, script: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if js::<bool>(page, script).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}; the page says:\n{}",
            js::<String>(page, "document.body.innerText").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clears the input `selector` and types `text` into it, as a person would.
async fn type_into(page: &Page, selector: &str, text: &str) {
    js::<bool>(
        page,
        &format!("(document.querySelector({selector:?}).value = '', true)"),
    )
    .await;
    page.find_element(selector)
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(text)
        .await
        .unwrap();
}

async fn click(page: &Page, selector: &str) {
    page.find_element(selector)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn screenshot(page: &Page, dir: &Path, name: &str) {
    let png = page
        .screenshot(
            ScreenshotParams::builder()
                .format(CaptureScreenshotFormat::Png)
                .build(),
        )
        .await
        .unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// The `li` of the search result or download named `name`, as a selector.
fn item(list: &str, name: &str) -> String {
    // The names are plain ASCII without quotes; they become a CSS
    // attribute selector through a data attribute the test sets.
    format!("{list} li[data-test-name={name:?}]")
}

/// Marks the items of `list` with their names so that a selector finds one.
async fn mark(page: &Page, list: &str) {
    js::<bool>(
        page,
        &format!(
            "(document.querySelectorAll('{list} li').forEach(li => {{ const n = li.querySelector('.name'); if (n) li.dataset.testName = n.textContent; }}), true)"
        ),
    )
    .await;
}

/// Runs the whole visit; returns the console errors seen.
async fn drive(d: Drive) -> Vec<String> {
    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable(&d.chrome)
        .disable_default_args()
        .no_sandbox()
        .user_data_dir(profile.path())
        .window_size(1280, 900)
        .viewport(Viewport {
            width: 1280,
            height: 900,
            device_scale_factor: Some(1.0),
            emulating_mobile: false,
            is_landscape: true,
            has_touch: false,
        })
        .args(chromium_flags())
        .launch_timeout(WAIT)
        .request_timeout(WAIT)
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(config).await.unwrap();
    let pump = tokio::spawn(async move { while handler.next().await.is_some() {} });

    let page = browser.new_page("about:blank").await.unwrap();
    page.execute(LogEnable::default()).await.unwrap();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut exceptions = page.event_listener::<EventExceptionThrown>().await.unwrap();
    let mut console = page
        .event_listener::<EventConsoleApiCalled>()
        .await
        .unwrap();
    let mut log = page.event_listener::<EventEntryAdded>().await.unwrap();
    let seen = Arc::clone(&errors);
    let watch = tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                Some(e) = exceptions.next() => format!("exception: {}", e.exception_details.text),
                Some(c) = console.next() => {
                    if !matches!(c.r#type, ConsoleApiCalledType::Error | ConsoleApiCalledType::Assert) {
                        continue;
                    }
                    format!("console.{:?}: {:?}", c.r#type, c.args.iter().map(|a| a.value.clone()).collect::<Vec<_>>())
                }
                Some(l) = log.next() => {
                    let l = &l.entry;
                    // The wrong token's 401 is the one error the test causes.
                    let expected = l.source == LogEntrySource::Network && l.text.contains("401");
                    if l.level != LogEntryLevel::Error || expected {
                        continue;
                    }
                    format!("log ({:?}): {} {}", l.source, l.text, l.url.clone().unwrap_or_default())
                }
                else => break,
            };
            seen.lock().unwrap().push(line);
        }
    });

    page.goto(d.url.as_str()).await.unwrap();

    // No token yet: the page asks for it. A wrong one is refused with the
    // daemon's reason, and asked again.
    until(
        &page,
        "the page asks for the token",
        "!document.getElementById('token-section').hidden",
    )
    .await;
    type_into(&page, "#token-input", "0123456789abcdef-not-the-token").await;
    click(&page, "#token-save").await;
    until(
        &page,
        "a wrong token is refused with the reason",
        "!document.getElementById('token-error').hidden && document.getElementById('token-error').textContent.startsWith('The daemon refused the token: ')",
    )
    .await;
    let refused: String = js(&page, "document.getElementById('token-error').textContent").await;
    assert!(
        refused.len() > "The daemon refused the token: . Enter it again.".len(),
        "{refused}"
    );
    screenshot(&page, &d.shots, "webui-token.png").await;

    type_into(&page, "#token-input", &d.token).await;
    click(&page, "#token-save").await;
    until(
        &page,
        "the page opens with the right token",
        "!document.getElementById('app').hidden",
    )
    .await;
    until(
        &page,
        "the status line shows the peers",
        "document.getElementById('status').textContent.includes('2 peers')",
    )
    .await;
    let kept: String = js(&page, "localStorage.getItem('rutella.api-token') || ''").await;
    assert_eq!(kept, d.token, "the page keeps the token");

    // Search: the big file is on both peers, the small one on one.
    type_into(&page, "#search-input", "webui").await;
    click(&page, "#search-button").await;
    until(
        &page,
        "both files are found, the big one on 2 peers",
        &format!(
            "(() => {{ const items = [...document.querySelectorAll('#results li')]; \
               const of = (n) => items.find(li => li.querySelector('.name').textContent === n); \
               const s = of({SMALL:?}), b = of({BIG:?}), m = of({MARKUP:?}); \
               return !!s && !!b && !!m && b.querySelector('.meta').textContent.includes('same file on 2 peers'); }})()"
        ),
    )
    .await;
    // The name that is markup is shown as it is, and made no element.
    let made: u32 = js(
        &page,
        "document.querySelectorAll('#results img, #results b').length",
    )
    .await;
    assert_eq!(made, 0, "a file name became markup");
    mark(&page, "#results").await;

    // The small file: downloaded to 100 %, byte for byte.
    click(&page, &format!("{} button.get", item("#results", SMALL))).await;
    until(
        &page,
        "the download appears",
        "document.querySelectorAll('#downloads li').length === 1",
    )
    .await;
    mark(&page, "#downloads").await;
    let small_item = item("#downloads", SMALL);
    until(
        &page,
        "the small download reaches 100 %",
        &format!(
            "(() => {{ const li = document.querySelector('{small_item}'); \
               return !!li && li.querySelector('progress').value === 100 && \
               li.querySelector('.pct').textContent === '100%' && \
               li.querySelector('.state').textContent === 'done'; }})()"
        ),
    )
    .await;
    let got = std::fs::read(d.downloads.join(SMALL)).unwrap();
    assert!(
        got == d.small,
        "the downloaded file differs from the shared one"
    );

    // The download limit, set in the page, slows the big file down.
    type_into(&page, "#download-limit", &SLOW_KIB.to_string()).await;
    click(&page, "#limits-save").await;
    until(
        &page,
        "the download limit is saved",
        "document.getElementById('limits-info').textContent.startsWith('Saved')",
    )
    .await;
    let s = get_json(d.api, "/api/v1/settings", &d.token);
    assert_eq!(s["download_limit_bps"], SLOW_KIB * 1024, "{s}");

    click(&page, &format!("{} button.get", item("#results", BIG))).await;
    until(
        &page,
        "the second download appears",
        "document.querySelectorAll('#downloads li').length === 2",
    )
    .await;
    mark(&page, "#downloads").await;
    let big_item = item("#downloads", BIG);
    until(
        &page,
        "the big download runs",
        &format!(
            "(() => {{ const li = document.querySelector('{big_item}'); \
               return !!li && li.querySelector('.state').textContent === 'running' && li.querySelector('progress').value > 0; }})()"
        ),
    )
    .await;
    screenshot(&page, &d.shots, "webui-downloading.png").await;
    click(&page, &format!("{big_item} button.cancel")).await;
    until(
        &page,
        "the big download shows cancelled",
        &format!(
            "(() => {{ const li = document.querySelector('{big_item}'); \
               return !!li && li.querySelector('.state').textContent === 'cancelled' && !!li.querySelector('button.remove'); }})()"
        ),
    )
    .await;
    // No partial data (NAME.HASH.part, .tree, .state) is left, and the
    // node's list of unfinished downloads no longer names it.
    let left = files_under(&d.downloads);
    assert!(left.contains(&SMALL.to_string()), "{left:?}");
    for f in &left {
        assert!(!f.contains(BIG), "a cancelled download left {f} ({left:?})");
        let text = std::fs::read_to_string(d.downloads.join(f)).unwrap_or_default();
        assert!(
            f == SMALL || !text.contains(BIG),
            "{f} still names the cancelled download"
        );
    }

    // The upload limit, changed in the page, is the daemon's setting.
    type_into(&page, "#upload-limit", &UPLOAD_KIB.to_string()).await;
    click(&page, "#limits-save").await;
    until(
        &page,
        "the upload limit is saved",
        &format!(
            "document.getElementById('limits-info').textContent.startsWith('Saved: upload {}.0 KiB/s')",
            UPLOAD_KIB
        ),
    )
    .await;
    let s = get_json(d.api, "/api/v1/settings", &d.token);
    assert_eq!(s["upload_limit_bps"], UPLOAD_KIB * 1024, "{s}");

    js::<bool>(&page, "(window.scrollTo(0, 0), true)").await;
    screenshot(&page, &d.shots, "webui.png").await;

    // A phone-wide screen: one column, nothing wider than the screen.
    page.execute(
        SetDeviceMetricsOverrideParams::builder()
            .width(390)
            .height(844)
            .device_scale_factor(2.0)
            .mobile(true)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    until(
        &page,
        "the page fits 390 px",
        "document.documentElement.scrollWidth <= 390",
    )
    .await;
    js::<bool>(&page, "(window.scrollTo(0, 0), true)").await;
    screenshot(&page, &d.shots, "webui-phone.png").await;

    // Let events of the last steps arrive before looking at the console.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = browser.close().await;
    let _ = browser.wait().await;
    watch.abort();
    pump.abort();
    let errors = errors.lock().unwrap().clone();
    errors
}
