//! What the per-node credentials cost per request, natively: the forge's crypto for one
//! heartbeat before (verify the request, sign the view and its binding under the seal) and
//! now (derive the node's key first, then the same three HMACs under it), the agent's checks
//! of the answer, and the Ed25519 operations of a public view. Prints a table of medians.
//!
//!     cargo run --release -p brh-shared --example crypto_cost
//!
//! The same operations in Wasm: `scripts/bench-crypto.sh` (builds `crypto_wasm` for
//! wasm32-unknown-unknown and times it in Node's V8, as workerd runs the Worker).
use std::hint::black_box;
#[path = "common/median.rs"]
mod median;
use median::median_ns;

#[path = "common/crypto_ops.rs"]
mod ops;

fn main() {
    let fx = ops::Fixture::new();
    println!("| operation (native, median of 15 runs) | µs |");
    println!("|---|---|");
    for (name, op, iters) in ops::OPS {
        let ns = median_ns(
            || {
                black_box(op(&fx));
            },
            *iters,
        );
        println!("| {name} | {:.2} |", ns / 1000.0);
    }
}
