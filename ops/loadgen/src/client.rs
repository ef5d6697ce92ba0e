//! A minimal Matrix client over the client-server API: what the load
//! scenarios need, nothing more. Works against any homeserver.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("{0}: {1}")]
    Http(&'static str, reqwest::Error),
    #[error("{0}: the response has no {1}")]
    Missing(&'static str, &'static str),
}

/// A homeserver's client API.
#[derive(Clone)]
pub struct Homeserver {
    http: reqwest::Client,
    base: String,
}

/// A logged-in user.
#[derive(Clone)]
pub struct User {
    hs: Homeserver,
    pub user_id: String,
    token: String,
}

async fn json_of(
    what: &'static str,
    resp: Result<reqwest::Response, reqwest::Error>,
) -> Result<Value, ClientError> {
    let resp = resp.map_err(|e| ClientError::Http(what, e))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.map_err(|e| ClientError::Http(what, e))?;
    if status != 200 {
        return Err(ClientError::Status {
            what,
            status,
            body: body.to_string(),
        });
    }
    Ok(body)
}

fn str_field(what: &'static str, v: &Value, field: &'static str) -> Result<String, ClientError> {
    v[field]
        .as_str()
        .map(str::to_owned)
        .ok_or(ClientError::Missing(what, field))
}

/// Percent-encodes a path segment (room IDs carry `!` and `:`).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Homeserver {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers `localpart`: through the shared-secret admin API (Synapse's
    /// `/_synapse/admin/v1/register`, which Myelin implements too) when a
    /// secret is given, otherwise through open registration.
    pub async fn register(
        &self,
        localpart: &str,
        password: &str,
        shared_secret: Option<&str>,
    ) -> Result<User, ClientError> {
        let body = match shared_secret {
            Some(secret) => self.register_admin(localpart, password, secret).await?,
            None => self.register_open(localpart, password).await?,
        };
        Ok(User {
            hs: self.clone(),
            user_id: str_field("register", &body, "user_id")?,
            token: str_field("register", &body, "access_token")?,
        })
    }

    async fn register_admin(
        &self,
        localpart: &str,
        password: &str,
        secret: &str,
    ) -> Result<Value, ClientError> {
        let url = self.url("/_synapse/admin/v1/register");
        let nonce = json_of("nonce", self.http.get(&url).send().await).await?;
        let nonce = str_field("nonce", &nonce, "nonce")?;
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for (i, part) in [nonce.as_str(), localpart, password, "notadmin"]
            .iter()
            .enumerate()
        {
            if i > 0 {
                mac.update(b"\0");
            }
            mac.update(part.as_bytes());
        }
        let digest: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let body = json!({
            "nonce": nonce, "username": localpart, "password": password,
            "admin": false, "mac": digest,
        });
        json_of("register", self.http.post(&url).json(&body).send().await).await
    }

    async fn register_open(&self, localpart: &str, password: &str) -> Result<Value, ClientError> {
        let url = self.url("/_matrix/client/v3/register");
        // The first request opens a user-interactive auth session.
        let first = self
            .http
            .post(&url)
            .json(&json!({ "username": localpart, "password": password }))
            .send()
            .await
            .map_err(|e| ClientError::Http("register", e))?;
        let first: Value = first
            .json()
            .await
            .map_err(|e| ClientError::Http("register", e))?;
        let mut auth = json!({ "type": "m.login.dummy" });
        if let Some(session) = first["session"].as_str() {
            auth["session"] = json!(session);
        }
        let body = json!({ "username": localpart, "password": password, "auth": auth });
        json_of("register", self.http.post(&url).json(&body).send().await).await
    }

    pub async fn login(&self, user_id: &str, password: &str) -> Result<User, ClientError> {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": user_id },
            "password": password,
        });
        let resp = json_of(
            "login",
            self.http
                .post(self.url("/_matrix/client/v3/login"))
                .json(&body)
                .send()
                .await,
        )
        .await?;
        Ok(User {
            hs: self.clone(),
            user_id: str_field("login", &resp, "user_id")?,
            token: str_field("login", &resp, "access_token")?,
        })
    }
}

impl User {
    async fn post(
        &self,
        what: &'static str,
        path: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let req = self
            .hs
            .http
            .post(self.hs.url(path))
            .bearer_auth(&self.token)
            .json(body);
        json_of(what, req.send().await).await
    }

    pub async fn create_room(&self, name: &str) -> Result<String, ClientError> {
        let body = json!({ "preset": "public_chat", "name": name });
        let resp = self
            .post("createRoom", "/_matrix/client/v3/createRoom", &body)
            .await?;
        str_field("createRoom", &resp, "room_id")
    }

    pub async fn join(&self, room_id: &str) -> Result<(), ClientError> {
        let path = format!("/_matrix/client/v3/join/{}", enc(room_id));
        self.post("join", &path, &json!({})).await.map(drop)
    }

    /// Joins a room through `server` (a room of another server: ours may
    /// know nothing of it yet). Both the spec's `via` and the older
    /// `server_name` are given, for servers that know only one.
    pub async fn join_via(&self, room_id: &str, server: &str) -> Result<(), ClientError> {
        let path = format!(
            "/_matrix/client/v3/join/{}?via={server}&server_name={server}",
            enc(room_id),
            server = enc(server)
        );
        self.post("join", &path, &json!({})).await.map(drop)
    }

    pub async fn send_text(
        &self,
        room_id: &str,
        txn_id: &str,
        body: &str,
    ) -> Result<String, ClientError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            enc(room_id),
            enc(txn_id)
        );
        let req = self
            .hs
            .http
            .put(self.hs.url(&path))
            .bearer_auth(&self.token)
            .json(&json!({ "msgtype": "m.text", "body": body }));
        let resp = json_of("send", req.send().await).await?;
        str_field("send", &resp, "event_id")
    }

    /// One page of `room`'s messages before `from` (newest first), messages
    /// only.
    pub async fn messages_before(
        &self,
        room_id: &str,
        from: &str,
        limit: usize,
    ) -> Result<Value, ClientError> {
        let path = format!("/_matrix/client/v3/rooms/{}/messages", enc(room_id));
        let query = [
            ("dir", "b".to_owned()),
            ("from", from.to_owned()),
            ("limit", limit.to_string()),
            ("filter", json!({ "types": ["m.room.message"] }).to_string()),
        ];
        let req = self
            .hs
            .http
            .get(self.hs.url(&path))
            .bearer_auth(&self.token)
            .query(&query);
        json_of("messages", req.send().await).await
    }

    /// One `/sync`; `filter` is inline JSON (`None`: the server's default).
    pub async fn sync(
        &self,
        since: Option<&str>,
        timeout_ms: u64,
        filter: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut query = vec![("timeout", timeout_ms.to_string())];
        if let Some(filter) = filter {
            query.push(("filter", filter.to_owned()));
        }
        if let Some(since) = since {
            query.push(("since", since.to_owned()));
        }
        let req = self
            .hs
            .http
            .get(self.hs.url("/_matrix/client/v3/sync"))
            .bearer_auth(&self.token)
            .query(&query);
        json_of("sync", req.send().await).await
    }
}
