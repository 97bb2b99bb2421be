//! The web console (`observer run|relay --ui-listen`): the page, embedded, and the
//! read-only JSON API it draws from, made from the records the hub holds and the cluster
//! view.
//!
//! - `service_map`: records folded into a map of workloads (or namespaces), nodes and
//!   outside prefixes, with directed edges by protocol and port, coloured by verdict (pure);
//! - `edge`: the flows behind one edge (pure); `explain`: a verdict in words (pure);
//! - `http`: the routes and their parameters.

pub mod edge;
pub mod explain;
pub mod http;
pub mod policies;
pub mod policy_view;
pub mod service_map;
