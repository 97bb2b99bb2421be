//! The web console in a real browser: headless Chromium drives the page of a running
//! observer in a lab node with known traffic and policies. Namespaces `shop` (bare pods
//! web, api and admin) and `db` (bare pod postgres); `shop/api-ingress` selects api and
//! allows web on TCP 8080 (rule 0) and pods labelled `role: admin` on TCP 9090 (rule 1,
//! never used: admin sends nothing); `db/default-deny` isolates every db pod for ingress.
//! Traffic: web → api:8080 (allowed), web → postgres:5432 (denied; the observer only
//! audits, so it completes).
//!
//! The map has exactly the three workloads (in their namespace groups) and the two edges,
//! coloured by verdict; clicking the denied edge shows `db/default-deny` and its YAML; a
//! violation made in the lab once the violations tab is open (api → postgres:5432) appears
//! in the live table within seconds; paused, the table holds still while another happens,
//! and resumed it gets it from its last cursor, none skipped, none twice; the policy
//! viewer of api marks rule 0 used and rule 1 allowed but never used, and draws them over
//! the map; the suggestions view shows api's learned policy, its evidence, its proof and
//! the diff against `api-ingress`. Screenshots go to
//! `target/test-artefacts/privileged_console/`; on failure `failure.png`, the browser's
//! console, the observer's log and the API's map are printed. Needs root, chromium and
//! chromedriver (`cargo xtask setup`): it fails without them, it does not skip.
//!
//! The observer listens on the loopback of the lab's node namespace; the browser runs in
//! the test's own namespace. A forwarded port (`observer_lab::forward`, as the demo's)
//! carries each browser connection into the node namespace.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use observer_lab::browser::{Browser, LogEntry, artefact_dir};
use observer_lab::traffic::tcp_exchange_via;
use observer_lab::{Lab, Pod};
use serde_json::{Value, json};
use support::{Observer, require_root, scratch_dir};

/// Where the console listens inside the node namespace (the lab's own: nothing else there).
const CONSOLE_PORT: u16 = 8900;

const WEB: &str = "wl:shop/Pod/web";
const API: &str = "wl:shop/Pod/api";
const ADMIN: &str = "wl:shop/Pod/admin";
const POSTGRES: &str = "wl:db/Pod/postgres";

/// The verdict colours of the page's map (`rgb(r,g,b)` as Cytoscape reports them).
const DENIED_RGB: &str = "rgb(214,39,40)";
const ALLOWED_RGB: &str = "rgb(44,160,44)";

fn edge_id(source: &str, target: &str, port: u16) -> String {
    format!("{source}|{target}|TCP|{port}")
}

/// The cluster: two namespaces, four bare pods, the two policies.
fn cluster(web: &Pod, api: &Pod, admin: &Pod, postgres: &Pod) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: db}\n---\n",
    );
    text += &web.manifest("shop", "web", "web");
    text += &api.manifest("shop", "api", "api");
    text += &admin
        .manifest("shop", "admin", "admin")
        .replace("{app: admin}", "{app: admin, role: admin}");
    text += &postgres.manifest("db", "postgres", "postgres");
    text += "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: api-ingress, namespace: shop}\n\
             spec:\n  podSelector: {matchLabels: {app: api}}\n  policyTypes: [Ingress]\n  ingress:\n\
             \x20 - from: [{podSelector: {matchLabels: {app: web}}}]\n\
             \x20   ports: [{protocol: TCP, port: 8080}]\n\
             \x20 - from: [{podSelector: {matchLabels: {role: admin}}}]\n\
             \x20   ports: [{protocol: TCP, port: 9090}]\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: default-deny, namespace: db}\n\
             spec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";
    text
}

/// One TCP connection `client` → `server:port` with a little data both ways, closed.
fn connect(client: &Pod, server: &Pod, port: u16) -> Result<()> {
    let address = SocketAddr::new(IpAddr::V4(server.ipv4), port);
    tcp_exchange_via(client, &server.netns, address, address, 200, 300)
        .with_context(|| format!("{} -> {}:{port}", client.name, server.name))?;
    Ok(())
}

