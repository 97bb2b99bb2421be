//! The WebDriver client against a real headless Chromium: a tiny page served from a thread,
//! driven through every command the client has. Needs `chromium` and `chromedriver`
//! (`cargo xtask setup`); without them the test fails, it does not skip.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use observer_lab::browser::{Browser, artefact_dir};
use serde_json::{Value, json};

const PAGE: &str = r#"<!doctype html>
<html>
<head>
<title>browser test</title>
<style>
  body { margin: 0; font: 16px sans-serif; }
  canvas { position: absolute; left: 100px; top: 200px; }
</style>
</head>
<body>
<button id="go" data-kind="primary">Go</button>
<div id="out"></div>
<canvas id="c" width="400" height="300"></canvas>
<script>
  document.getElementById('go').addEventListener('click', () => {
    document.getElementById('out').textContent = 'button was clicked';
  });
  const canvas = document.getElementById('c');
  const g = canvas.getContext('2d');
  g.fillStyle = '#3366cc';
  g.fillRect(0, 0, 400, 300);
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top, trusted: e.isTrusted };
  };
  canvas.addEventListener('click', (e) => { window.clicked = at(e); });
  canvas.addEventListener('dblclick', (e) => { window.dblclicked = at(e); });
  setTimeout(() => { window.later = 'ready'; }, 300);
  console.error('logged by the page');
</script>
</body>
</html>
"#;

/// Serves `PAGE` for every request, forever, from a thread; returns its URL.
fn serve_page() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let (status, body) = if request.starts_with(b"GET / ") {
                ("200 OK", PAGE)
            } else {
                ("404 Not Found", "")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(url)
}

fn number(value: &Value, key: &str) -> Result<f64> {
    value
        .get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("no number {key} in {value}"))
}

fn exercise(browser: &Browser, url: &str) -> Result<()> {
    browser.goto(url)?;
    ensure!(browser.url()? == url, "url is {}", browser.url()?);

    // Find, attributes, element click, text.
    let button = browser.find("#go")?;
    ensure!(button.attribute("data-kind")?.as_deref() == Some("primary"));
    ensure!(button.attribute("data-missing")?.is_none());
    ensure!(button.text()? == "Go");
    button.click()?;
    let out = browser.find("#out")?.text()?;
    ensure!(out == "button was clicked", "text after click: {out:?}");
    ensure!(browser.find_all("button, #out, canvas")?.len() == 3);
    ensure!(browser.find_all(".nothing")?.is_empty());

    // A real mouse click at viewport coordinates (the canvas is at 100,200).
    browser.click_at(100.0 + 123.4, 200.0 + 56.6)?;
    let clicked = browser.execute("return window.clicked", vec![])?;
    let (x, y) = (number(&clicked, "x")?, number(&clicked, "y")?);
    ensure!(
        (x - 123.0).abs() <= 2.0 && (y - 57.0).abs() <= 2.0,
        "clicked at {clicked}"
    );
    ensure!(
        clicked["trusted"] == json!(true),
        "untrusted click: {clicked}"
    );
    browser.double_click_at(300.0, 400.0)?;
    let dblclicked = browser.execute("return window.dblclicked", vec![])?;
    let (x, y) = (number(&dblclicked, "x")?, number(&dblclicked, "y")?);
    ensure!(
        (x - 200.0).abs() <= 2.0 && (y - 200.0).abs() <= 2.0,
        "double-clicked at {dblclicked}"
    );

    // Waiting for a value set later, and timing out with a useful message.
    let later = browser.wait_for("return window.later", Duration::from_secs(5))?;
    ensure!(later == json!("ready"), "waited for {later}");
    let started = Instant::now();
    let err = browser
        .wait_for("return window.never", Duration::from_millis(300))
        .expect_err("wait_for should time out");
    let message = format!("{err:#}");
    ensure!(started.elapsed() < Duration::from_secs(3));
    ensure!(
        message.contains("window.never") && message.contains("null"),
        "timeout message: {message}"
    );

    // Scripts returning objects, with arguments, elements as arguments, async.
    let value = browser.execute(
        "return { sum: arguments[0] + 1, list: [1, 'two'], title: document.title, \
         tag: arguments[1].tagName }",
        vec![json!(41), button.as_arg()],
    )?;
    ensure!(
        value == json!({ "sum": 42, "list": [1, "two"], "title": "browser test", "tag": "BUTTON" }),
        "object: {value}"
    );
    let value = browser.execute_async(
        "const done = arguments[arguments.length - 1]; \
         setTimeout(() => done(arguments[0] * 2), 50);",
        vec![json!(21)],
    )?;
    ensure!(value == json!(42), "async: {value}");

    // Errors are errors, not panics, and say what went wrong.
    let message = format!(
        "{:#}",
        browser.execute("this is not js", vec![]).unwrap_err()
    );
    ensure!(
        message.contains("javascript error") && message.contains("this is not js"),
        "syntax error message: {message}"
    );
    let message = format!(
        "{:#}",
        browser
            .execute("throw new Error('kaput')", vec![])
            .unwrap_err()
    );
    ensure!(message.contains("kaput"), "throw message: {message}");
    let message = format!("{:#}", browser.find("#nope").unwrap_err());
    ensure!(
        message.contains("no such element"),
        "find message: {message}"
    );
    ensure!(browser.click_at(f64::NAN, 0.0).is_err());

    // The console log has the page's console.error.
    let log = browser.console_log()?;
    ensure!(
        log.iter()
            .any(|e| e.level == "SEVERE" && e.message.contains("logged by the page")),
        "console log: {log:?}"
    );

    // A screenshot: a PNG of the 1400 px wide viewport.
    let path = artefact_dir("browser").join("page.png");
    let _ = std::fs::remove_file(&path);
    browser.screenshot(&path)?;
    let png = std::fs::read(&path)?;
    ensure!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    ensure!(png.len() > 2000, "PNG of {} bytes", png.len());
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    ensure!(width == 1400, "screenshot width {width}");
    Ok(())
}

/// True while `pid` is a live (not zombie) process.
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

#[test]
fn drives_headless_chromium() -> Result<()> {
    let started = Instant::now();
    let url = serve_page()?;
    let browser = Browser::start()?;
    let chromium = browser
        .capabilities()
        .get("goog:processID")
        .and_then(Value::as_u64)
        .context("no goog:processID")?;
    let profile = browser.capabilities()["chrome"]["userDataDir"]
        .as_str()
        .map(String::from);
    let port = browser.driver_port();
    ensure!(alive(chromium));
    let _ = std::fs::remove_file(artefact_dir("browser").join("failure.png"));

    let result = exercise(&browser, &url);
    if result.is_err() {
        let _ = browser.screenshot(&artefact_dir("browser").join("failure.png"));
        if let Ok(log) = browser.console_log() {
            for entry in log {
                eprintln!("console: {} {}", entry.level, entry.message);
            }
        }
    }
    drop(browser);
    result?;

    // Nothing is left: chromedriver does not listen any more, Chromium is gone, and so is
    // its temporary profile.
    ensure!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(chromium) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(!alive(chromium), "chromium {chromium} still running");
    if let Some(profile) = profile {
        ensure!(!Path::new(&profile).exists(), "{profile} left behind");
    }
    eprintln!("browser test took {:?}", started.elapsed());
    Ok(())
}
