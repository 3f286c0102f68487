#![allow(clippy::unwrap_used)]

mod admin;
mod audit;
mod cli;
mod common;
mod grants;
mod limits;
mod persistence;
mod redeploy;
mod shutdown;
mod store_contract;
mod tickets;
mod webhook;
