//! `observer observe` and `observer status`, the real binary against a real tonic server:
//! the last 20 matching flows by default, `--last`/`--first` counting matching flows, a
//! time window, either-side and per-side filters, `--not`, the Kubernetes label syntax,
//! workload kinds in any case; table, compact and JSON Lines output, colour, a table in a
//! pseudo-terminal; exit codes (2 for usage and refused values, 0 for a closed pipe).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

mod support;

use observer::api::server::ApiConfig;
use observer::flow::Timestamp;
use observer::hub::FlowHub;

use support::{NUMBERED_BASE as BASE, numbered_flow as record};

/// A server holding records 0..n.
async fn server(n: usize) -> SocketAddr {
    let hub = FlowHub::with_first_cursor(4096, 1);
    hub.publish((0..n).map(record).collect()).await;
    let config = ApiConfig {
        node_name: "node-a".into(),
        ..ApiConfig::default()
    };
    support::api_channel(hub, config).await.1
}

async fn observer(address: SocketAddr, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_observer"));
    command
        .arg("observe")
        .args(["--server", &format!("http://{address}")])
        .args(args);
    command.output().await.expect("observer observe runs")
}

/// The source ports (30,000 + i) of the flows printed as JSON Lines: which records.
fn printed(output: &Output) -> Vec<usize> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            value["flow"]["src"]["port"].as_u64().expect("a port") as usize - 30_000
        })
        .collect()
}

fn rfc3339(second: i64) -> String {
    Timestamp(second * 1_000_000_000).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_windows_and_filters_select_what_a_user_means() {
    let address = server(60).await;
    // No start flag: the last 20 flows, then the end (as hubble observe does).
    assert_eq!(
        printed(&observer(address, &[]).await),
        (40..60).collect::<Vec<_>>()
    );
    // --last counts matching flows, not held ones.
    assert_eq!(
        printed(&observer(address, &["--last", "3", "--namespace", "db"]).await),
        [49, 53, 57]
    );
    assert_eq!(
        printed(&observer(address, &["--first", "2", "--verdict", "deny"]).await),
        [1, 5]
    );
    // A time window: flows active between two times (and from the oldest held on).
    let window = [
        "--since",
        &rfc3339(BASE + 10),
        "--until",
        &rfc3339(BASE + 13),
    ];
    assert_eq!(printed(&observer(address, &window).await), [10, 11, 12, 13]);
    // Either side, per side, negated.
    let cases: Vec<(Vec<&str>, Vec<usize>)> = vec![
        (vec!["--pod", "db/postgres-0", "--last", "2"], vec![53, 57]),
        (vec!["--to-namespace", "shop", "--last", "2"], vec![52, 56]),
        (vec!["--from-namespace", "db", "--last", "2"], vec![]),
        (
            vec!["--label", "app in (postgres,api)", "--last", "4"],
            vec![52, 53, 56, 57],
        ),
        (
            vec!["--label", "app=web,tier!=back", "--first", "1"],
            vec![0],
        ),
        (
            vec![
                "--to-label",
                "!tier",
                "--not",
                "--protocol",
                "udp",
                "--last",
                "2",
            ],
            vec![56, 57],
        ),
        (
            vec!["--workload", "deployment/api", "--last", "1"],
            vec![56],
        ),
        (
            vec!["--to-workload", "statefulset/postgres", "--last", "1"],
            vec![57],
        ),
        (vec!["--ip", "10.244.2.30", "--last", "1"], vec![57]),
        (vec!["--port", "8080", "--last", "1"], vec![56]),
        (vec!["--from-port", "30001"], vec![1]),
        (vec!["--node", "node-b", "--last", "2"], vec![57, 59]),
        (vec!["--service", "shop/", "--last", "1"], vec![56]),
        (
            vec![
                "--not",
                "--namespace",
                "db",
                "--not",
                "--protocol",
                "icmp",
                "--last",
                "2",
            ],
            vec![56, 58],
        ),
        (vec!["--protocol", "17", "--last", "1"], vec![58]),
    ];
    for (args, expected) in cases {
        assert_eq!(
            printed(&observer(address, &args).await),
            expected,
            "{args:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_cannot_be_used_are_refused_with_status_2_naming_them() {
    let address = server(4).await;
    for (args, says) in [
        (vec!["--label", "app in (web"], "allow[0].label"),
        (vec!["--since", "yesterday"], "--since \"yesterday\""),
        (
            vec!["--not", "--follow", "x"],
            "--not --follow: not a filter",
        ),
        (vec!["--workload", "web"], "is not \"Kind/name\""),
        (vec!["--first", "0"], "0 selects none"),
    ] {
        let output = observer(address, &args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let no_scheme = Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["observe", "--server", "localhost:4245"])
        .output()
        .expect("runs");
    assert_eq!(no_scheme.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_scheme.stderr).contains("write http://localhost:4245"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_and_compact_are_aligned_and_coloured_when_asked() {
    let address = server(8).await;
    let table = observer(address, &["-o", "table", "--last", "4"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "a header and four rows: {text}");
    assert!(lines[0].starts_with("TIME"), "{text}");
    // Aligned: every row's VERDICT column starts where the header's does.
    let column = lines[0].find("VERDICT").expect("a VERDICT column");
    for line in &lines[1..] {
        let cell = &line[column..];
        assert!(
            ["ALLOW", "DENY", "NONE"]
                .iter()
                .any(|v| cell.starts_with(v)),
            "{line}"
        );
    }
    assert!(
        lines[2].contains("db/postgres-0:5432 (StatefulSet/postgres)"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour when not asked off a terminal"
    );
    let compact = observer(
        address,
        &[
            "-o",
            "compact",
            "--last",
            "1",
            "--color",
            "always",
            "--verdict",
            "allow",
        ],
    )
    .await;
    let text = String::from_utf8_lossy(&compact.stdout);
    assert!(
        text.contains(
            "shop/web-1:30004 (Deployment/web) -> shop/api-1:8080 (Deployment/api) TCP closed"
        ),
        "{text}"
    );
    assert!(text.contains("\x1b[32mALLOW"), "allowed in green: {text:?}");
    assert!(text.contains("by shop/api-from-web[0]"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_default_is_a_coloured_table() {
    let address = server(4).await;
    let command = format!(
        "{} observe --server http://{address} --last 2",
        env!("CARGO_BIN_EXE_observer")
    );
    // `script` runs the command in a pseudo-terminal.
    let output = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("NO_COLOR")
        .output()
        .await
        .expect("script runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("TIME"), "a table: {text:?}");
    assert!(text.contains("\x1b[2mNONE"), "verdicts coloured: {text:?}");
    assert!(!text.contains("\"cursor\""), "not JSON: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_not_an_error() {
    let address = server(2000).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_observer"))
        .args([
            "observe",
            "--server",
            &format!("http://{address}"),
            "--from-oldest",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("observer observe starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a line");
    // The pipe's read end is closed here: the next writes fail with EPIPE.
    let output = child.wait_with_output().expect("observer ends");
    assert!(first.contains("\"cursor\""), "{first}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_a_table_or_json() {
    let address = server(3).await;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_observer"))
            .args(["status", "--server", &format!("http://{address}")])
            .args(args)
            .output()
            .expect("observer status runs")
    };
    let table = run(&[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{text}");
    assert!(text.contains("NODE                 node-a"), "{text}");
    assert!(text.contains("FLOWS HELD           3 of 4096"), "{text}");
    let json = run(&["-o", "json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(value["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(value["flows_published"], 3);
    assert_eq!(value["ready"], true);
}
