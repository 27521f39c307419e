//! Linked vendor accounts in PostgreSQL (`linked_accounts`), tokens encrypted at rest.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::crypto::{TokenCipher, aad};
use vendors::Vendor;

const GET_ACCOUNT: &str = include_str!("sql/get_account.sql");
const CLAIM_REFRESH: &str = include_str!("sql/claim_refresh.sql");
const RELEASE_REFRESH: &str = include_str!("sql/release_refresh.sql");
const LINK_ACCOUNT: &str = include_str!("sql/link_account.sql");
const UNLINK_ACCOUNT: &str = include_str!("sql/unlink_account.sql");
const STORE_TOKENS: &str = include_str!("sql/store_tokens.sql");
const MARK_REAUTH: &str = include_str!("sql/mark_reauth.sql");
const ANY_ACCOUNT: &str = include_str!("sql/any_account.sql");
const WAKE_PARKED: &str = include_str!("sql/wake_parked.sql");

/// `linked_accounts.status` of an account that works.
pub const STATUS_ACTIVE: &str = "active";
/// `linked_accounts.status` after the vendor refused a refresh.
pub const STATUS_REAUTH: &str = "reauth_required";

/// A linked account with its tokens decrypted (in memory only).
#[derive(Clone)]
pub struct Account {
    /// Vendor.
    pub vendor: Vendor,
    /// The vendor's user id.
    pub vendor_user_id: String,
    /// Our user id for its readings.
    pub user_id: String,
    /// Current access token.
    pub access_token: String,
    /// Current refresh token.
    pub refresh_token: String,
    /// Access-token expiry, when known.
    pub expires_at: Option<DateTime<Utc>>,
    /// `active` or `reauth_required`.
    pub status: String,
    /// Row version (bumped by every token change).
    pub version: i64,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens stay out of logs.
        f.debug_struct("Account")
            .field("vendor", &self.vendor)
            .field("vendor_user_id", &self.vendor_user_id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("status", &self.status)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Why an account could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// PostgreSQL failed; retry later.
    #[error("linked_accounts query failed: {0}")]
    Db(#[from] sqlx::Error),
    /// Accounts exist but the processor has no `TOKEN_ENCRYPTION_KEY`.
    #[error("TOKEN_ENCRYPTION_KEY is not set, so linked-account tokens cannot be read")]
    NoKey,
    /// A stored token does not decrypt with the configured key.
    #[error(transparent)]
    Decrypt(#[from] super::crypto::DecryptError),
    /// A row names a vendor this build does not know (written by a newer build, or by
    /// hand): refused rather than read as some other vendor's account.
    #[error("linked_accounts row of unknown vendor {0:?}")]
    UnknownVendor(String),
}

/// What `link-account` stores.
#[derive(Clone)]
pub struct NewAccount {
    /// Vendor.
    pub vendor: Vendor,
    /// The vendor's user id.
    pub vendor_user_id: String,
    /// Our user id.
    pub user_id: String,
    /// Access token.
    pub access_token: String,
    /// Refresh token.
    pub refresh_token: String,
    /// Access-token expiry, when known.
    pub expires_at: Option<DateTime<Utc>>,
    /// Granted scopes, space-separated, when known.
    pub scopes: Option<String>,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens stay out of logs.
        f.debug_struct("NewAccount")
            .field("vendor", &self.vendor)
            .field("vendor_user_id", &self.vendor_user_id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Refreshed tokens to store.
#[derive(Clone)]
pub struct NewTokens {
    /// New access token.
    pub access_token: String,
    /// New refresh token (the old one when the vendor did not rotate it).
    pub refresh_token: String,
    /// New expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Scopes, when the vendor said.
    pub scopes: Option<String>,
}

impl std::fmt::Debug for NewTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens stay out of logs.
        f.debug_struct("NewTokens")
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

type Row = (
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    Option<DateTime<Utc>>,
    String,
    i64,
);

/// Reads and writes `linked_accounts`.
#[derive(Clone, Debug)]
pub struct AccountStore {
    pool: PgPool,
    cipher: Option<TokenCipher>,
}

impl AccountStore {
    /// A store on `pool`; without a cipher, reading any account fails with
    /// [`AccountError::NoKey`] and linking is refused.
    pub fn new(pool: PgPool, cipher: Option<TokenCipher>) -> Self {
        Self { pool, cipher }
    }

    fn cipher(&self) -> Result<&TokenCipher, AccountError> {
        self.cipher.as_ref().ok_or(AccountError::NoKey)
    }

    fn decode(&self, row: Row) -> Result<Account, AccountError> {
        let (vendor, vuid, user_id, access, refresh, expires_at, status, version) = row;
        let known = vendor
            .parse::<Vendor>()
            .map_err(|e| AccountError::UnknownVendor(e.0))?;
        let cipher = self.cipher()?;
        let access = cipher.decrypt(&access, &aad(&vendor, &vuid, "access_token"))?;
        let refresh = cipher.decrypt(&refresh, &aad(&vendor, &vuid, "refresh_token"))?;
        Ok(Account {
            vendor: known,
            vendor_user_id: vuid,
            user_id,
            access_token: access,
            refresh_token: refresh,
            expires_at,
            status,
            version,
        })
    }

    /// Start-up check: `Ok(false)` when no account exists; `Ok(true)` when one exists
    /// and the key decrypts it; an error when one exists and there is no key or the key
    /// is wrong (the service must not start then).
    pub async fn check_key(&self) -> Result<bool, AccountError> {
        let row: Option<(String, String, Vec<u8>)> = sqlx::query_as(ANY_ACCOUNT)
            .fetch_optional(&self.pool)
            .await?;
        let Some((vendor, vuid, access)) = row else {
            return Ok(false);
        };
        self.cipher()?
            .decrypt(&access, &aad(&vendor, &vuid, "access_token"))?;
        Ok(true)
    }

    /// The account of `vendor_user_id`, if linked.
    pub async fn get(
        &self,
        vendor: Vendor,
        vendor_user_id: &str,
    ) -> Result<Option<Account>, AccountError> {
        let row: Option<Row> = sqlx::query_as(GET_ACCOUNT)
            .bind(vendor.as_str())
            .bind(vendor_user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| self.decode(r)).transpose()
    }

    /// Links (or re-links) an account and makes its parked notifications due now, in one
    /// transaction. Returns how many parked notifications were woken.
    pub async fn link(&self, a: &NewAccount) -> Result<u64, AccountError> {
        let cipher = self.cipher()?;
        let vendor = a.vendor.as_str();
        let access = cipher.encrypt(
            &a.access_token,
            &aad(vendor, &a.vendor_user_id, "access_token"),
        );
        let refresh = cipher.encrypt(
            &a.refresh_token,
            &aad(vendor, &a.vendor_user_id, "refresh_token"),
        );
        let mut tx = self.pool.begin().await?;
        sqlx::query(LINK_ACCOUNT)
            .bind(vendor)
            .bind(&a.vendor_user_id)
            .bind(&a.user_id)
            .bind(access)
            .bind(refresh)
            .bind(a.expires_at)
            .bind(&a.scopes)
            .execute(&mut *tx)
            .await?;
        let woken = sqlx::query(WAKE_PARKED)
            .bind(vendor)
            .bind(&a.vendor_user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(woken)
    }

    /// Removes an account; returns whether it existed. Its later notifications park as
    /// `unlinked`.
    pub async fn unlink(&self, vendor: Vendor, vendor_user_id: &str) -> Result<bool, AccountError> {
        let n = sqlx::query(UNLINK_ACCOUNT)
            .bind(vendor.as_str())
            .bind(vendor_user_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Takes the account's refresh lease for `lease` under `owner`. No lock or
    /// connection is held afterwards: the lease is a timestamp on the row.
    pub async fn claim_refresh(
        &self,
        vendor: Vendor,
        vendor_user_id: &str,
        owner: uuid::Uuid,
        lease: std::time::Duration,
    ) -> Result<Claim, AccountError> {
        let row: Option<Row> = sqlx::query_as(CLAIM_REFRESH)
            .bind(vendor.as_str())
            .bind(vendor_user_id)
            .bind(lease.as_secs_f64())
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = row {
            return Ok(Claim::Claimed(self.decode(row)?));
        }
        Ok(match self.get(vendor, vendor_user_id).await? {
            Some(a) => Claim::Busy(a),
            None => Claim::Gone,
        })
    }

    /// Gives back a refresh lease taken by `owner` (a no-op when it is not ours).
    pub async fn release_refresh(
        &self,
        vendor: Vendor,
        vendor_user_id: &str,
        owner: uuid::Uuid,
    ) -> Result<(), AccountError> {
        sqlx::query(RELEASE_REFRESH)
            .bind(vendor.as_str())
            .bind(vendor_user_id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a refreshed pair over `account`'s version (and releases the lease);
    /// returns the new version, or `None` when the row changed meanwhile (nothing written).
    pub async fn store_tokens(
        &self,
        account: &Account,
        tokens: &NewTokens,
    ) -> Result<Option<i64>, AccountError> {
        let cipher = self.cipher()?;
        let vendor = account.vendor.as_str();
        let vuid = &account.vendor_user_id;
        let version: Option<i64> = sqlx::query_scalar(STORE_TOKENS)
            .bind(vendor)
            .bind(vuid)
            .bind(cipher.encrypt(&tokens.access_token, &aad(vendor, vuid, "access_token")))
            .bind(cipher.encrypt(&tokens.refresh_token, &aad(vendor, vuid, "refresh_token")))
            .bind(tokens.expires_at)
            .bind(&tokens.scopes)
            .bind(account.version)
            .fetch_optional(&self.pool)
            .await?;
        Ok(version)
    }

    /// Marks `account` (at its version) as needing re-authorisation; releases the lease.
    pub async fn mark_reauth(&self, account: &Account) -> Result<(), AccountError> {
        sqlx::query(MARK_REAUTH)
            .bind(account.vendor.as_str())
            .bind(&account.vendor_user_id)
            .bind(account.version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The outcome of [`AccountStore::claim_refresh`].
#[derive(Debug)]
pub enum Claim {
    /// The lease is ours; the row as it is now.
    Claimed(Account),
    /// Another refresher holds the lease; the row as it is now.
    Busy(Account),
    /// The account is no longer linked.
    Gone,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::fetch::parking::{Origin, Park, ParkReason, ParkStore};
    use crate::sink::MIGRATOR;

    fn store(pool: PgPool) -> AccountStore {
        let key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        AccountStore::new(pool, Some(TokenCipher::from_env_value(key).unwrap()))
    }

    fn account(vuid: &str) -> NewAccount {
        NewAccount {
            vendor: Vendor::Whoop,
            vendor_user_id: vuid.into(),
            user_id: "user-1".into(),
            access_token: "access-1".into(),
            refresh_token: "refresh-1".into(),
            expires_at: None,
            scopes: Some("offline read:sleep".into()),
        }
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn link_wakes_parked_and_relink_bumps_version(pool: PgPool) {
        let s = store(pool.clone());
        assert!(!s.check_key().await.unwrap());
        let parked = ParkStore::new(pool.clone());
        let headers = HashMap::new();
        let origin = Origin {
            event_id: "e1",
            vendor: "whoop",
            body: b"{}",
            headers: &headers,
            received_at: Utc::now(),
            partition: 0,
            offset: 7,
        };
        let park = Park {
            vendor_user_id: "42".into(),
            reason: ParkReason::Unlinked,
            retry_after: None,
            detail: String::new(),
        };
        parked
            .park(&origin, &park, Duration::from_secs(3600))
            .await
            .unwrap();
        // Parking the same envelope again is a no-op.
        parked.park(&origin, &park, Duration::ZERO).await.unwrap();
        assert!(
            parked
                .claim_due(10, Duration::from_secs(60))
                .await
                .unwrap()
                .is_empty()
        );

        assert_eq!(s.link(&account("42")).await.unwrap(), 1);
        assert!(s.check_key().await.unwrap());
        let claimed = parked.claim_due(10, Duration::from_secs(60)).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!((claimed[0].offset, claimed[0].attempts), (7, 1));
        // Leased: not claimable again meanwhile.
        assert!(
            parked
                .claim_due(10, Duration::from_secs(60))
                .await
                .unwrap()
                .is_empty()
        );

        let a = s.get(Vendor::Whoop, "42").await.unwrap().unwrap();
        assert_eq!((a.access_token.as_str(), a.version), ("access-1", 1));
        s.link(&account("42")).await.unwrap();
        assert_eq!(
            s.get(Vendor::Whoop, "42").await.unwrap().unwrap().version,
            2
        );
        assert!(s.unlink(Vendor::Whoop, "42").await.unwrap());
        assert!(s.get(Vendor::Whoop, "42").await.unwrap().is_none());
    }

    #[sqlx::test(migrator = "MIGRATOR")]
    async fn refreshed_pair_is_stored_only_over_the_version_read(pool: PgPool) {
        let s = store(pool.clone());
        s.link(&account("7")).await.unwrap();
        let tokens = NewTokens {
            access_token: "access-2".into(),
            refresh_token: "refresh-2".into(),
            expires_at: Some(Utc::now()),
            scopes: None,
        };
        let owner = uuid::Uuid::new_v4();
        let lease = Duration::from_secs(60);
        let Claim::Claimed(current) = s
            .claim_refresh(Vendor::Whoop, "7", owner, lease)
            .await
            .unwrap()
        else {
            panic!("lease free")
        };
        // Leased: a second refresher sees the row but not the lease.
        assert!(matches!(
            s.claim_refresh(Vendor::Whoop, "7", uuid::Uuid::new_v4(), lease)
                .await
                .unwrap(),
            Claim::Busy(_)
        ));
        assert_eq!(s.store_tokens(&current, &tokens).await.unwrap(), Some(2));
        // Storing released the lease; a writer that read version 1 writes nothing.
        assert!(matches!(
            s.claim_refresh(Vendor::Whoop, "7", owner, lease)
                .await
                .unwrap(),
            Claim::Claimed(_)
        ));
        assert_eq!(s.store_tokens(&current, &tokens).await.unwrap(), None);
        s.release_refresh(Vendor::Whoop, "7", owner).await.unwrap();
        let a = s.get(Vendor::Whoop, "7").await.unwrap().unwrap();
        assert_eq!(
            (a.access_token.as_str(), a.refresh_token.as_str(), a.version),
            ("access-2", "refresh-2", 2)
        );
        s.mark_reauth(&a).await.unwrap();
        assert_eq!(
            s.get(Vendor::Whoop, "7").await.unwrap().unwrap().status,
            STATUS_REAUTH
        );
        assert!(matches!(
            s.claim_refresh(Vendor::Whoop, "9", owner, lease)
                .await
                .unwrap(),
            Claim::Gone
        ));
        // Secrets never in Debug.
        let shown = format!("{tokens:?} {:?} {a:?}", account("8"));
        for secret in ["access-1", "refresh-1", "access-2", "refresh-2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        // Without the key, or with another key, tokens are unreadable.
        let other = AccountStore::new(
            pool.clone(),
            Some(TokenCipher::from_env_value(&"ab".repeat(32)).unwrap()),
        );
        assert!(matches!(
            other.check_key().await,
            Err(AccountError::Decrypt(_))
        ));
        let none = AccountStore::new(pool, None);
        assert!(matches!(none.check_key().await, Err(AccountError::NoKey)));
    }
}
