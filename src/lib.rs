//! rollgate: a validating admission webhook and policy gate for Kubernetes.
//! In a protected namespace, no restart, image or other change of what runs
//! without an approved ticket (DESIGN.md "What is gated").
//!
//! Where to start reading: [`policy::classify`] (what is gated) and
//! [`admission::decide`] (the verdict) are pure; [`admission`] is the webhook
//! edge; [`tickets::TicketDesk`] the ticket flow; [`grants`] the signed JWTs;
//! [`audit`] the hash-chained trail; [`store`] the backends; [`server`] wires
//! it all together. `../shared/DESIGN.md` is the contract for names.

pub mod admission;
pub mod api;
pub mod audit;
pub mod auth;
pub mod certs;
pub mod cli;
pub mod config;
pub mod dev;
pub mod error;
pub mod grants;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod policy;
pub mod redeploy;
pub mod rollout;
pub mod server;
pub mod state;
pub mod store;
pub mod tickets;
pub mod tls;
