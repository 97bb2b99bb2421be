//! Helpers the API part and the page part share: `GET` over loopback, medians, times in
//! ms, sizes, and the page's samples by name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `GET path` over a fresh connection: the time from connect to the last byte, and the
/// body.
pub(crate) fn get(address: SocketAddr, path: &str) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let answer = observer_lab::http::get(address, path).expect("GET");
    let took = start.elapsed();
    assert_eq!(answer.status, 200, "{path}: {}", answer.head);
    assert!(
        !answer
            .head
            .to_ascii_lowercase()
            .contains("transfer-encoding"),
        "{path}: a chunked answer: {}",
        answer.head
    );
    (took, answer.body)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "no samples");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn size(bytes: usize) -> String {
    if bytes >= 100_000 {
        format!("{:.2} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}

pub(crate) fn num(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {value}"))
}

/// A page's measures over the rounds, by name.
#[derive(Default)]
pub(crate) struct Samples(BTreeMap<String, Vec<f64>>);

impl Samples {
    pub(crate) fn add(&mut self, name: &str, value: f64) {
        self.0.entry(name.to_owned()).or_default().push(value);
    }

    /// Adds `value[key]` when it is a number (a phase an older page does not report is
    /// left out).
    pub(crate) fn add_opt(&mut self, name: &str, value: &Value, key: &str) {
        if let Some(v) = value[key].as_f64() {
            self.add(name, v);
        }
    }

    pub(crate) fn median(&self, name: &str) -> f64 {
        median(
            self.0
                .get(name)
                .unwrap_or_else(|| panic!("no samples of {name}"))
                .clone(),
        )
    }

    /// The median in ms, or "–" when there is none.
    pub(crate) fn ms(&self, name: &str) -> String {
        match self.0.get(name) {
            Some(v) if !v.is_empty() => format!("{:.0}", median(v.clone())),
            _ => "–".into(),
        }
    }

    pub(crate) fn ratio(&self, a: &str, b: &str) -> f64 {
        median(
            self.0[a]
                .iter()
                .zip(&self.0[b])
                .map(|(x, y)| x / y)
                .collect(),
        )
    }

    pub(crate) fn get(&self, name: &str, round: usize) -> f64 {
        self.0
            .get(name)
            .and_then(|v| v.get(round))
            .copied()
            .unwrap_or(f64::NAN)
    }
}
