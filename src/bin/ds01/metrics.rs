//! `ds01 metrics [--write]`: the Prometheus metrics, printed or written
//! where node-exporter's textfile collector reads them.

use std::process::ExitCode;

use ds01_core::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// Write them to the config's metrics_textfile (atomically) instead
    #[arg(long)]
    write: bool,
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let text = ds01::metrics::collect(cfg, None).map_err(anyhow::Error::msg)?;
    if args.write {
        ds01::metrics::write_textfile(&cfg.metrics_textfile, &text).map_err(anyhow::Error::msg)?;
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}
