//! The gRPC API end to end over loopback: a real tonic server on a hub, a real client.

use std::sync::Arc;
use std::time::Duration;

use observer::api::server::{self, ApiConfig};
use observer::flow::FlowRecord;
use observer::hub::FlowHub;
use observer::wire::proto::{
    FlowFilter, GetFlowsRequest, GetFlowsResponse, ServerStatusRequest, get_flows_request::Start,
    get_flows_response::Event, lost_flows::Reason, observer_client::ObserverClient,
};
use tokio::sync::oneshot;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(20);

mod support;

use support::api_flows as flows;

/// A server on a loopback port, stopped when dropped.
struct Api {
    client: ObserverClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(hub: &Arc<FlowHub>) -> Api {
    serve_with(hub, ApiConfig::default()).await
}

async fn serve_with(hub: &Arc<FlowHub>, config: ApiConfig) -> Api {
    let listener = server::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, Arc::clone(hub), config, async {
        let _ = stopped.await;
    }));
    let client = ObserverClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    Api {
        client,
        stop: Some(stop),
    }
}

/// A stream that follows from the next flow written.
async fn follow(api: &mut Api) -> tonic::Streaming<GetFlowsResponse> {
    api.client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .expect("stream")
        .into_inner()
}

/// Everything a stream sends until it ends.
async fn collect(api: &mut Api, request: GetFlowsRequest) -> Vec<Event> {
    let mut stream = api
        .client
        .get_flows(request)
        .await
        .expect("stream")
        .into_inner();
    let mut events = Vec::new();
    while let Some(message) = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("stream stalled")
        .expect("stream failed")
    {
        events.extend(message.event);
    }
    events
}

