//! rollgate: a validating admission webhook and policy gate for Kubernetes.
//! In a protected namespace, no restart, image or other change of what runs
//! without an approved ticket (DESIGN.md "What is gated").
//!
//! Where to start reading: [`policy::classify`] (what is gated) and
//! [`admission::decide`] (the verdict) are pure; [`admission`] is the webhook
//! edge; [`tickets::TicketDesk`] the ticket flow; [`grants`] the signed JWTs;
//! [`audit`] the hash-chained trail; [`store`] the backends; [`server`] wires
//! it all together. `../shared/DESIGN.md` is the contract for names.
//!
//! # Layout
//!
//! Imports point one way: **leaves → core → services → edges → wiring**. A
//! module may use what sits in its own group or below it, never above; only
//! [`server`] (with [`state`] and `main.rs`) knows every module. The core is
//! pure: no core file names `config`, `store`, `state`, `api`, `cli`,
//! `server`, axum or a `kube::Client`; config fills types the core defines.
//! (`../shared/STYLE.md` section 2; issue #13.)
//!
//! ```text
//! leaves    error · names · metrics
//! core      policy · grants · auth (model, roles) · tickets (model,
//!           transitions, port) · audit (record, chain, checkpoint) ·
//!           admission::decide, admission::head · rollout (model, assess)
//! services  the ticket desk · audit trail and shipping · notify ·
//!           rollout::follow
//! edges     admission (the webhook) · api · store · auth::cluster ·
//!           redeploy · tls · certs · dev · cli · config
//! wiring    server · state · main.rs
//! ```
//!
//! Some modules hold parts of two groups until they are split by job
//! (issue #13 item 4): `tickets` (model and `TicketDesk`), `audit` (model,
//! trail and ship), `rollout` (assess and follow), `auth` (model and the
//! `Caller` extractor), `admission` (the webhook and its pure `decide`).

// === leaves: import nothing of the crate ===
pub mod error;
pub mod metrics;
pub mod names;

// === core: pure, owns its words ===
pub mod audit;
pub mod auth;
pub mod grants;
pub mod policy;
pub mod rollout;
pub mod tickets;

// === services ===
pub mod notify;

// === edges: I/O, HTTP, storage, files, flags ===
pub mod admission;
pub mod api;
pub mod certs;
pub mod cli;
pub mod config;
pub mod dev;
pub mod redeploy;
pub mod store;
pub mod tls;

// === wiring ===
pub mod server;
pub mod state;
