//! The web console (`observer run|relay --ui-listen`): the page, embedded, and the
//! read-only JSON API it draws from, made from the records the hub holds and the cluster
//! view. Pure parts first, the edges last:
//!
//! - `service_map`: records folded into a map of workloads (or namespaces), nodes and
//!   outside prefixes, with directed edges by protocol and port, coloured by verdict;
//! - `edge`: the flows behind one edge; `explain`: a verdict in words;
//! - `policies`: declared policies as verdicts name them; `policy_view`: which policies
//!   select a workload, their rules' use, and what they allow;
//! - `params`: the API's query parameters;
//! - `suggestions`: GetSuggestions' answer as the console's JSON;
//! - `violations`: the live violations as Server-Sent Events;
//! - `assets`: the page's embedded files; `routes`: what each path answers;
//! - `server`: the bounded HTTP/1.1 (or HTTPS) server.

pub mod assets;
pub mod edge;
pub mod explain;
pub mod params;
pub mod policies;
pub mod policy_view;
pub mod routes;
pub mod server;
pub mod service_map;
pub mod suggestions;
pub mod violations;
