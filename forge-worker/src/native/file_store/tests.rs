use super::*;
use brh_shared::replay::Nonce;
use brh_shared::sign::{Authenticated, KeyId};
use brh_shared::wire::Heartbeat;
use brh_shared::Timing;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brh-fs-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn cfg() -> ElectionConfig {
    ElectionConfig::new(Timing::DEFAULT)
}

fn open(dir: &Path, now: u64) -> (FileStore, StoreOps) {
    let ops = StoreOps::default();
    (FileStore::open(dir, cfg(), now, ops.clone()).unwrap(), ops)
}

fn beat(store: &FileStore, node: &str, seq: u64, now: u64) -> Stepped<()> {
    let auth = Authenticated {
        node: node.into(),
        ts_ms: now,
        nonce: Nonce::new("b", seq),
        key: KeyId::default(),
    };
    let hb: Heartbeat = serde_json::from_str(r#"{"env":"dev"}"#).unwrap();
    let c = cfg();
    block_on(store.step(
        "dev",
        now,
        Box::new(move |s| s.heartbeat(&c, &auth, &hb, now)),
        Box::new(|_| ()),
    ))
    .unwrap()
}

fn count(ops: &StoreOps, op: &str) -> u64 {
    ops.get_or_create(&crate::metrics::OpLabel { op: op.into() })
        .get()
}

fn state(store: &FileStore) -> EnvState {
    block_on(store.read("dev", 0, Box::new(|s| s.clone())))
        .unwrap()
        .unwrap()
}

#[test]
fn renewals_write_nothing_changes_append_and_state_survives_reopen() {
    let dir = tmp("reopen");
    let (store, ops) = open(&dir, 0);
    beat(&store, "n1", 1, 1_000); // join + grant: one append, fsynced
    assert_eq!((count(&ops, "log_append"), count(&ops, "fsync")), (1, 1));
    beat(&store, "n2", 1, 1_100); // join: append, no fsync
    assert_eq!((count(&ops, "log_append"), count(&ops, "fsync")), (2, 1));
    for i in 2..50 {
        beat(&store, "n1", i, 1_000 + i * 100); // renewals
        beat(&store, "n2", i, 1_100 + i * 100); // liveness
    }
    assert_eq!(count(&ops, "log_append"), 2, "renewals are volatile");
    let live = state(&store);
    drop(store);

    // Restart 2 s after the last renewal: same term and holder, lease extended, not shortened.
    let restart = 1_000 + 49 * 100 + 2_000;
    let (store, _) = open(&dir, restart);
    let back = state(&store);
    assert_eq!(back.term, 1);
    let lease = back.lease.clone().unwrap();
    assert_eq!(lease.holder, "n1");
    assert_eq!(lease.expires_at_ms, restart + Timing::DEFAULT.lease_ttl_ms);
    assert!(lease.expires_at_ms >= live.lease.unwrap().expires_at_ms);
    assert_eq!(back.peers.len(), 2);
    let page = block_on(store.history("dev", None, 10)).unwrap();
    assert_eq!(page.entries.len(), 1);
    // The holder renews in the same term after the restart.
    let stepped = beat(&store, "n1", 50, restart + 100);
    assert!(stepped.outcome.is_volatile());
    assert_eq!(state(&store).term, 1);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn compaction_keeps_everything_and_a_torn_tail_is_ignored() {
    let dir = tmp("compact");
    let (store, ops) = open(&dir, 0);
    // Each new node is a durable join: enough to pass the compaction threshold.
    let n = MIN_COMPACT_LINES + 10;
    for i in 0..n {
        beat(&store, &format!("n{i}"), 1, 1_000 + i as u64);
    }
    assert_eq!(count(&ops, "snapshot"), 1);
    drop(store);
    assert!(dir.join("envs/dev.snap").exists());
    assert!(!dir.join("envs/dev.0.log").exists());
    // A torn last line (the process died mid-append) is ignored.
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.join("envs/dev.1.log"))
        .unwrap();
    f.write_all(br#"{"r":{"t":"peer","node":"half"#).unwrap();
    drop(f);
    let (store, _) = open(&dir, 10_000);
    let st = state(&store);
    assert_eq!(st.peers.len(), n);
    assert_eq!(st.term, 1);
    // And appending after the torn tail works.
    beat(&store, "late", 1, 10_001);
    drop(store);
    let (store, _) = open(&dir, 10_002);
    assert!(state(&store).peers.contains_key("late"));
    drop(store);

    // Corruption in the middle is an error naming the file.
    let log = dir.join("envs/dev.1.log");
    let text = fs::read_to_string(&log).unwrap();
    fs::write(&log, format!("{{garbage\n{text}")).unwrap();
    let err = FileStore::open(&dir, cfg(), 0, StoreOps::default())
        .err()
        .unwrap();
    assert!(err.0.contains("corrupt line 1"), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_append_is_not_kept_in_memory() {
    let dir = tmp("fail");
    let (store, _) = open(&dir, 0);
    beat(&store, "n1", 1, 1_000);
    // Make the log unwritable by swapping its handle for a read-only one.
    {
        store.envs.with_mut("dev", |held| {
            held.extra.log = Some(File::open(dir.join("envs/dev.0.log")).unwrap());
        });
    }
    let auth = Authenticated {
        node: "n2".into(),
        ts_ms: 2_000,
        nonce: Nonce::new("b", 1),
        key: KeyId::default(),
    };
    let hb: Heartbeat = serde_json::from_str(r#"{"env":"dev"}"#).unwrap();
    let c = cfg();
    let r = block_on(store.step(
        "dev",
        2_000,
        Box::new(move |s| s.heartbeat(&c, &auth, &hb, 2_000)),
        Box::new(|_| ()),
    ));
    assert!(matches!(r, Err(StepError::Store(_))));
    // Reloaded from disk: the unwritten join is gone, the term is kept.
    let st = state(&store);
    assert!(!st.peers.contains_key("n2"));
    assert_eq!(st.term, 1);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn legacy_json_files_are_read() {
    let dir = tmp("legacy");
    fs::create_dir_all(dir.join("envs")).unwrap();
    let mut st = EnvState::default();
    let auth = Authenticated {
        node: "n1".into(),
        ts_ms: 1,
        nonce: Nonce::new("b", 1),
        key: KeyId::default(),
    };
    let hb: Heartbeat = serde_json::from_str(r#"{"env":"dev"}"#).unwrap();
    st.heartbeat(&cfg(), &auth, &hb, 1_000).unwrap();
    let body = serde_json::json!({"state": st, "history": []});
    fs::write(dir.join("envs/dev.json"), body.to_string()).unwrap();
    let (store, _) = open(&dir, 2_000);
    assert_eq!(state(&store).term, 1);
    let _ = fs::remove_dir_all(&dir);
}
