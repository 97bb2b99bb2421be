//! A small W3C WebDriver client driving headless Chromium through `chromedriver`, for tests
//! of the web console.
//!
//! It is hand-written on purpose: tests need only a few commands of the W3C WebDriver
//! protocol (navigate, execute script, find elements, pointer actions, screenshot), each one
//! JSON request over HTTP/1.1 to a local `chromedriver`. A blocking `TcpStream` with socket
//! timeouts does that in a few hundred lines, with no async runtime and no WebDriver crate.
//!
//! [`Browser::start`] spawns `chromedriver` on a free port (in its own process group, with
//! its own `TMPDIR`) and opens a session; dropping the [`Browser`] deletes the session, which
//! makes chromedriver quit its Chromium, then kills what is left of the process group, reaps
//! chromedriver and removes the `TMPDIR`. The private `TMPDIR` is there because Chromium's
//! profile (`org.chromium.Chromium.scoped_dir.*`, removed by chromedriver only some time
//! after the session is deleted) and its singleton-socket directory
//! (`org.chromium.Chromium.*`, never removed when chromedriver quits it) would otherwise pile
//! up in `/tmp`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// The W3C web element identifier: the key under which WebDriver returns (and accepts) an
/// element reference.
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Chromium binary used when it exists (Debian's `chromium` package); otherwise
/// chromedriver looks for Chrome itself.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Read and write timeout of every HTTP exchange with chromedriver.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long chromedriver may take to answer `GET /status` with `ready: true`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many ports are tried when chromedriver fails to listen.
const START_ATTEMPTS: usize = 3;
/// Page-load and script timeouts of the session, below [`HTTP_TIMEOUT`] so that chromedriver
/// reports them rather than the socket.
const SESSION_TIMEOUT_MS: u64 = 30_000;
/// How much of chromedriver's output is kept for error messages.
const OUTPUT_KEEP: usize = 16 * 1024;
/// Prefix of the private temporary directories, followed by `<pid>-<sequence>`.
const TMPDIR_PREFIX: &str = "observer-lab-browser-";

/// The file in the private temporary directory holding chromedriver's pid (and group id).
const DRIVER_PID_FILE: &str = "chromedriver.pid";

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A headless Chromium driven through a `chromedriver` child process.
pub struct Browser {
    child: Child,
    port: u16,
    session: String,
    capabilities: Value,
    output: Arc<Mutex<String>>,
    tmpdir: PathBuf,
}

/// An element found in the current page.
#[derive(Clone)]
pub struct Element<'b> {
    browser: &'b Browser,
    /// The WebDriver element id.
    pub id: String,
}

/// One entry of the browser's console log.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, `DEBUG`...
    pub level: String,
    /// Where it came from (`console-api`, `javascript`, `network`...).
    pub source: String,
    /// The text, prefixed by Chrome with the script location.
    pub message: String,
}

