//! The config file: any YAML is a `Config` or an error naming the key.
#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use rollgate::cli::ServeArgs;
use rollgate::config::Config;
use std::sync::LazyLock;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ServeArgs,
}

static ARGS: LazyLock<[ServeArgs; 2]> = LazyLock::new(|| {
    [
        Cli::parse_from(["fuzz"]).args,
        Cli::parse_from(["fuzz", "--dev", "--dev-dir", "/nonexistent/rollgate-fuzz"]).args,
    ]
});

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else { return };
    for args in ARGS.iter() {
        if let Err(e) = Config::from_yaml(yaml, args) {
            let _ = e.to_string();
        }
    }
});
