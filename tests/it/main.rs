#![allow(clippy::unwrap_used)]

mod admin;
mod audit;
mod audit_trail;
mod certs;
mod cli;
mod common;
#[path = "../../src/rollout/fake_api.rs"]
mod fake_api;
mod faults;
mod gate;
mod grants;
mod limits;
mod namespaces;
mod notify;
mod operations_contract;
mod persistence;
mod pins_and_rates;
mod process;
mod redeploy;
mod redis_topologies;
mod replicas;
mod rollout;
mod security;
mod shutdown;
mod store_contract;
mod tickets;
mod webhook;
