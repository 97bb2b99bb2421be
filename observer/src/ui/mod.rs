//! The web console's data (in progress: the page itself is not built yet): what the page
//! draws, made from the records the hub holds.
//!
//! - `service_map`: records folded into a map of workloads (or namespaces), nodes and
//!   outside prefixes, with directed edges by protocol and port, coloured by verdict (pure);
//! - `http`: `GET /api/map` over HTTP (`observer run --ui-listen`).

pub mod http;
pub mod service_map;
