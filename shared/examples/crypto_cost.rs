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
use std::time::Instant;

#[path = "common/crypto_ops.rs"]
mod ops;

fn median_ns(mut f: impl FnMut(), iters: u32) -> f64 {
    let mut samples = Vec::with_capacity(15);
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        samples.push(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

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
