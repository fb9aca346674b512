//! Health checks of the manifest: HTTP (any status below 500 passes, as in the original) and
//! TCP connect. `{ip}` in a target is replaced with the container's address.
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::manifest::Health;

/// Why the last attempt failed, after all retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("health check failed after {attempts} attempts: {last}")]
pub struct Unhealthy {
    pub attempts: u32,
    pub last: String,
}

/// Runs the check up to `retries` times, `interval` apart. `None` health passes at once.
pub async fn wait_healthy(health: Option<&Health>, ip: Option<&str>) -> Result<u32, Unhealthy> {
    let Some(h) = health else { return Ok(0) };
    let subst = |t: &str| t.replace("{ip}", ip.unwrap_or("127.0.0.1"));
    let mut last = String::from("no attempt made");
    for attempt in 1..=h.retries {
        let mut result = Ok(());
        if let Some(url) = &h.http {
            result = check_http(&subst(url), h.timeout).await;
        }
        if result.is_ok() {
            if let Some(target) = &h.tcp {
                result = check_tcp(&subst(target), h.timeout).await;
            }
        }
        match result {
            Ok(()) => return Ok(attempt),
            Err(e) => last = e,
        }
        if attempt < h.retries {
            tokio::time::sleep(h.interval).await;
        }
    }
    Err(Unhealthy {
        attempts: h.retries,
        last,
    })
}

pub async fn check_tcp(target: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("tcp {target}: {e}")),
        Err(_) => Err(format!("tcp {target}: timed out after {timeout:?}")),
    }
}

/// A minimal HTTP/1.0 GET: enough to read a status line, with no client dependency and no
/// connection reuse to go stale between attempts.
pub async fn check_http(url: &str, timeout: Duration) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let attempt = async {
        let mut s = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let req =
            format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: brh-agent\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let mut buf = vec![0u8; 256];
        let mut n = 0;
        while n < 12 {
            let r = s
                .read(&mut buf[n..])
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if r == 0 {
                break;
            }
            n += r;
        }
        let line = String::from_utf8_lossy(&buf[..n]);
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("{url}: no HTTP status in answer"))?;
        if status < 500 {
            Ok(())
        } else {
            Err(format!("{url}: HTTP {status}"))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("{url}: timed out after {timeout:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn server(status: u16) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 512];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(format!("HTTP/1.0 {status} X\r\n\r\n").as_bytes())
                    .await;
            }
        });
        addr
    }

    fn health(http: Option<String>, tcp: Option<String>) -> Health {
        Health {
            http,
            tcp,
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(500),
            retries: 3,
        }
    }

    #[tokio::test]
    async fn http_and_tcp() {
        let ok = server(404).await;
        let bad = server(503).await;
        let h = health(Some(format!("http://{ok}/health")), Some(ok.clone()));
        assert_eq!(wait_healthy(Some(&h), None).await, Ok(1));
        let h = health(Some(format!("http://{bad}/health")), None);
        let e = wait_healthy(Some(&h), None).await.unwrap_err();
        assert_eq!(e.attempts, 3);
        assert!(e.last.contains("HTTP 503"), "{e}");
        // A closed port.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let h = health(None, Some(format!("{{ip}}:{closed}")));
        assert!(wait_healthy(Some(&h), Some("127.0.0.1")).await.is_err());
        assert_eq!(wait_healthy(None, None).await, Ok(0));
    }
}
