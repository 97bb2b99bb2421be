//! Sinks: a waiting sink loses nothing and holds publishing back; a dropping sink counts
//! exactly what its full queue could not take; closing ends every sink after its records.

use std::sync::Arc;
use std::time::Duration;

use super::{FlowHub, WhenFull};
use crate::flow::fixtures::flows;

fn records(n: usize) -> Vec<crate::flow::FlowRecord> {
    std::iter::repeat_n(flows()[0].clone(), n).collect()
}

#[tokio::test]
async fn a_dropping_sink_counts_exactly_what_its_full_queue_could_not_take() {
    let hub = FlowHub::with_first_cursor(64, 1);
    let mut queue = hub.subscribe("slow", 3, WhenFull::Drop, false);
    hub.publish(records(10)).await;
    let status = &hub.sink_status()[0];
    assert_eq!((status.name, status.delivered, status.lost), ("slow", 3, 7));
    // The queue holds the first three, with their cursors; the ring holds all ten.
    hub.close();
    let mut cursors = Vec::new();
    while let Some(entry) = queue.recv().await {
        cursors.push(entry.cursor);
    }
    assert_eq!(cursors, vec![1, 2, 3]);
    assert_eq!(hub.status().newest_cursor, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_sink_holds_publishing_back_and_loses_nothing() {
    let hub = FlowHub::with_first_cursor(8, 1);
    let mut queue = hub.subscribe("log", 2, WhenFull::Wait, false);
    let publisher = {
        let hub = Arc::clone(&hub);
        tokio::spawn(async move { hub.publish(records(50)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!publisher.is_finished(), "waits while the queue is full");
    let mut cursors = Vec::new();
    while cursors.len() < 50 {
        let entry = queue.recv().await.expect("a record");
        cursors.push(entry.cursor);
    }
    publisher.await.expect("publisher");
    assert_eq!(cursors, (1..=50).collect::<Vec<u64>>());
    let status = &hub.sink_status()[0];
    assert_eq!((status.delivered, status.lost), (50, 0));
}

#[tokio::test]
async fn after_close_sinks_end_and_later_records_count_as_lost_to_them() {
    let hub = FlowHub::with_first_cursor(8, 1);
    let mut queue = hub.subscribe("log", 8, WhenFull::Wait, false);
    hub.publish(records(2)).await;
    hub.close();
    assert_eq!(queue.recv().await.map(|e| e.cursor), Some(1));
    assert_eq!(queue.recv().await.map(|e| e.cursor), Some(2));
    assert!(queue.recv().await.is_none());
    hub.publish(records(1)).await;
    assert_eq!(hub.sink_status()[0].lost, 1);
}

#[tokio::test]
async fn the_wire_form_is_made_once_and_shared() {
    let hub = FlowHub::with_first_cursor(8, 1);
    hub.publish(records(1)).await;
    let first = hub.read_after(0, 1).items.remove(0).1;
    let again = hub.read_after(0, 1).items.remove(0).1;
    assert!(Arc::ptr_eq(&first, &again), "one shared entry, not a copy");
    assert!(std::ptr::eq(first.wire(), again.wire()), "converted once");
    assert_eq!(first.wire(), &crate::wire::proto::Flow::from(&first.record));
}

fn started(n: usize) -> Vec<crate::flow::FlowRecord> {
    let mut items = records(n);
    for item in &mut items {
        item.state = crate::flow::FlowState::Started;
    }
    items
}

#[tokio::test]
async fn started_items_go_only_to_sinks_that_take_them_and_never_make_publishing_wait() {
    let hub = FlowHub::with_first_cursor(64, 1);
    let mut records_only = hub.subscribe("metrics", 8, WhenFull::Drop, false);
    // A waiting sink with room for two: the started items beyond it are shed, counted in
    // their own unit, and publishing does not wait (the test would hang if it did).
    let mut log = hub.subscribe("log", 2, WhenFull::Wait, true);
    hub.publish(started(5)).await;
    for cursor in [1, 2] {
        assert_eq!(log.recv().await.map(|e| e.cursor), Some(cursor));
    }
    hub.publish(records(1)).await;
    let status = hub.sink_status();
    assert_eq!(
        (status[0].delivered, status[0].lost, status[0].started_lost),
        (1, 0, 0),
        "the records-only sink got the record alone"
    );
    assert_eq!(
        (status[1].delivered, status[1].lost, status[1].started_lost),
        (3, 0, 3)
    );
    let entry = records_only.recv().await.expect("the record");
    assert_eq!(
        entry.cursor, 6,
        "the started items took cursors 1-5 in the ring"
    );
    assert_eq!(hub.status().newest_cursor, 6);
}
