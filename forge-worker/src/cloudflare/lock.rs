//! A lock over the requests of one Worker isolate (`kv` mode's one-step-at-a-time rule).
/// A lock over the requests of one isolate. workerd cancels a request that waits on a promise
/// only another request can resolve ("hung"), so a waker-based async mutex cannot be used
/// across requests; a waiter polls on its own timer instead (2 ms; KV calls take longer).
#[derive(Default)]
pub struct IsolateLock {
    busy: std::cell::Cell<bool>,
}

pub struct IsolateGuard<'a>(&'a IsolateLock);

impl Drop for IsolateGuard<'_> {
    fn drop(&mut self) {
        self.0.busy.set(false);
    }
}

impl IsolateLock {
    /// Waits up to 10 s; `None` if the lock stayed busy that long.
    pub async fn lock(&self) -> Option<IsolateGuard<'_>> {
        for _ in 0..5000 {
            if !self.busy.replace(true) {
                return Some(IsolateGuard(self));
            }
            worker::Delay::from(std::time::Duration::from_millis(2)).await;
        }
        None
    }
}
