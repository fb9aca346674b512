#!/usr/bin/env bash
# Crypto per request, native and in Wasm (V8, as workerd runs the Worker): the forge's work
# for one heartbeat before and after per-node keys, an agent's check of an answer, and the
# Ed25519 operations of public views. Prints two tables of medians (µs).
#
#   scripts/bench-crypto.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q --release -p brh-shared --example crypto_cost
cargo build -q --release --manifest-path shared/bench-wasm/Cargo.toml --target wasm32-unknown-unknown
NODE=node_modules/.bin/node
[ -x "$NODE" ] || NODE=node
"$NODE" --input-type=module - shared/bench-wasm/target/wasm32-unknown-unknown/release/brh_crypto_wasm.wasm <<'JS'
import { readFileSync } from "node:fs";
const { instance } = await WebAssembly.instantiate(readFileSync(process.argv[2]), {});
const x = instance.exports;
const name = (i) =>
  new TextDecoder().decode(new Uint8Array(x.memory.buffer, x.name_ptr(i), x.name_len(i)));
console.log("\n| operation (Wasm in V8, median of 15 runs) | µs |\n|---|---|");
for (let i = 0; i < x.count(); i++) {
  const n = x.iterations(i);
  x.run(i, n); // warm up (and build the fixture)
  const samples = [];
  for (let k = 0; k < 15; k++) {
    const t = process.hrtime.bigint();
    x.run(i, n);
    samples.push(Number(process.hrtime.bigint() - t) / n / 1000);
  }
  samples.sort((a, b) => a - b);
  console.log(`| ${name(i)} | ${samples[7].toFixed(2)} |`);
}
JS
