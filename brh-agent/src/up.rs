//! `brh-agent up`: a local federation in one command (filled in below).
use clap::Args;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 3)]
    pub agents: usize,
}

pub async fn up(_a: UpArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
