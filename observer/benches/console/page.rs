//! Part 2, the page in headless Chromium: navigation to the first map drawn and the
//! canvas settled, against the empty-map page and a trivial page, in rotating rounds;
//! then `observerConsole.loadMap` on the loaded page, with its parts; and the tables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use observer_lab::browser::Browser;
use serde_json::{Value, json};

use crate::report::{Samples, get, num, size};
use crate::scripts::{
    FIRST_RENDER, LOAD_MAP, LOAF, LOAF_KEYS, PHASES, SETTLE, TRIVIAL_LOAD, TWO_FRAMES,
};

const PAGE_ROUNDS: usize = 7;

/// The interactive loads measured on the loaded page, in this order (each one draws
/// afresh: its level or namespace differs from the one before).
fn interactions() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "ns0",
            "one namespace's workloads: `loadMap({level: 'workload', namespace: 'ns-0'})`",
            json!({"level": "workload", "namespace": "ns-0"}),
        ),
        (
            "namespaces",
            "the namespace level again: `loadMap({level: 'namespace'})`",
            json!({"level": "namespace"}),
        ),
        (
            "wl2000",
            "stress: the workload level, 2,000 edges: `loadMap({level: 'workload', max_edges: 2000})`",
            json!({"level": "workload", "max_edges": 2000}),
        ),
    ]
}

