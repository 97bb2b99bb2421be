//! Policy suggestions: "what policies should I write?", answered from observed traffic.
//!
//! Pure, values in and out, no I/O: `learn` turns judged flow records into edges per
//! workload (bounded by the number of edges); `generate` turns them into one
//! least-privilege NetworkPolicy per workload, each rule with its evidence; `render`
//! writes them as YAML for `kubectl apply`; `prove` judges the records they were learned
//! from against the declared and suggested policies together (all must be allowed) and
//! finds the pairs of known workloads they newly deny; `state` is what was learned as bytes
//! that travel (state file, `GetLearning`); `unused` lists the rules of declared Calico and
//! admin policies no record was decided by. `cli/suggest/` wires files to it.

pub mod calico;
mod edge;
pub mod generate;
mod interning;
pub mod learn;
pub mod prove;
pub mod render;
pub mod report;
pub mod state;
pub mod unused;
