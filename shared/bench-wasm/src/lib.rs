//! `brh-shared`'s `crypto_cost` operations as a Wasm module with no imports: `scripts/bench-crypto.sh`
//! builds it for wasm32-unknown-unknown and times each export from Node (V8, the engine
//! workerd runs the Worker in). `count()` is the number of operations, `run(i, n)` runs
//! operation `i` `n` times, `name_ptr(i)` / `name_len(i)` its name.
#[path = "../../examples/common/crypto_ops.rs"]
mod ops;

use std::sync::OnceLock;

fn fixture() -> &'static ops::Fixture {
    static F: OnceLock<ops::Fixture> = OnceLock::new();
    F.get_or_init(ops::Fixture::new)
}

#[no_mangle]
pub extern "C" fn count() -> u32 {
    ops::OPS.len() as u32
}

#[no_mangle]
pub extern "C" fn iterations(i: u32) -> u32 {
    ops::OPS[i as usize].2
}

#[no_mangle]
pub extern "C" fn name_ptr(i: u32) -> *const u8 {
    ops::OPS[i as usize].0.as_ptr()
}

#[no_mangle]
pub extern "C" fn name_len(i: u32) -> u32 {
    ops::OPS[i as usize].0.len() as u32
}

#[no_mangle]
pub extern "C" fn run(i: u32, n: u32) -> u32 {
    let f = fixture();
    let op = ops::OPS[i as usize].1;
    (0..n).filter(|_| std::hint::black_box(op(f))).count() as u32
}
