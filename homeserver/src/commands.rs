//! Operator commands that work directly on the database, with no running
//! server: `myelin register-user`.

use std::path::PathBuf;

use crate::config::Config;
use crate::storage::Db;
use crate::storage::accounts::{self, UserInUse};

/// Where `register-user` takes the password from.
pub enum PasswordSource {
    Literal(String),
    /// The first line of a file (so `echo pw > file` works).
    File(PathBuf),
    /// The first line of standard input.
    Stdin,
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

impl PasswordSource {
    fn read(self) -> Result<String, String> {
        let password = match self {
            PasswordSource::Literal(p) => p,
            PasswordSource::File(path) => first_line(
                &std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            ),
            PasswordSource::Stdin => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
                first_line(&line)
            }
        };
        if password.is_empty() {
            return Err("the password is empty".to_owned());
        }
        if password.len() > crate::password::MAX_PASSWORD_LEN {
            return Err(format!(
                "the password is longer than {} bytes",
                crate::password::MAX_PASSWORD_LEN
            ));
        }
        Ok(password)
    }
}

/// Creates an account (an admin with `admin`), as shared-secret
/// registration would, but without a session: the user logs in normally.
/// Returns the new user ID.
pub async fn register_user(
    config: &Config,
    localpart: &str,
    password: PasswordSource,
    admin: bool,
) -> Result<String, String> {
    let server = ruma::ServerName::parse(&config.server.name)
        .map_err(|_| "server.name is not a valid server name".to_owned())?;
    let user_id =
        crate::api::client::account::username::new_user_id(&localpart.to_lowercase(), &server)
            .map_err(|e| format!("cannot register {localpart:?}: {e}"))?;
    let password = password.read()?;
    if config.database_url().starts_with("sqlite") {
        std::fs::create_dir_all(&config.server.data_dir).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e}",
                config.server.data_dir.display()
            )
        })?;
    }
    let db = Db::connect(&config.database_url(), 2)
        .await
        .map_err(|e| format!("database: {e}"))?;
    db.migrate().await.map_err(|e| format!("database: {e}"))?;
    let hash = crate::password::hash(password)
        .await
        .map_err(|e| format!("cannot hash the password: {e:?}"))?;
    match accounts::create_user(&db, user_id.as_str(), Some(&hash), admin, None, None).await {
        Ok(Ok(_)) => Ok(user_id.to_string()),
        Ok(Err(UserInUse)) => Err(format!("{user_id} already exists")),
        Err(e) => Err(format!("database: {e}")),
    }
}
