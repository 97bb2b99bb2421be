//! The gRPC API on a Unix socket: the socket's permissions keep other users out (the
//! DaemonSet's choice, since a loopback port is open to every hostNetwork pod), a real
//! tonic client and `observer observe` reach it, the socket goes when the server stops,
//! and a file that is not a socket is never replaced.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::Arc;
use std::time::Duration;

use observer::api::listen::{self, ApiAddress, SOCKET_MODE};
use observer::api::server::{self, ApiConfig};
use observer::hub::FlowHub;
use observer::wire::proto::{
    GetFlowsRequest, get_flows_request::Start, observer_client::ObserverClient,
};
use tokio::sync::oneshot;

mod support;

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("api-unix-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_on_a_unix_socket_that_only_its_user_may_open() {
    let dir = scratch("serve");
    let socket = dir.join("api.sock");
    // A socket file left by an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    let hub = FlowHub::with_first_cursor(64, 1);
    let flows = support::api_flows();
    hub.publish(flows.clone()).await;
    let address = ApiAddress::parse(&format!("unix://{}", socket.display())).expect("address");
    let listener = listen::bind(&address).await.expect("bind");
    let meta = std::fs::metadata(&socket).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, SOCKET_MODE);
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(
        listener,
        Arc::clone(&hub),
        ApiConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));

    // Our client library.
    let channel = listen::connect(&address.to_string(), None)
        .await
        .expect("connect");
    let mut client = ObserverClient::new(channel);
    let mut stream = client
        .get_flows(GetFlowsRequest {
            start: Some(Start::FromOldest(true)),
            ..Default::default()
        })
        .await
        .expect("stream")
        .into_inner();
    let mut received = 0;
    while let Some(message) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("in time")
        .expect("message")
    {
        received += usize::from(matches!(
            message.event,
            Some(observer::wire::proto::get_flows_response::Event::Flow(_))
        ));
    }
    assert_eq!(received, flows.len());

    // The CLI, in another process.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_observer"))
        .args(["observe", "--from-oldest", "--server", &address.to_string()])
        .output()
        .await
        .expect("observe runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).lines().count(),
        flows.len(),
        "{output:?}"
    );

    // Stopped: the socket file goes with it.
    hub.close();
    let _ = stop.send(());
    serving.await.expect("task").expect("served");
    assert!(!socket.exists(), "the socket file was left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_file_that_is_not_a_socket_is_never_replaced() {
    let dir = scratch("not-a-socket");
    let path = dir.join("api.sock");
    std::fs::write(&path, "keep me").expect("write");
    let address = ApiAddress::Unix(path.clone());
    let Err(error) = listen::bind(&address).await else {
        panic!("bound over a regular file");
    };
    assert!(
        format!("{error:#}").contains("is not a socket"),
        "{error:#}"
    );
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), "keep me");
    let _ = std::fs::remove_dir_all(&dir);
}
