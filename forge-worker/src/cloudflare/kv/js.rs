//! The KV namespace's JavaScript API, called directly: `get(key, {type: "text"})`,
//! `put(key, bytes, options)`, `delete(key)`, `list(options)`. The same calls with the same
//! arguments as worker's `KvStore` builders make, without their serde_wasm_bindgen round trip
//! for the options and the list result (kilobytes of Wasm). Errors are worker's `KvError`s,
//! as before.
use worker::js_sys::{self, Array, Function, Object, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Env, KvError};

/// A KV namespace binding.
#[derive(Clone)]
pub struct KvNs(Object);

/// One key of a list page: its name, and its metadata when that is a string (the forge's
/// metadata always is).
pub struct ListKey {
    pub name: String,
    pub metadata: Option<String>,
}

/// One page of a list.
pub struct ListPage {
    pub keys: Vec<ListKey>,
    pub list_complete: bool,
    pub cursor: Option<String>,
}

fn get(v: &JsValue, key: &str) -> Result<JsValue, KvError> {
    Ok(Reflect::get(v, &JsValue::from_str(key))?)
}

fn set(o: &Object, key: &str, v: &JsValue) -> Result<(), KvError> {
    Reflect::set(o, &JsValue::from_str(key), v)?;
    Ok(())
}

impl KvNs {
    /// The namespace bound as `binding` (`env.kv(binding)`); an error if there is none.
    pub fn from_env(env: &Env, binding: &str) -> Result<KvNs, KvError> {
        let this = get(env, binding)?;
        if this.is_undefined() {
            return Err(KvError::InvalidKvStore(binding.into()));
        }
        Ok(KvNs(this.unchecked_into()))
    }

    async fn call(&self, method: &str, args: &Array) -> Result<JsValue, KvError> {
        let f: Function = get(&self.0, method)?.unchecked_into();
        let promise = f.apply(&self.0, args)?;
        Ok(JsFuture::from(js_sys::Promise::from(promise)).await?)
    }

    /// The value of `key` as text; `None` if there is none.
    pub async fn get_text(&self, key: &str) -> Result<Option<String>, KvError> {
        let opts = Object::new();
        set(&opts, "type", &JsValue::from_str("text"))?;
        let v = self
            .call("get", &Array::of2(&JsValue::from_str(key), &opts))
            .await?;
        Ok(v.as_string())
    }

    /// Writes `value` (as bytes) under `key`, with string `metadata` and an expiration.
    pub async fn put(
        &self,
        key: &str,
        value: &[u8],
        metadata: Option<&str>,
        ttl_s: Option<u64>,
    ) -> Result<(), KvError> {
        let bytes = Uint8Array::new_with_length(value.len() as u32);
        bytes.copy_from(value);
        let opts = Object::new();
        if let Some(t) = ttl_s {
            set(&opts, "expirationTtl", &JsValue::from_f64(t as f64))?;
        }
        if let Some(m) = metadata {
            set(&opts, "metadata", &JsValue::from_str(m))?;
        }
        let args = Array::of3(&JsValue::from_str(key), &bytes.buffer(), &opts);
        self.call("put", &args).await.map(|_| ())
    }

    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.call("delete", &Array::of1(&JsValue::from_str(key)))
            .await
            .map(|_| ())
    }

    /// One page of the keys under `prefix`, from `cursor`.
    pub async fn list(
        &self,
        prefix: &str,
        limit: u64,
        cursor: Option<&str>,
    ) -> Result<ListPage, KvError> {
        let opts = Object::new();
        set(&opts, "limit", &JsValue::from_f64(limit as f64))?;
        if let Some(c) = cursor {
            set(&opts, "cursor", &JsValue::from_str(c))?;
        }
        set(&opts, "prefix", &JsValue::from_str(prefix))?;
        let page = self.call("list", &Array::of1(&opts)).await?;
        let mut keys = Vec::new();
        for k in Array::from(&get(&page, "keys")?).iter() {
            let name = get(&k, "name")?
                .as_string()
                .ok_or_else(|| KvError::Serialization(bad_list("a key without a name")))?;
            keys.push(ListKey {
                name,
                metadata: get(&k, "metadata")?.as_string(),
            });
        }
        let list_complete = get(&page, "list_complete")?
            .as_bool()
            .ok_or_else(|| KvError::Serialization(bad_list("no list_complete")))?;
        Ok(ListPage {
            keys,
            list_complete,
            cursor: get(&page, "cursor")?.as_string(),
        })
    }
}

fn bad_list(what: &str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(format!("KV list result: {what}"))
}