impl Browser {
    /// Starts `chromedriver` on a free port and opens a headless Chromium session with a
    /// 1400x900 window. The viewport is smaller than the window: 1400x757 CSS pixels with
    /// Chromium 156's new headless mode, which keeps room for its (invisible) frame.
    pub fn start() -> Result<Browser> {
        let driver = find_chromedriver()?;
        remove_stale_tmpdirs();
        let mut attempt = 1;
        let mut browser = loop {
            match Self::spawn_driver(&driver) {
                Ok(browser) => break browser,
                // Most likely another process took the port between our probe and
                // chromedriver's bind.
                Err(_) if attempt < START_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e.context(format!("starting {}", driver.display()))),
            }
        };
        let (session, capabilities) = browser.new_session()?;
        browser.session = session;
        browser.capabilities = capabilities;
        Ok(browser)
    }

    /// Spawns chromedriver on a free port and waits until it is ready (no session yet).
    fn spawn_driver(driver: &Path) -> Result<Browser> {
        let port = free_port()?;
        let tmpdir = std::env::temp_dir().join(format!(
            "{TMPDIR_PREFIX}{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&tmpdir)
            .with_context(|| format!("creating {}", tmpdir.display()))?;
        let mut command = Command::new(driver);
        command
            .arg(format!("--port={port}"))
            .env("TMPDIR", &tmpdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that Drop can kill Chromium too if it is left.
            .process_group(0);
        let spawned = command.spawn();
        if spawned.is_err() {
            let _ = std::fs::remove_dir_all(&tmpdir);
        }
        let mut child = spawned.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!(
                    "chromedriver not found at {}: run `cargo xtask setup`",
                    driver.display()
                )
            } else {
                anyhow!(e).context(format!("spawning {}", driver.display()))
            }
        })?;
        // For remove_stale_tmpdirs, should this process be killed before Drop runs.
        let _ = std::fs::write(tmpdir.join(DRIVER_PID_FILE), child.id().to_string());
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            drain(stdout, Arc::clone(&output));
        }
        if let Some(stderr) = child.stderr.take() {
            drain(stderr, Arc::clone(&output));
        }
        // From here on, Drop cleans up whatever happens.
        let mut browser = Browser {
            child,
            port,
            session: String::new(),
            capabilities: Value::Null,
            output,
            tmpdir,
        };
        browser.wait_ready()?;
        Ok(browser)
    }

    /// Waits until `GET /status` says chromedriver is ready, or it exits, or time runs out.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for chromedriver")? {
                bail!(
                    "chromedriver exited ({status}) before it was ready on port {}: {}",
                    self.port,
                    self.output_text()
                );
            }
            let last = match self.http("GET", "/status", None, Duration::from_secs(2)) {
                Ok(value) if value.get("ready") == Some(&Value::Bool(true)) => return Ok(()),
                Ok(value) => value.to_string(),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "chromedriver not ready on port {} after {START_TIMEOUT:?} (last: {last}): {}",
                    self.port,
                    self.output_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn new_session(&self) -> Result<(String, Value)> {
        let mut options = json!({
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1400,900",
            ],
        });
        if Path::new(CHROMIUM).exists() {
            options["binary"] = json!(CHROMIUM);
        }
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": options,
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "timeouts": {
                        "pageLoad": SESSION_TIMEOUT_MS,
                        "script": SESSION_TIMEOUT_MS,
                        "implicit": 0,
                    },
                },
            },
        });
        let value = self
            .http("POST", "/session", Some(&capabilities), HTTP_TIMEOUT)
            .map_err(|e| {
                let hint = if Path::new(CHROMIUM).exists() {
                    ""
                } else {
                    " (no /usr/bin/chromium: run `cargo xtask setup`)"
                };
                e.context(format!("creating a Chromium session{hint}"))
            })?;
        let session = value
            .get("sessionId")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| anyhow!("new session: no sessionId in {value}"))?;
        let capabilities = value.get("capabilities").cloned().unwrap_or(Value::Null);
        Ok((session, capabilities))
    }

    /// Navigates to `url` and waits for the page to load.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.command("POST", "/url", json!({ "url": url }))
            .with_context(|| format!("navigating to {url}"))?;
        Ok(())
    }

    /// The current page's URL.
    pub fn url(&self) -> Result<String> {
        let value = self.command("GET", "/url", Value::Null)?;
        value
            .as_str()
            .map(String::from)
            .ok_or_else(|| anyhow!("get url: not a string: {value}"))
    }

    /// Runs `script` as the body of a function (use `return ...`) with `args` as
    /// `arguments`, and returns what it returns. Elements can be passed with
    /// [`Element::as_arg`].
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.command(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
        .with_context(|| format!("executing `{}`", abbreviate(script)))
    }

    /// Runs `script` as the body of a function whose last argument is a callback, and
    /// returns the value passed to the callback (within the 30 s script timeout).
    pub fn execute_async(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.command(
            "POST",
            "/execute/async",
            json!({ "script": script, "args": args }),
        )
        .with_context(|| format!("executing async `{}`", abbreviate(script)))
    }

    /// Runs `script` (a function body, like [`execute`](Self::execute)) every 100 ms until
    /// it returns a truthy value (not `null`, `false`, `0` or `""`), and returns that value.
    /// A script error fails at once; on timeout the error shows the script and its last
    /// value.
    pub fn wait_for(&self, script: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.execute(script, Vec::new())?;
            if truthy(&value) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for `{script}`; last value: {value}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The first element matching the CSS selector.
    pub fn find(&self, css: &str) -> Result<Element<'_>> {
        let value = self
            .command(
                "POST",
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .with_context(|| format!("finding `{css}`"))?;
        self.element(&value)
    }

    /// All elements matching the CSS selector (possibly none).
    pub fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>> {
        let value = self
            .command(
                "POST",
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .with_context(|| format!("finding all `{css}`"))?;
        value
            .as_array()
            .ok_or_else(|| anyhow!("find elements: not an array: {value}"))?
            .iter()
            .map(|v| self.element(v))
            .collect()
    }

    fn element(&self, value: &Value) -> Result<Element<'_>> {
        let id = value
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("not an element reference: {value}"))?;
        Ok(Element {
            browser: self,
            id: id.to_string(),
        })
    }

    /// A real mouse click (move, press, release of the left button) at viewport CSS pixel
    /// coordinates, rounded to integers.
    pub fn click_at(&self, x: f64, y: f64) -> Result<()> {
        self.pointer(x, y, 1)
            .with_context(|| format!("clicking at ({x}, {y})"))
    }

    /// A real mouse double click at viewport CSS pixel coordinates, rounded to integers.
    pub fn double_click_at(&self, x: f64, y: f64) -> Result<()> {
        self.pointer(x, y, 2)
            .with_context(|| format!("double-clicking at ({x}, {y})"))
    }

    fn pointer(&self, x: f64, y: f64, clicks: usize) -> Result<()> {
        if !x.is_finite() || !y.is_finite() {
            bail!("coordinates must be finite");
        }
        // WebDriver wants integers here.
        let (x, y) = (x.round() as i64, y.round() as i64);
        let mut actions = vec![json!({
            "type": "pointerMove", "duration": 0, "x": x, "y": y, "origin": "viewport",
        })];
        for _ in 0..clicks {
            actions.push(json!({ "type": "pointerDown", "button": 0 }));
            actions.push(json!({ "type": "pause", "duration": 20 }));
            actions.push(json!({ "type": "pointerUp", "button": 0 }));
        }
        let body = json!({
            "actions": [{
                "type": "pointer",
                "id": "mouse",
                "parameters": { "pointerType": "mouse" },
                "actions": actions,
            }],
        });
        let performed = self.command("POST", "/actions", body);
        // Release even when performing failed, so no button stays pressed.
        let released = self.command("DELETE", "/actions", Value::Null);
        performed?;
        released?;
        Ok(())
    }

    /// Saves a PNG screenshot of the viewport to `path`, creating its parent directories.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let value = self.command("GET", "/screenshot", Value::Null)?;
        let encoded = value.as_str().ok_or_else(|| {
            anyhow!(
                "screenshot: not a string: {}",
                abbreviate(&value.to_string())
            )
        })?;
        let png = base64_decode(encoded).context("screenshot: decoding base64")?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// The browser console entries logged since the last call (JS errors, `console.*`,
    /// failed requests), from chromedriver's `goog:loggingPrefs` browser log. Reading it
    /// empties it.
    pub fn console_log(&self) -> Result<Vec<LogEntry>> {
        let value = self.command("POST", "/se/log", json!({ "type": "browser" }))?;
        let entries = value
            .as_array()
            .ok_or_else(|| anyhow!("browser log: not an array: {value}"))?;
        let text = |e: &Value, key: &str| {
            e.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(entries
            .iter()
            .map(|e| LogEntry {
                level: text(e, "level"),
                source: text(e, "source"),
                message: text(e, "message"),
            })
            .collect())
    }

    /// The port chromedriver listens on (127.0.0.1).
    pub fn driver_port(&self) -> u16 {
        self.port
    }

    /// The session's capabilities as chromedriver returned them (`browserVersion`,
    /// `goog:processID`, `chrome.userDataDir`...).
    pub fn capabilities(&self) -> &Value {
        &self.capabilities
    }

    /// A session command: `path` is relative to `/session/{id}`. `body` is sent for POST
    /// (`null` becomes `{}`).
    fn command(&self, method: &str, path: &str, body: Value) -> Result<Value> {
        let full = format!("/session/{}{path}", self.session);
        let body = match (method, body) {
            ("POST", Value::Null) => Some(json!({})),
            ("POST", body) => Some(body),
            _ => None,
        };
        self.http(method, &full, body.as_ref(), HTTP_TIMEOUT)
    }

    /// One HTTP/1.1 exchange with chromedriver; returns the response's `value`, or an error
    /// naming the command and WebDriver's error.
    fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let name = format!("{method} {path}");
        let (status, text) = http_exchange(self.port, method, path, body, timeout)
            .with_context(|| format!("WebDriver {name}"))?;
        let json: Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "WebDriver {name}: HTTP {status}, not JSON: {}",
                abbreviate(&text)
            )
        })?;
        let value = json.get("value").cloned().unwrap_or(Value::Null);
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            let message = value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            // Chrome appends "\n  (Session info: ...)" and a native stack trace; keep the
            // message's first line.
            let message = message.lines().next().unwrap_or_default();
            bail!("WebDriver {name}: {error}: {message}");
        }
        if !(200..300).contains(&status) {
            bail!("WebDriver {name}: HTTP {status}: {}", abbreviate(&text));
        }
        Ok(value)
    }

    fn output_text(&self) -> String {
        let text = self.output.lock().map(|s| s.clone()).unwrap_or_default();
        if text.trim().is_empty() {
            "no output".to_string()
        } else {
            format!("output:\n{}", text.trim_end())
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // chromedriver quits its Chromium before answering (and removes the profile
            // some time after).
            let path = format!("/session/{}", self.session);
            if let Err(e) = self.http("DELETE", &path, None, Duration::from_secs(15)) {
                eprintln!("browser: deleting the session: {e:#}");
            }
        }
        // Kill the whole group (chromedriver and any Chromium process left) before reaping
        // chromedriver, so that its pid (the group id) cannot have been reused.
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals a process group; no memory involved.
        if unsafe { libc::kill(-group, libc::SIGKILL) } != 0 {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        remove_dir(&self.tmpdir);
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("port", &self.port)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Element").field("id", &self.id).finish()
    }
}

