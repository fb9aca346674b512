//! The native forge's on-disk store: one JSON file per env under `DIR/envs/`, replaced
//! atomically (write to a temporary file, then rename) on every change.
//!
//! A rename survives the process being killed at any point. A change of term is also
//! `fsync`ed (file and directory) before the answer goes out, so terms never go back even
//! across a power loss; renewals are not, since losing one only shortens a lease.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use brh_shared::wire::HistoryEntry;
use brh_shared::EnvState;
use serde::{Deserialize, Serialize};

use crate::store::{HistoryPage, MemoryStore, Store, StoreError};

#[derive(Serialize, Deserialize)]
struct EnvFile {
    state: EnvState,
    history: Vec<HistoryEntry>,
}

pub struct FileStore {
    dir: PathBuf,
    mem: MemoryStore,
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{what} {}: {e}", path.display()))
}

impl FileStore {
    /// Opens (creating if needed) `dir` and loads every env in it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let envs_dir = dir.join("envs");
        fs::create_dir_all(&envs_dir).map_err(|e| io_err("cannot create", &envs_dir, e))?;
        let mem = MemoryStore::default();
        let entries = fs::read_dir(&envs_dir).map_err(|e| io_err("cannot read", &envs_dir, e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| io_err("cannot read", &envs_dir, e))?
                .path();
            let Some(env) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let bytes = fs::read(&path).map_err(|e| io_err("cannot read", &path, e))?;
            let file: EnvFile =
                serde_json::from_slice(&bytes).map_err(|e| io_err("corrupt state in", &path, e))?;
            mem.envs
                .borrow_mut()
                .insert(env.to_string(), (file.state, file.history));
        }
        Ok(FileStore { dir: envs_dir, mem })
    }

    fn write(&self, env: &str, durable: bool) -> Result<(), StoreError> {
        let envs = self.mem.envs.borrow();
        let Some((state, history)) = envs.get(env) else {
            return Ok(());
        };
        let path = self.dir.join(format!("{env}.json"));
        let tmp = self.dir.join(format!(".{env}.json.tmp"));
        let bytes = serde_json::to_vec(&EnvFile {
            state: state.clone(),
            history: history.clone(),
        })
        .map_err(|e| io_err("cannot encode", &path, e))?;
        let mut f = fs::File::create(&tmp).map_err(|e| io_err("cannot write", &tmp, e))?;
        f.write_all(&bytes)
            .map_err(|e| io_err("cannot write", &tmp, e))?;
        if durable {
            f.sync_all().map_err(|e| io_err("cannot sync", &tmp, e))?;
        }
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| io_err("cannot replace", &path, e))?;
        if durable {
            if let Ok(d) = fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Store for FileStore {
    async fn load(&self, env: &str) -> Result<Option<EnvState>, StoreError> {
        self.mem.load(env).await
    }

    async fn save(
        &self,
        env: &str,
        before: Option<&EnvState>,
        after: &EnvState,
        history: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        self.mem.save(env, before, after, history).await?;
        let term_changed = before.is_none_or(|b| b.term != after.term);
        self.write(env, term_changed)
    }

    async fn history(
        &self,
        env: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        self.mem.history(env, cursor, limit).await
    }

    async fn envs(&self) -> Result<Vec<String>, StoreError> {
        self.mem.envs().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brh_shared::election::ElectionConfig;
    use brh_shared::replay::Nonce;
    use brh_shared::sign::Authenticated;
    use brh_shared::wire::Heartbeat;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn state_and_history_survive_reopen_and_corruption_is_an_error() {
        let dir = std::env::temp_dir().join(format!("brh-fs-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = FileStore::open(&dir).unwrap();
        let mut st = EnvState::default();
        let auth = Authenticated {
            node: "n1".into(),
            ts_ms: 1,
            nonce: Nonce::new("b", 1),
        };
        let hb: Heartbeat = serde_json::from_str(r#"{"env":"dev"}"#).unwrap();
        let changes = st
            .heartbeat(&ElectionConfig::default(), &auth, &hb, 1000)
            .unwrap();
        let rows: Vec<_> = changes
            .iter()
            .filter_map(|c| c.history_entry(1000))
            .collect();
        block_on(store.save("dev", None, &st, &rows)).unwrap();
        drop(store);

        let store = FileStore::open(&dir).unwrap();
        assert_eq!(block_on(store.load("dev")).unwrap(), Some(st.clone()));
        assert_eq!(
            block_on(store.history("dev", None, 10)).unwrap().entries,
            rows
        );
        assert_eq!(block_on(store.envs()).unwrap(), vec!["dev".to_string()]);
        drop(store);

        fs::write(dir.join("envs/dev.json"), b"{garbage").unwrap();
        let err = FileStore::open(&dir).err().unwrap();
        assert!(err.0.contains("corrupt state"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }
}
