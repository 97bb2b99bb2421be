//! Watching network interfaces appear and vanish (rtnetlink link events).

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use rtnetlink::{
    constants::RTMGRP_LINK,
    packet_core::NetlinkPayload,
    packet_route::{
        RouteNetlinkMessage,
        link::{LinkAttribute, LinkMessage},
    },
    sys::{AsyncSocket, SocketAddr},
};
use tokio::sync::mpsc;

/// A change in the set of interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The interface exists (initial listing, creation, rename or move into this netns).
    Present {
        /// Interface index.
        index: u32,
        /// Interface name.
        name: String,
    },
    /// The interface is gone (deleted or moved out of this netns).
    Gone {
        /// Interface index.
        index: u32,
    },
}

/// Lists the current interfaces, then follows link events, sending both to `out`.
/// Subscribes before listing so no interface created in between is missed.
pub async fn watch_links(out: mpsc::Sender<LinkEvent>) -> Result<()> {
    let (mut connection, handle, mut messages) =
        rtnetlink::new_connection().context("opening an rtnetlink socket")?;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, RTMGRP_LINK))
        .context("subscribing to rtnetlink link events")?;
    tokio::spawn(connection);

    let mut links = handle.link().get().execute();
    while let Some(link) = links.try_next().await.context("listing interfaces")? {
        if let Some(event) = present(&link)
            && out.send(event).await.is_err()
        {
            return Ok(());
        }
    }
    while let Some((message, _)) = messages.next().await {
        let event = match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => present(&link),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                Some(LinkEvent::Gone {
                    index: link.header.index,
                })
            }
            _ => None,
        };
        if let Some(event) = event
            && out.send(event).await.is_err()
        {
            return Ok(());
        }
    }
    anyhow::bail!("the rtnetlink event stream ended")
}

fn present(link: &LinkMessage) -> Option<LinkEvent> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(LinkEvent::Present {
                index: link.header.index,
                name: name.clone(),
            }),
            _ => None,
        })
}