impl Element<'_> {
    /// Clicks the element (scrolled into view, at its centre), as WebDriver's element click.
    pub fn click(&self) -> Result<()> {
        self.browser
            .command("POST", &format!("/element/{}/click", self.id), Value::Null)?;
        Ok(())
    }

    /// The element's rendered text (`innerText`-like).
    pub fn text(&self) -> Result<String> {
        let value =
            self.browser
                .command("GET", &format!("/element/{}/text", self.id), Value::Null)?;
        value
            .as_str()
            .map(String::from)
            .ok_or_else(|| anyhow!("element text: not a string: {value}"))
    }

    /// The attribute (or, as WebDriver does it, the property) `name`; `None` when absent.
    pub fn attribute(&self, name: &str) -> Result<Option<String>> {
        let value = self.browser.command(
            "GET",
            &format!("/element/{}/attribute/{name}", self.id),
            Value::Null,
        )?;
        match value {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Ok(Some(other.to_string())),
        }
    }

    /// The element as a script argument for [`Browser::execute`] (it is `arguments[i]`).
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }
}

/// Where a test's artefacts (screenshots) go: `$CARGO_TARGET_DIR` or the workspace's
/// `target/`, then `test-artefacts/<test>/`. The directory is not created.
pub fn artefact_dir(test: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("target")
        });
    target.join("test-artefacts").join(test)
}