fn cursors_and_ports(events: &[Event]) -> Vec<(u64, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Flow(f) => Some((
                f.cursor,
                f.flow
                    .as_ref()
                    .and_then(|f| f.source.as_ref())
                    .map_or(0, |s| s.port),
            )),
            Event::Lost(_) | Event::Progress(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn a_follower_gets_every_flow_in_order_as_it_was_written() {
    let hub = FlowHub::with_first_cursor(64, 1000);
    let mut api = serve(&hub).await;
    let mut stream = follow(&mut api).await;
    // The server fixed the stream's start (the next flow) before it answered.
    hub.publish(flows()).await;
    let mut received = Vec::new();
    while received.len() < 4 {
        let message = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("flow in time")
            .expect("stream ok")
            .expect("stream open");
        match message.event {
            Some(Event::Flow(f)) => received.push(f),
            other => panic!("unexpected {other:?}"),
        }
    }
    let cursors: Vec<u64> = received.iter().map(|f| f.cursor).collect();
    assert_eq!(cursors, vec![1000, 1001, 1002, 1003]);
    let back: Vec<FlowRecord> = received
        .iter()
        .map(|f| FlowRecord::try_from(f.flow.as_ref().expect("flow")).expect("converts"))
        .collect();
    assert_eq!(back, flows());
    // Closing the hub ends the stream once it sent what is left.
    hub.publish(flows()[..1].to_vec()).await;
    hub.close();
    let mut rest = Vec::new();
    while let Some(message) = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("end in time")
        .expect("stream ok")
    {
        rest.extend(message.event);
    }
    assert_eq!(cursors_and_ports(&rest), vec![(1004, 40000)]);
}

#[tokio::test]
async fn violations_are_a_filter_and_a_cursor_resumes_exactly_after_it() {
    let hub = FlowHub::with_first_cursor(64, 1000);
    hub.publish(flows()).await;
    let mut api = serve(&hub).await;
    let violations = GetFlowsRequest {
        start: Some(Start::FromOldest(true)),
        allow: vec![FlowFilter {
            verdict: vec!["deny".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let events = collect(&mut api, violations).await;
    assert_eq!(cursors_and_ports(&events), vec![(1001, 40001)]);

    let resumed = GetFlowsRequest {
        start: Some(Start::AfterCursor(1001)),
        ..Default::default()
    };
    let events = collect(&mut api, resumed).await;
    assert_eq!(cursors_and_ports(&events), vec![(1002, 53000), (1003, 77)]);

    let last = GetFlowsRequest {
        start: Some(Start::Last(1)),
        deny: vec![FlowFilter {
            protocol: vec!["TCP".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let events = collect(&mut api, last).await;
    assert_eq!(cursors_and_ports(&events), vec![(1003, 77)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_told_exactly_which_flows_it_lost() {
    let hub = FlowHub::with_first_cursor(8, 1);
    let mut api = serve(&hub).await;
    let mut stream = follow(&mut api).await;
    // Published while the client reads nothing, in batches as the daemon publishes, with
    // the server's stream task running on another thread: it sends until its queue and
    // the connection's buffers are full, then waits, and the ring wraps under it.
    let batch: Vec<FlowRecord> = std::iter::repeat_n(flows()[0].clone(), 100).collect();
    for _ in 0..200 {
        hub.publish(batch.clone()).await;
        tokio::task::yield_now().await;
    }
    hub.close();
    let mut next = 1;
    let mut lost = 0;
    let mut delivered = 0;
    while let Some(message) = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("message in time")
        .expect("stream ok")
    {
        match message.event.expect("event") {
            Event::Flow(f) => {
                assert_eq!(f.cursor, next, "flows in order, no silent gap");
                delivered += 1;
                next += 1;
            }
            Event::Lost(l) => {
                assert_eq!(
                    l.first_cursor, next,
                    "the gap starts where the flows stopped"
                );
                assert_eq!(l.reason, Reason::Overwritten as i32);
                lost += l.last_cursor - l.first_cursor + 1;
                next = l.last_cursor + 1;
            }
            Event::Progress(_) => panic!("progress was not asked for"),
        }
    }
    assert_eq!(next, 20_001, "every cursor accounted for");
    assert!(lost > 0, "the subscriber kept up: nothing was overwritten");
    assert!(
        delivered > 8,
        "the stream sent nothing before it fell behind"
    );
    assert_eq!(delivered + lost, 20_000);
    let status = api
        .client
        .server_status(ServerStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.flows_lost_to_subscribers, lost);
    assert_eq!(status.flows_published, 20_000);
    assert_eq!(
        (status.oldest_cursor, status.newest_cursor),
        (19_993, 20_000)
    );
}

#[tokio::test]
async fn a_cursor_from_an_earlier_run_is_answered_with_what_is_unknown() {
    let hub = FlowHub::with_first_cursor(64, 1000);
    hub.publish(flows()[..2].to_vec()).await;
    let mut api = serve(&hub).await;
    let events = collect(
        &mut api,
        GetFlowsRequest {
            start: Some(Start::AfterCursor(500)),
            ..Default::default()
        },
    )
    .await;
    match &events[0] {
        Event::Lost(l) => {
            assert_eq!((l.first_cursor, l.last_cursor), (501, 999));
            assert_eq!(l.reason, Reason::EarlierRun as i32);
        }
        other => panic!("expected a lost notice first: {other:?}"),
    }
    assert_eq!(
        cursors_and_ports(&events),
        vec![(1000, 40000), (1001, 40001)]
    );
}

#[tokio::test]
async fn a_bad_filter_is_refused_naming_it() {
    let hub = FlowHub::with_first_cursor(64, 1);
    let mut api = serve(&hub).await;
    let status = api
        .client
        .get_flows(GetFlowsRequest {
            allow: vec![FlowFilter {
                source_ip: vec!["10.0.0.0/33".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "allow[0].source_ip: \"10.0.0.0/33\" is not an address or CIDR"
    );
}

#[tokio::test]
async fn a_cursor_this_run_has_not_written_is_refused() {
    let hub = FlowHub::with_first_cursor(64, 1000);
    hub.publish(flows()).await;
    let mut api = serve(&hub).await;
    for cursor in [1004, 5_000_000, u64::MAX] {
        let status = api
            .client
            .get_flows(GetFlowsRequest {
                start: Some(Start::AfterCursor(cursor)),
                follow: true,
                ..Default::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{cursor}");
        assert!(status.message().contains("1004"), "{}", status.message());
    }
    // The newest written cursor itself is fine: nothing follows it yet.
    let events = collect(
        &mut api,
        GetFlowsRequest {
            start: Some(Start::AfterCursor(1003)),
            ..Default::default()
        },
    )
    .await;
    assert!(events.is_empty());
}

#[tokio::test]
async fn a_client_that_goes_away_ends_its_stream_even_when_nothing_matches() {
    let hub = FlowHub::with_first_cursor(64, 1);
    let mut api = serve(&hub).await;
    let stream = api
        .client
        .get_flows(GetFlowsRequest {
            follow: true,
            allow: vec![FlowFilter {
                namespace: vec!["nowhere".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("stream")
        .into_inner();
    assert_eq!(hub.status().subscribers, 1);
    drop(stream);
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.status().subscribers != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_does_not_follow_ends_at_the_flows_held_when_it_started() {
    let hub = FlowHub::with_first_cursor(100_000, 1);
    let batch: Vec<FlowRecord> = std::iter::repeat_n(flows()[0].clone(), 500).collect();
    hub.publish(batch.clone()).await;
    let mut api = serve(&hub).await;
    let publisher = {
        let hub = Arc::clone(&hub);
        tokio::spawn(async move {
            for _ in 0..20 {
                hub.publish(batch.clone()).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let events = collect(
        &mut api,
        GetFlowsRequest {
            start: Some(Start::Last(100)),
            ..Default::default()
        },
    )
    .await;
    publisher.await.expect("publisher");
    let cursors: Vec<u64> = cursors_and_ports(&events).iter().map(|(c, _)| *c).collect();
    assert_eq!(cursors.len(), 100, "exactly the newest 100 at the start");
    assert!(cursors.windows(2).all(|w| w[1] == w[0] + 1));
}

#[tokio::test]
async fn streams_beyond_the_cap_are_refused_until_one_ends() {
    let hub = FlowHub::with_first_cursor(64, 1);
    let config = ApiConfig {
        max_streams: 2,
        ..ApiConfig::default()
    };
    let mut api = serve_with(&hub, config).await;
    let first = follow(&mut api).await;
    let _second = follow(&mut api).await;
    let refused = api
        .client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .expect_err("a third stream");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("--grpc-max-streams"),
        "{refused:?}"
    );
    // A status request is not a stream: still answered.
    assert_eq!(hub.status().subscribers, 2);
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let again = api
            .client
            .get_flows(GetFlowsRequest {
                follow: true,
                ..Default::default()
            })
            .await;
        match again {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the ended stream's slot never came back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Violations are kept apart from the flow ring: a violations stream resumes exactly long
/// after allowed flows overwrote the ring, a gap in it means violations were dropped, and
/// says how many; the status counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_outlive_the_flow_ring_and_their_own_losses_are_counted() {
    // A ring of 4 flows, a retention of 2 violations.
    let hub = FlowHub::with_retention(4, 2, 1000);
    let fixture = flows();
    let (allowed, denied) = (fixture[0].clone(), fixture[1].clone());
    let with_port = |record: &FlowRecord, port: u16| {
        let mut record = record.clone();
        record.src.port = port;
        record
    };
    hub.publish(vec![with_port(&denied, 1)]).await; // cursor 1000
    hub.publish((0..50).map(|i| with_port(&allowed, 100 + i)).collect())
        .await;
    let mut api = serve(&hub).await;
    let violations = |start| GetFlowsRequest {
        start: Some(start),
        allow: vec![FlowFilter {
            verdict: vec!["deny".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    // From the oldest: the violation 50 allowed flows ago, nothing lost.
    let events = collect(&mut api, violations(Start::FromOldest(true))).await;
    assert_eq!(cursors_and_ports(&events), vec![(1000, 1)]);
    assert!(
        events.iter().all(|e| matches!(e, Event::Flow(_))),
        "{events:?}"
    );
    // Resuming after it: nothing lost, though the ring lost 46 flows since.
    let events = collect(&mut api, violations(Start::AfterCursor(1000))).await;
    assert!(events.is_empty(), "{events:?}");
    // An all-flows stream from the same cursor is told of the overwritten flows.
    let all = collect(
        &mut api,
        GetFlowsRequest {
            start: Some(Start::AfterCursor(1000)),
            ..Default::default()
        },
    )
    .await;
    assert!(
        matches!(&all[0], Event::Lost(l) if l.first_cursor == 1001 && l.matching_flows.is_none()),
        "{all:?}"
    );
    // Three more violations: the retention of 2 drops two (under 1000 and 1051).
    hub.publish((0..3).map(|i| with_port(&denied, 2 + i)).collect())
        .await; // cursors 1051..=1053
    let events = collect(&mut api, violations(Start::AfterCursor(999))).await;
    match &events[0] {
        Event::Lost(lost) => {
            assert_eq!((lost.first_cursor, lost.last_cursor), (1000, 1051));
            assert_eq!(lost.reason, Reason::Overwritten as i32);
            assert_eq!(lost.matching_flows, Some(2), "two violations dropped");
        }
        other => panic!("a gap first, not {other:?}"),
    }
    assert_eq!(cursors_and_ports(&events), vec![(1052, 3), (1053, 4)]);
    // --last counts the violations held.
    let events = collect(&mut api, violations(Start::Last(1))).await;
    assert_eq!(cursors_and_ports(&events), vec![(1053, 4)]);
    let status = api
        .client
        .server_status(ServerStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!((status.violations_held, status.violations_capacity), (2, 2));
}
