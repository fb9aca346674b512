//! Thin entry point: parse, run, print one line on error.
fn main() {
    std::process::exit(brh_agent::cli::main());
}