/// `$CHROMEDRIVER`, or `chromedriver` on `PATH`.
fn find_chromedriver() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "chromedriver not found at $CHROMEDRIVER={}: run `cargo xtask setup`",
            path.display()
        );
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromedriver"))
        .find(|path| path.is_file())
        .ok_or_else(|| anyhow!("chromedriver not found on PATH: run `cargo xtask setup`"))
}

/// Removes a directory Chromium processes killed a moment ago may still be writing into.
fn remove_dir(dir: &Path) {
    for _ in 0..20 {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => break,
        }
    }
}

/// Cleans up after test processes killed before their [`Browser`] was dropped: kills the
/// chromedriver process group still running with a private temporary directory whose owner
/// is gone (checked in its environment, against pid reuse), and removes the directory.
fn remove_stale_tmpdirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TMPDIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next() else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let dir = entry.path();
        let driver = std::fs::read_to_string(dir.join(DRIVER_PID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<libc::pid_t>().ok())
            .filter(|&pid| pid > 1);
        if let Some(driver) = driver {
            let mut expected = b"TMPDIR=".to_vec();
            expected.extend_from_slice(dir.as_os_str().as_encoded_bytes());
            let environ = std::fs::read(format!("/proc/{driver}/environ")).unwrap_or_default();
            if environ.split(|&b| b == 0).any(|var| var == expected) {
                // SAFETY: kill(2) with a negative pid signals a process group.
                unsafe { libc::kill(-driver, libc::SIGKILL) };
            }
        }
        remove_dir(&dir);
    }
}

/// A port that was free a moment ago (chromedriver may still lose a race for it; the
/// caller retries).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Copies a child's output into `sink`, keeping the last [`OUTPUT_KEEP`] bytes.
fn drain(mut from: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut text) = sink.lock() {
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
                if text.len() > OUTPUT_KEEP {
                    let mut cut = text.len() - OUTPUT_KEEP;
                    while !text.is_char_boundary(cut) {
                        cut += 1;
                    }
                    text.drain(..cut);
                }
            }
        }
    });
}