/// `GET path` from the console through the forwarded port: status and body.
fn http_get(console: SocketAddr, path: &str) -> Result<(u16, String)> {
    let answer = observer_lab::http::get(console, path)?;
    Ok((answer.status, answer.text()))
}

/// Waits until the console answers `/api/status` with the cluster state loaded.
fn wait_console(console: SocketAddr) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let last = match http_get(console, "/api/status") {
            Ok((200, body)) => {
                let status: Value = serde_json::from_str(&body).context("/api/status")?;
                if status["cluster_state"] == json!(true) {
                    return Ok(status);
                }
                body
            }
            Ok((code, body)) => format!("HTTP {code}: {body}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("the console never answered with its cluster state: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `script` (returning `{ok, ...}`) until `ok` is true; on timeout the error shows
/// what it returned last.
fn wait_until(
    browser: &Browser,
    what: &str,
    script: &str,
    args: &[Value],
    timeout: Duration,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let value = browser
            .execute(script, args.to_vec())
            .with_context(|| format!("waiting for {what}"))?;
        if value["ok"] == json!(true) {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last: {value}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fails when the page shows its error bar.
fn no_error_bar(browser: &Browser) -> Result<()> {
    let shown = browser.execute(
        "const e = document.getElementById('error');
         return e && !e.hidden ? e.textContent.trim() : null;",
        Vec::new(),
    )?;
    ensure!(shown.is_null(), "the page shows an error: {shown}");
    Ok(())
}

/// Fails when the element `css` shows a value that was never meant as text: a text node
/// reading `null`, `undefined`, `NaN` or `[object Object]` (a missing value the page
/// appended as is).
fn no_stray_values(browser: &Browser, css: &str) -> Result<()> {
    let stray = browser.execute(
        "const root = document.querySelector(arguments[0]);
         if (!root) return ['no ' + arguments[0]];
         const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
         const found = [];
         for (let n = walk.nextNode(); n; n = walk.nextNode()) {
             const t = n.textContent.trim();
             if (['null', 'undefined', 'NaN', '[object Object]'].includes(t)) {
                 found.push(t + ' in <' + n.parentElement.tagName.toLowerCase()
                     + (n.parentElement.className ? '.' + n.parentElement.className : '') + '>');
             }
         }
         return found;",
        vec![json!(css)],
    )?;
    ensure!(
        stray.as_array().is_some_and(Vec::is_empty),
        "{css} shows stray values as text: {stray}"
    );
    Ok(())
}

fn point(value: &Value, what: &str) -> Result<(f64, f64)> {
    let x = value["x"].as_f64();
    let y = value["y"].as_f64();
    match (x, y) {
        (Some(x), Some(y)) => Ok((x, y)),
        _ => bail!("no position for {what}: {value}"),
    }
}

/// The map's elements as the page drew them.
const MAP_SCRIPT: &str = "
    const c = window.observerConsole;
    if (!c || !c.cy) return { ok: false, why: 'no window.observerConsole.cy' };
    const edges = c.cy.edges().map((e) => ({
        id: e.id(), verdict: e.data('verdict'),
        color: String(e.style('line-color')).replace(/\\s+/g, ''),
    }));
    return {
        ok: c.ready === true && edges.length >= arguments[0],
        ready: c.ready,
        nodes: c.cy.nodes().map((n) => n.id()).sort(),
        edges,
    };";

struct Run<'a> {
    browser: &'a Browser,
    lab: &'a Lab,
    observer: &'a Observer,
    console: SocketAddr,
    shots: PathBuf,
    log: Vec<LogEntry>,
    started: Instant,
}

impl Run<'_> {
    fn shot(&self, name: &str) -> Result<()> {
        println!("{name} at {:?}", self.started.elapsed());
        self.browser.screenshot(&self.shots.join(name))
    }

    fn keep_log(&mut self) {
        if let Ok(entries) = self.browser.console_log() {
            self.log.extend(entries);
        }
    }

    fn map(&self, min_edges: usize) -> Result<Value> {
        wait_until(
            self.browser,
            &format!("a drawn map with {min_edges} edges"),
            MAP_SCRIPT,
            &[json!(min_edges)],
            Duration::from_secs(15),
        )
    }

    fn steps(&mut self) -> Result<()> {
        let browser = self.browser;
        let web_api = edge_id(WEB, API, 8080);
        let web_postgres = edge_id(WEB, POSTGRES, 5432);
        let api_postgres = edge_id(API, POSTGRES, 5432);

        // The map: exactly the workloads with traffic, in their namespace groups, and the
        // two edges in their verdict's colour.
        browser.goto(&format!("http://{}/?level=workload", self.console))?;
        let map = self.map(2)?;
        self.shot("map.png")?;
        no_error_bar(browser)?;
        let nodes: Vec<&str> = map["nodes"]
            .as_array()
            .context("nodes")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut expected_nodes = vec![POSTGRES, "group:db", "group:shop", API, WEB];
        expected_nodes.sort_unstable();
        ensure!(nodes == expected_nodes, "map nodes: {map}");
        let mut edges: Vec<(String, String, String)> = map["edges"]
            .as_array()
            .context("edges")?
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (s("id"), s("verdict"), s("color"))
            })
            .collect();
        edges.sort();
        let mut expected_edges = vec![
            (web_api.clone(), "allowed".into(), ALLOWED_RGB.into()),
            (web_postgres.clone(), "denied".into(), DENIED_RGB.into()),
        ];
        expected_edges.sort();
        ensure!(edges == expected_edges, "map edges: {map}");

        // A real click on the denied edge: the panel names the deciding policy, and its
        // link opens the policy's YAML.
        let at = browser.execute(
            "return window.observerConsole.edgePosition(arguments[0]);",
            vec![json!(web_postgres)],
        )?;
        let (x, y) = point(&at, &web_postgres)?;
        browser.click_at(x, y)?;
        let detail = wait_until(
            browser,
            "the denied edge's detail naming db/default-deny",
            "const p = document.getElementById('edge-detail');
             const text = p ? p.textContent : '';
             return { ok: !!p && !p.hidden && text.includes('db/default-deny')
                        && text.includes('postgres') && !text.includes('Loading'),
                      hidden: p ? p.hidden : null, text };",
            &[],
            Duration::from_secs(10),
        )?;
        let text = detail["text"].as_str().unwrap_or_default();
        ensure!(
            !text.contains("api-ingress"),
            "the denied edge names the allowing policy of another edge: {text}"
        );
        self.shot("edge-detail.png")?;
        no_stray_values(browser, "#edge-detail")?;
        let link = browser.execute(
            "const a = [...document.querySelectorAll('#edge-detail a')]
                 .find((a) => a.textContent.includes('default-deny'));
             if (!a) return null;
             a.scrollIntoView({ block: 'center' });
             const r = a.getBoundingClientRect();
             return { x: r.left + r.width / 2, y: r.top + r.height / 2 };",
            Vec::new(),
        )?;
        let (x, y) = point(&link, "the default-deny link in #edge-detail")?;
        browser.click_at(x, y)?;
        wait_until(
            browser,
            "the YAML of db/default-deny",
            "const p = document.getElementById('policy-yaml');
             const text = p ? p.textContent : '';
             return { ok: !!p && !p.hidden && /name: *\"?default-deny/.test(text)
                        && text.includes('Ingress'), hidden: p ? p.hidden : null, text };",
            &[],
            Duration::from_secs(10),
        )?;
        self.shot("policy-yaml.png")?;
        browser.find("#policy-yaml-close")?.click()?;
        no_error_bar(browser)?;

        // The live violations: the lab's first denial is there; a new one made now
        // appears within seconds.
        browser.find("#tab-violations")?.click()?;
        let before = wait_until(
            browser,
            "the violations table with web -> postgres",
            "const rows = [...document.querySelectorAll('#violations-table tbody tr')]
                 .map((r) => r.textContent);
             const visible = !document.getElementById('violations-table').closest('[hidden]');
             return { ok: visible && rows.some((t) => t.includes('shop/web') && t.includes('db/postgres')),
                      visible, rows };",
            &[],
            Duration::from_secs(10),
        )?;
        let rows = before["rows"].as_array().context("rows")?;
        ensure!(
            !rows
                .iter()
                .any(|r| r.as_str().unwrap_or_default().contains("shop/api")),
            "api -> postgres is in the table before it happened: {before}"
        );
        connect(self.lab.pod("api")?, self.lab.pod("postgres")?, 5432)?;
        let made = Instant::now();
        let after = wait_until(
            browser,
            "the new violation api -> postgres in the live table",
            "const rows = [...document.querySelectorAll('#violations-table tbody tr')]
                 .map((r) => r.textContent);
             const row = rows.find((t) => t.includes('shop/api') && t.includes('db/postgres'));
             return { ok: !!row && row.includes('5432') && row.includes('default-deny'), row, rows };",
            &[],
            Duration::from_secs(20),
        )?;
        println!(
            "the new violation was in the live table {:?} after the connection closed: {}",
            made.elapsed(),
            after["row"]
        );
        self.shot("violations.png")?;
        no_stray_values(browser, "#violations-table")?;
        no_error_bar(browser)?;

        // Paused, the table holds still while violations happen; resumed, it gets them
        // from where it stopped (its last cursor): none skipped, none twice.
        let cursors = "return [...document.querySelectorAll('#violations-table tr.violation')]
                           .map((r) => r.getAttribute('data-cursor'));";
        // First the table settles: api -> postgres's record follows its first packet.
        self.observer.wait_stat("records_written", 3)?;
        let mut held = browser.execute(cursors, Vec::new())?;
        let settling = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(1000));
            let now = browser.execute(cursors, Vec::new())?;
            if now == held || settling.elapsed() > Duration::from_secs(10) {
                break;
            }
            held = now;
        }
        browser.find("#violations-pause")?.click()?;
        connect(self.lab.pod("web")?, self.lab.pod("postgres")?, 5432)?;
        std::thread::sleep(Duration::from_millis(1500));
        let paused = browser.execute(cursors, Vec::new())?;
        ensure!(
            paused == held,
            "the table moved while paused: {held} -> {paused}"
        );
        browser.find("#violations-pause")?.click()?;
        let resumed = wait_until(
            browser,
            "the violation made while paused, after resuming",
            "const cursors = [...document.querySelectorAll('#violations-table tr.violation')]
                 .map((r) => r.getAttribute('data-cursor'));
             const before = arguments[0];
             const fresh = cursors.filter((c) => !before.includes(c));
             return { ok: fresh.length > 0 && before.every((c) => cursors.includes(c)),
                      unique: new Set(cursors).size === cursors.length, cursors, fresh };",
            &[held.clone()],
            Duration::from_secs(20),
        )?;
        ensure!(
            resumed["unique"] == json!(true),
            "a violation came twice after resuming: {resumed}"
        );

        // The policy viewer of api: tap the node on the map, open the Policies tab.
        // The violation was published at its first packet; the map draws written records:
        // once its record is written, a reload draws it.
        self.observer.wait_stat("records_written", 3)?;
        browser.find("#tab-map")?.click()?;
        browser.execute("return window.observerConsole.loadMap();", Vec::new())?;
        self.map(3)?;
        let at = browser.execute(
            "return window.observerConsole.nodePosition(arguments[0]);",
            vec![json!(API)],
        )?;
        let (x, y) = point(&at, API)?;
        browser.click_at(x, y)?;
        wait_until(
            browser,
            "api selected on the map",
            "const cy = window.observerConsole.cy;
             return { ok: cy.$id(arguments[0]).selected(),
                      selected: cy.$(':selected').map((e) => e.id()) };",
            &[json!(API)],
            Duration::from_secs(5),
        )?;
        browser.find("#tab-policies")?.click()?;
        let viewer = wait_until(
            browser,
            "the policy viewer of api with its two rules",
            "const p = document.getElementById('policy-view');
             const rules = [...document.querySelectorAll('#policy-view .rule')].map((r) => ({
                 used: r.getAttribute('data-rule-used'), text: r.textContent }));
             return { ok: !!p && !p.hidden && p.textContent.includes('api-ingress') && rules.length >= 2,
                      hidden: p ? p.hidden : null, rules, text: p ? p.textContent : '' };",
            &[],
            Duration::from_secs(10),
        )?;
        let rules: Vec<(String, String)> = viewer["rules"]
            .as_array()
            .context("rules")?
            .iter()
            .map(|r| {
                (
                    r["used"].as_str().unwrap_or_default().to_string(),
                    r["text"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        ensure!(rules.len() == 2, "api's policies have two rules: {viewer}");
        let rule = |port: &str| rules.iter().find(|(_, text)| text.contains(port));
        ensure!(
            rule("8080").is_some_and(|(used, _)| used == "true"),
            "rule 0 (web on 8080) is used: {viewer}"
        );
        ensure!(
            rule("9090").is_some_and(|(used, _)| used == "false"),
            "rule 1 (admin on 9090) is allowed but never used: {viewer}"
        );
        // And the same over the map: the unused rule as a dashed edge from admin, the used
        // one on the allowed edge, the new denial as used and denied.
        let overlay = wait_until(
            browser,
            "the policy overlay around api",
            "const cy = window.observerConsole.cy;
             const of = (cls) => cy.edges('.' + cls).map((e) =>
                 [e.data('source'), e.data('target'), e.data('protocol'), e.data('port')].join('|'));
             const unused = of('policy-unused'), allowed = of('policy-used-allowed'), denied = of('policy-used-denied');
             return { ok: unused.length + allowed.length + denied.length > 0, unused, allowed, denied };",
            &[],
            Duration::from_secs(5),
        )?;
        let listed = |key: &str| -> Vec<String> {
            overlay[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        ensure!(
            listed("unused") == [edge_id(ADMIN, API, 9090)],
            "overlay: {overlay}"
        );
        ensure!(listed("allowed") == [web_api], "overlay: {overlay}");
        ensure!(listed("denied") == [api_postgres], "overlay: {overlay}");
        self.shot("policy-view.png")?;
        no_stray_values(browser, "#policy-view")?;
        no_error_bar(browser)?;

        // The suggestions for the selected workload: the policy learned from its traffic,
        // its evidence, the proof against the flows held, and the diff against the policy
        // that selects it today.
        browser.find("#tab-suggestions")?.click()?;
        let suggested = wait_until(
            browser,
            "the suggestion for api with its proof and diff",
            "const p = document.getElementById('suggestions');
             const card = [...document.querySelectorAll('#suggestions article.suggestion')]
                 .find((a) => a.dataset.name === 'api');
             const fig = (k) => { const d = document.querySelector(`#suggestions-summary dd[data-figure=${k}]`);
                                  return d ? d.textContent : null; };
             const yaml = card ? (card.querySelector('pre.yaml') || {}).textContent || '' : '';
             const diff = card ? (card.querySelector('pre.diff') || {}).textContent || '' : '';
             const evidence = card ? card.querySelectorAll('table.evidence tbody tr').length : 0;
             return { ok: !!p && !p.hidden && yaml.includes('kind: NetworkPolicy') && diff.length > 0
                        && evidence > 0 && fig('flows_checked') !== null,
                      yaml, diff, evidence, checked: fig('flows_checked'), allowed: fig('flows_allowed'),
                      note: (document.getElementById('suggestions-note') || {}).textContent };",
            &[],
            Duration::from_secs(15),
        )?;
        let yaml = suggested["yaml"].as_str().unwrap_or_default();
        ensure!(
            yaml.contains(r#"matchLabels: {"app": "api"}"#) && yaml.contains("port: 8080"),
            "api's suggested policy selects it and allows web on 8080: {suggested}"
        );
        ensure!(
            suggested["diff"].as_str().is_some_and(|d| d
                .contains("--- declared NetworkPolicy shop/api-ingress")
                && d.contains("-    - port: 9090")),
            "the diff is against the declared api-ingress: {suggested}"
        );
        ensure!(
            suggested["checked"].as_str().is_some_and(|c| c != "0"),
            "the proof checked the flows held: {suggested}"
        );
        self.shot("suggestions.png")?;
        no_stray_values(browser, "#suggestions")?;
        no_error_bar(browser)?;

        self.keep_log();
        let errors: Vec<&LogEntry> = self
            .log
            .iter()
            .filter(|e| e.source == "javascript")
            .collect();
        ensure!(errors.is_empty(), "JavaScript errors: {errors:#?}");
        Ok(())
    }

    /// What helps to see why it failed: a screenshot, the browser's console, the map the
    /// API answers, the observer's log.
    fn report_failure(&mut self, dir: &Path) {
        let failure = self.shots.join("failure.png");
        match self.browser.screenshot(&failure) {
            Ok(()) => eprintln!("screenshot: {}", failure.display()),
            Err(e) => eprintln!("no failure screenshot: {e:#}"),
        }
        self.keep_log();
        eprintln!("--- browser console ---");
        for e in &self.log {
            eprintln!("{} {}: {}", e.level, e.source, e.message);
        }
        for path in ["/api/status", "/api/map?level=workload"] {
            match http_get(self.console, path) {
                Ok((code, body)) => eprintln!("--- GET {path}: HTTP {code}\n{body}"),
                Err(e) => eprintln!("--- GET {path}: {e:#}"),
            }
        }
        let log = std::fs::read_to_string(dir.join("observer.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!("--- observer log (last lines) ---");
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}

#[test]
fn the_console_shows_the_lab_its_denials_live_violations_and_unused_rules() -> Result<()> {
    require_root();
    let started = Instant::now();
    let dir = scratch_dir("console");
    let shots = artefact_dir("privileged_console");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots)?;

    let mut lab = Lab::new()?;
    let web = lab.add_pod("web")?;
    let api = lab.add_pod("api")?;
    let admin = lab.add_pod("admin")?;
    let postgres = lab.add_pod("postgres")?;
    // No IPv6: the pods' and the node's neighbour discovery and multicast listener reports
    // would be traffic too (link-local addresses, drawn as outside peers), and the map is
    // to hold exactly the lab's connections.
    for netns in lab
        .pods()
        .iter()
        .map(|p| p.netns.clone())
        .chain([lab.node_netns().to_string()])
    {
        observer_lab::run(Lab::command_in(&netns, "sysctl").args([
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
        ]))?;
    }
    let manifests = dir.join("cluster.yaml");
    std::fs::write(&manifests, cluster(&web, &api, &admin, &postgres))?;
    let manifests_arg = manifests.to_string_lossy().to_string();
    let ui_listen = format!("127.0.0.1:{CONSOLE_PORT}");
    let mut observer = Observer::start(
        &lab,
        &dir,
        &[
            "--interfaces",
            "veth*",
            "--manifests",
            &manifests_arg,
            "--close-grace",
            "200ms",
            "--ui-listen",
            &ui_listen,
        ],
    )?;
    observer.wait_attached(&["vethweb", "vethapi", "vethadmin", "vethpostgres"])?;
    observer.wait_stat("cluster_views", 1)?;
    let console = observer_lab::forward::forward(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        lab.node_netns(),
        SocketAddr::from(([127, 0, 0, 1], CONSOLE_PORT)),
    )?;
    let status = wait_console(console)?;
    ensure!(status["role"] == json!("node"), "{status}");

    // The lab's traffic, written (closed connections) before the page opens.
    connect(&web, &api, 8080)?;
    connect(&web, &postgres, 5432)?;
    observer.wait_stat("records_written", 2)?;
    println!("lab ready after {:?}", started.elapsed());

    let browser = Browser::start()?;
    let mut run = Run {
        browser: &browser,
        lab: &lab,
        observer: &observer,
        console,
        shots: shots.clone(),
        log: Vec::new(),
        started,
    };
    let outcome = run.steps();
    if let Err(e) = &outcome {
        eprintln!("privileged_console failed: {e:#}");
        run.report_failure(&dir);
    }
    drop(browser);
    println!("browser closed at {:?}", started.elapsed());
    outcome?;
    observer.stop()?;
    println!(
        "screenshots in {}; the test took {:?}",
        shots.display(),
        started.elapsed()
    );
    Ok(())
}
