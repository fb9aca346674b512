//! The `brh-agent` binary: the node agent's command line (`cli`) and `up`, the one place the
//! agent and the embedded forge meet in one process. Everything else lives in the `brh-agent`
//! library, which knows nothing about the forge's code.
mod cli;
mod up;

fn main() {
    std::process::exit(cli::main());
}