/// Sends one request with `Connection: close` and reads the response (up to its
/// Content-Length, or to the end). Returns the status code and the body.
fn http_exchange(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(u16, String)> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, timeout.min(Duration::from_secs(5)))
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = String::new();
    let _ = write!(
        request,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    );
    if method == "POST" {
        let _ = write!(
            request,
            "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream
        .write_all(request.as_bytes())
        .context("sending the request")?;

    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut header_end = None;
    let mut content_length = None;
    loop {
        if let (Some(end), Some(length)) = (header_end, content_length)
            && response.len() >= end + length
        {
            break;
        }
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(anyhow!(e).context(format!(
                    "reading the response (timeout {timeout:?}, {} bytes so far)",
                    response.len()
                )));
            }
        };
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
        if header_end.is_none()
            && let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n")
        {
            header_end = Some(i + 4);
            content_length = parse_content_length(&response[..i])?;
        }
    }
    let end = header_end.ok_or_else(|| {
        anyhow!(
            "incomplete response headers: {}",
            abbreviate(&String::from_utf8_lossy(&response))
        )
    })?;
    let head = String::from_utf8_lossy(&response[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("bad status line: {}", abbreviate(&head)))?;
    let mut body = &response[end..];
    if let Some(length) = content_length {
        if body.len() < length {
            bail!("response body cut short: {} of {length} bytes", body.len());
        }
        body = &body[..length];
    }
    let text = String::from_utf8(body.to_vec()).context("response body is not UTF-8")?;
    Ok((status, text))
}

/// The Content-Length header's value, if any; rejects chunked bodies (chromedriver does not
/// send them).
fn parse_content_length(head: &[u8]) -> Result<Option<usize>> {
    let head = String::from_utf8_lossy(head);
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .with_context(|| format!("bad Content-Length: {value}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            bail!("unsupported Transfer-Encoding: {value}");
        }
    }
    Ok(length)
}

/// JavaScript truthiness of a JSON value (`NaN` and `undefined` arrive as `null`).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// The first 200 characters of `text`, on one line.
fn abbreviate(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .take(200)
        .collect();
    if text.chars().count() > 200 {
        format!("{one_line}...")
    } else {
        one_line
    }
}

/// Decodes standard base64 (with or without `=` padding; whitespace ignored).
fn base64_decode(text: &str) -> Result<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let data = match bytes.iter().position(|&c| c == b'=') {
        Some(i) => {
            if bytes[i..].iter().any(|&c| c != b'=')
                || bytes.len() - i > 2
                || !bytes.len().is_multiple_of(4)
            {
                bail!("bad padding");
            }
            &bytes[..i]
        }
        None => &bytes[..],
    };
    if data.len() % 4 == 1 {
        bail!("bad length {}", data.len());
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    for chunk in data.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = sextet(c).ok_or_else(|| anyhow!("bad character {:?}", char::from(c)))?;
            acc |= v << (18 - 6 * i);
        }
        let [_, a, b, c] = acc.to_be_bytes();
        out.push(a);
        if chunk.len() > 2 {
            out.push(b);
        }
        if chunk.len() > 3 {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9vYmE=").unwrap(), b"fooba");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm9vYmE").unwrap(), b"fooba");
        assert_eq!(base64_decode("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        assert!(base64_decode("Zm9v!").is_err());
        assert!(base64_decode("Z===").is_err());
        assert!(base64_decode("Zg=x").is_err());
    }

    #[test]
    fn truthiness() {
        assert!(!truthy(&json!(null)));
        assert!(!truthy(&json!(false)));
        assert!(!truthy(&json!(0)));
        assert!(!truthy(&json!(0.0)));
        assert!(!truthy(&json!("")));
        assert!(truthy(&json!([])));
        assert!(truthy(&json!({})));
        assert!(truthy(&json!("x")));
        assert!(truthy(&json!(-1)));
    }

    #[test]
    fn content_length() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length:11\r\nConnection:close";
        assert_eq!(parse_content_length(head).unwrap(), Some(11));
        assert_eq!(parse_content_length(b"HTTP/1.1 200 OK").unwrap(), None);
        assert!(parse_content_length(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked").is_err());
    }
}
