//! Durations as operators write them: `5` (seconds), `0.5`, `500ms`, `5s`, `2m`; in YAML also
//! a bare number of seconds. A leaf module: the settings and the manifest both read it.

/// Parses `5`, `0.5` (seconds), `500ms`, `5s`, `2m`.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (s, 1000.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use 5, 0.5, 500ms, 5s or 2m)"))?;
    if !v.is_finite() || v < 0.0 || v * mult > 1e15 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok((v * mult).round() as u64)
}

/// A YAML duration: a number of seconds or a string in [`parse_duration_ms`]'s syntax.
pub fn yaml_duration(v: &serde_norway::Value) -> Result<u64, String> {
    match v {
        serde_norway::Value::Number(n) => parse_duration_ms(&n.to_string()),
        serde_norway::Value::String(s) => parse_duration_ms(s),
        _ => Err("must be a number of seconds or a string like 5s".into()),
    }
}
