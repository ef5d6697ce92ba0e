//! Sync tokens: the tuple of every stream's position a sync response was
//! computed at, written `s<timeline>_<account data>_<receipts>_<typing>_...`.
//!
//! The next sync reads "everything after these positions". Each stream is
//! independent, so the token is simply one number per stream, in a fixed
//! order. A token from an older server version with fewer fields parses
//! with 0 for the missing ones (that stream is then synced from scratch,
//! which is what a client new to it needs); a token with more fields than
//! this version knows is accepted and the extra ones are ignored, so a
//! rollback does not log clients out of sync.

use crate::api::error::ApiError;
use crate::e2ee::DeviceListPositions;

/// Declares the token's fields in wire order: adding a stream is adding
/// one name at the end of this list.
macro_rules! sync_token {
    ($($field:ident),* $(,)?) => {
        /// Positions in every stream a sync response covers.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct SyncToken {
            $(pub $field: i64,)*
        }

        impl SyncToken {
            fn fields(&self) -> Vec<i64> {
                vec![$(self.$field),*]
            }

            fn from_fields(values: &[i64]) -> Self {
                let mut it = values.iter().copied();
                Self { $($field: it.next().unwrap_or(0),)* }
            }
        }
    };
}

sync_token!(
    timeline,
    account_data,
    receipts,
    typing,
    to_device,
    device_lists,
    presence
);

impl SyncToken {
    /// Parses a token; `None` when it is not one of ours.
    pub fn parse(token: &str) -> Option<Self> {
        let body = token.strip_prefix('s')?;
        let mut values = Vec::new();
        for part in body.split('_') {
            // Digits only: no sign, no whitespace, no empty parts.
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            values.push(part.parse::<i64>().ok()?);
        }
        Some(Self::from_fields(&values))
    }

    /// Parses a client's `since`, or the spec's 400 `M_INVALID_PARAM`.
    pub fn parse_param(token: &str) -> Result<Self, ApiError> {
        Self::parse(token)
            .ok_or_else(|| ApiError::invalid_param(format!("invalid sync token {token:?}")))
    }

    /// The positions device-list changes between two tokens depend on
    /// (see `storage::device_lists`).
    pub fn device_list_positions(&self) -> DeviceListPositions {
        DeviceListPositions {
            timeline: self.timeline,
            device_lists: self.device_lists,
        }
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("s")?;
        for (i, v) in self.fields().iter().enumerate() {
            if i > 0 {
                f.write_str("_")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = SyncToken {
            timeline: 42,
            account_data: 7,
            receipts: 3,
            typing: 9,
            to_device: 1,
            device_lists: 2,
            presence: 5,
        };
        assert_eq!(t.to_string(), "s42_7_3_9_1_2_5");
        assert_eq!(SyncToken::parse(&t.to_string()), Some(t));
    }

    #[test]
    fn old_tokens_get_zero_for_new_streams() {
        let t = SyncToken::parse("s5_6").expect("short token");
        assert_eq!((t.timeline, t.account_data, t.receipts), (5, 6, 0));
        assert_eq!(t.device_lists, 0);
        let longer = SyncToken::parse("s1_2_3_4_5_6_7_8_9").expect("longer token");
        assert_eq!(longer.device_lists, 6);
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "s",
            "s_",
            "s1__2",
            "t5",
            "5",
            "s-1",
            "s1_x",
            "s 1",
            "s1_",
            "s99999999999999999999",
        ] {
            assert_eq!(SyncToken::parse(bad), None, "{bad:?}");
        }
        assert!(SyncToken::parse_param("nope").is_err());
    }

    #[test]
    fn device_list_positions_are_the_timeline_and_device_list_fields() {
        let t = SyncToken::parse("s42_7_3_9_1_2").expect("token");
        assert_eq!(
            t.device_list_positions(),
            DeviceListPositions {
                timeline: 42,
                device_lists: 2
            }
        );
        let old = SyncToken::parse("s5_6").expect("short token");
        assert_eq!(
            old.device_list_positions(),
            DeviceListPositions {
                timeline: 5,
                device_lists: 0
            }
        );
    }
}