fn loaf_header() -> String {
    LOAF_KEYS
        .iter()
        .map(|k| match *k {
            "duration" => "frames' time".to_owned(),
            "render" => "style, layout, paint".to_owned(),
            "frames" => "frames".to_owned(),
            "other" => "other scripts".to_owned(),
            file => format!("scripts in {file}"),
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

fn loaf_values(s: &Samples, prefix: &str) -> String {
    LOAF_KEYS
        .iter()
        .map(|k| s.ms(&format!("{prefix}.loaf.{k}")))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// FNV-1a of `bytes`: which version of the page was measured (it is being worked on).
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

pub(crate) fn page(big: SocketAddr, empty: SocketAddr) {
    let (_, app) = get(big, "/app.js");
    let browser = Browser::start().expect("headless Chromium (run `cargo xtask setup`)");
    let version = browser.capabilities()["browserVersion"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let mut s = Samples::default();
    let mut first_maps: Vec<Value> = Vec::new();
    let mut shapes = BTreeMap::new();
    let wait = Duration::from_secs(60);
    // One page load untimed: Chromium's own start-up (caches, compiler) out of round 1.
    browser.goto(&format!("http://{big}/")).expect("page");
    browser.wait_for(FIRST_RENDER, wait).expect("first render");
    for round in 0..PAGE_ROUNDS {
        // The three loads in an order that rotates, so none always follows another.
        for step in 0..3 {
            match (round + step) % 3 {
                0 => {
                    browser
                        .goto(&format!("http://{empty}/"))
                        .expect("empty page");
                    let v = browser.wait_for(FIRST_RENDER, wait).expect("empty map");
                    s.add("empty.first", num(&v, "first"));
                    s.add("empty.load", num(&v, "load"));
                    // The reference for the loads on the loaded page: a load of the
                    // empty map (drawn afresh: another level).
                    let v = browser
                        .execute_async(
                            &format!("{LOAF}{LOAD_MAP}"),
                            vec![json!({"level": "namespace"})],
                        )
                        .expect("empty loadMap");
                    s.add("empty.reload", num(&v, "total"));
                }
                1 => {
                    browser
                        .goto(&format!("http://{big}/api/status"))
                        .expect("trivial page");
                    let v = browser.wait_for(TRIVIAL_LOAD, wait).expect("trivial load");
                    s.add("trivial.load", num(&v, "load"));
                }
                _ => {
                    browser.goto(&format!("http://{big}/")).expect("big page");
                    let v = browser.wait_for(FIRST_RENDER, wait).expect("big map");
                    if let Some(error) = v["error"].as_str() {
                        panic!("the page shows an error: {error}");
                    }
                    let first = num(&v, "first");
                    for key in ["first", "responseEnd", "domContentLoaded", "load"] {
                        s.add(&format!("big.{key}"), num(&v, key));
                    }
                    for phase in PHASES {
                        s.add_opt(&format!("big.t.{phase}"), &v["timings"], phase);
                    }
                    let maps = v["maps"].as_array().cloned().unwrap_or_default();
                    let last_end = maps.iter().map(|m| num(m, "end")).fold(0.0, f64::max);
                    let first_start = maps.first().map_or(0.0, |m| num(m, "start"));
                    s.add("big.first_fetch_start", first_start);
                    s.add("big.after_fetches", first - last_end);
                    for (i, m) in maps.iter().enumerate() {
                        s.add(
                            &format!("big.map{i}.wait"),
                            num(m, "headers") - num(m, "start"),
                        );
                        s.add(&format!("big.map{i}.took"), num(m, "end") - num(m, "start"));
                    }
                    shapes.insert("first", (num(&v, "nodes"), num(&v, "edges")));
                    first_maps = maps;
                    let settled = browser
                        .execute_async(&format!("{LOAF}{SETTLE}"), Vec::new())
                        .expect("settle");
                    for k in LOAF_KEYS {
                        s.add_opt(&format!("big.loaf.{k}"), &settled["loaf"], k);
                    }
                    s.add("big.settled", num(&settled, "last").max(first));
                    s.add("big.draws", num(&settled, "count"));
                    s.add("big.drawTotal", num(&settled, "total"));
                    s.add("big.drawsAtFirst", num(&v["draws"], "count"));
                    let frames = browser
                        .execute_async(TWO_FRAMES, Vec::new())
                        .expect("frames");
                    s.add("frames", frames.as_f64().unwrap_or(f64::NAN));
                    for (key, _, params) in interactions() {
                        let v = browser
                            .execute_async(&format!("{LOAF}{LOAD_MAP}"), vec![params])
                            .expect("loadMap");
                        if let Some(error) = v["error"].as_str().or(v["result"]["error"].as_str()) {
                            panic!("loadMap {key}: {error}");
                        }
                        let maps = v["maps"].as_array().cloned().unwrap_or_default();
                        let wait_headers = maps
                            .iter()
                            .map(|m| num(m, "headers") - num(m, "start"))
                            .sum::<f64>();
                        s.add(&format!("{key}.total"), num(&v, "total"));
                        s.add(&format!("{key}.headers"), wait_headers);
                        s.add(&format!("{key}.json"), num(&v, "json"));
                        for phase in PHASES {
                            s.add_opt(&format!("{key}.t.{phase}"), &v["timings"], phase);
                        }
                        s.add(
                            &format!("{key}.settled"),
                            num(&v, "settled").max(num(&v, "total")),
                        );
                        s.add(&format!("{key}.draws"), num(&v, "draws"));
                        s.add(&format!("{key}.prep"), num(&v, "prep"));
                        for k in LOAF_KEYS {
                            s.add_opt(&format!("{key}.loaf.{k}"), &v["loaf"], k);
                        }
                        s.add(&format!("{key}.drawTotal"), num(&v, "drawTotal"));
                        s.add(
                            &format!("{key}.bytes"),
                            maps.iter().map(|m| num(m, "bytes")).sum(),
                        );
                        shapes.insert(key, (num(&v, "nodes"), num(&v, "edges")));
                    }
                }
            }
        }
        println!(
            "  round {}: first map {:.0} ms, canvas settled {:.0} ms (empty map {:.0} ms, \
             trivial page {:.0} ms); ns-0 {:.0} ms, namespaces {:.0} ms, 2,000 workload \
             edges {:.0} ms",
            round + 1,
            s.get("big.first", round),
            s.get("big.settled", round),
            s.get("empty.first", round),
            s.get("trivial.load", round),
            s.get("ns0.total", round),
            s.get("namespaces.total", round),
            s.get("wl2000.total", round),
        );
    }
    let errors: Vec<String> = browser
        .console_log()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.level == "SEVERE" && !e.message.contains("favicon.ico"))
        .map(|e| e.message)
        .collect();
    drop(browser);

    println!(
        "\nThe page (app.js {} bytes, FNV-1a {:016x}) in headless Chromium {version} \
         (1400×900 window), {PAGE_ROUNDS} rounds (empty-map page, 2,000-workload page, \
         trivial page, in rotating order), medians by the page's clock from the \
         navigation's start:",
        app.len(),
        fingerprint(&app)
    );
    println!("| measure | median | reference | ratio |");
    println!("| --- | --- | --- | --- |");
    let (nodes, edges) = shapes["first"];
    println!(
        "| **navigation → first map drawn** (`firstRenderMs`; auto view: {nodes} namespaces, {edges} edges) | **{:.0} ms** | the same page over an empty hub: {:.0} ms | {:.1}× |",
        s.median("big.first"),
        s.median("empty.first"),
        s.ratio("big.first", "empty.first"),
    );
    println!(
        "| the same | | a trivial page (`/api/status`), load event end: {:.0} ms | {:.1}× |",
        s.median("trivial.load"),
        s.ratio("big.first", "trivial.load"),
    );
    println!(
        "| navigation → the canvas's last draw (no draw for 500 ms after it) | {:.0} ms | | |",
        s.median("big.settled"),
    );
    println!(
        "| navigation: HTML response end / DOMContentLoaded / load event end | {:.0} / {:.0} / {:.0} ms | empty-map page's load event end: {:.0} ms | {:.1}× |",
        s.median("big.responseEnd"),
        s.median("big.domContentLoaded"),
        s.median("big.load"),
        s.median("empty.load"),
        s.ratio("big.load", "empty.load"),
    );
    println!(
        "| the page's first `/api/map` fetch starts at | {:.0} ms | | |",
        s.median("big.first_fetch_start")
    );
    for (i, m) in first_maps.iter().enumerate() {
        println!(
            "| fetch {} `{}` ({}): to headers / to last byte | {:.0} / {:.0} ms | | |",
            i + 1,
            m["url"].as_str().unwrap_or("?"),
            size(num(m, "bytes") as usize),
            s.median(&format!("big.map{i}.wait")),
            s.median(&format!("big.map{i}.took")),
        );
    }
    println!(
        "| after the last fetch's last byte, until `firstRenderMs` | {:.0} ms | | |",
        s.median("big.after_fetches")
    );
    println!(
        "| the page's phases of that load (`observerConsole.timings`): {} | {} ms | | |",
        PHASES.join(" / "),
        PHASES
            .iter()
            .map(|p| s.ms(&format!("big.t.{p}")))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "| canvas draws until settled, and their time in all (renderer counters) | {:.0} draws, {:.0} ms | | |",
        s.median("big.draws"),
        s.median("big.drawTotal"),
    );
    println!(
        "| long animation frames (over 50 ms) since the navigation, until settled: {} | {} | | |",
        loaf_header(),
        loaf_values(&s, "big"),
    );
    println!(
        "| two animation frames (a check that headless Chromium runs frames) | {:.0} ms | | |",
        s.median("frames")
    );
    println!(
        "\nInteractive loads on the loaded page (`observerConsole.loadMap`), medians over the rounds, ms:"
    );
    println!(
        "| load | drawn | total | / a load of the empty map ({:.0} ms) | server (request → headers) | `Response.json()` (body + parse) | page's phases: {} | Cytoscape before its draws | canvas draws (time) | canvas settled after |",
        s.median("empty.reload"),
        PHASES.join(" / ")
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (key, label, _) in interactions() {
        let (nodes, edges) = shapes[key];
        println!(
            "| {label} | {nodes} nodes, {edges} edges ({}) | **{:.0}** | {:.1}× | {:.0} | {:.0} | {} | {:.0} | {:.0} ({:.0}) | {:.0} |",
            size(s.median(&format!("{key}.bytes")) as usize),
            s.median(&format!("{key}.total")),
            s.ratio(&format!("{key}.total"), "empty.reload"),
            s.median(&format!("{key}.headers")),
            s.median(&format!("{key}.json")),
            PHASES
                .iter()
                .map(|p| s.ms(&format!("{key}.t.{p}")))
                .collect::<Vec<_>>()
                .join(" / "),
            s.median(&format!("{key}.prep")),
            s.median(&format!("{key}.draws")),
            s.median(&format!("{key}.drawTotal")),
            s.median(&format!("{key}.settled")),
        );
    }
    println!(
        "\nWhere the main thread went in those loads: long animation frames (over 50 ms) from \
         the call until the canvas settled, medians, ms:"
    );
    println!("| load | {} |", loaf_header().replace(" / ", " | "));
    println!("| --- |{}", " --- |".repeat(LOAF_KEYS.len()));
    for (key, _, _) in interactions() {
        println!("| {key} | {} |", loaf_values(&s, key).replace(" / ", " | "));
    }
    if !errors.is_empty() {
        println!("\nbrowser console errors ({}):", errors.len());
        for e in errors.iter().take(10) {
            println!("  {e}");
        }
    }
}
