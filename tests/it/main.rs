#![allow(clippy::unwrap_used)]

mod admin;
mod audit;
mod audit_trail;
mod certs;
mod cli;
mod common;
mod faults;
mod grants;
mod limits;
mod notify;
mod persistence;
mod pins_and_rates;
mod redeploy;
mod redis_topologies;
mod replicas;
mod shutdown;
mod store_contract;
mod tickets;
mod webhook;
