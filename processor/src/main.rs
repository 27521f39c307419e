//! Biometric Bridge processor.
//!
//! Delivery guarantee: at least once into PostgreSQL and the readings topic, exactly
//! once in the `readings` table (its primary key makes replays idempotent). A raw
//! record's offset is stored only after its rows are committed and its publishes are
//! acknowledged; records that can never be processed go to the dead-letter topic with
//! their original bytes, and the partition moves on.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use processor::config::{Cli, Command, Config, LinkAccount, UnlinkAccount};
use processor::fetch::accounts::{AccountStore, NewAccount};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.config;
    config.validate()?;
    let _telemetry = bridge_core::telemetry::init("processor")?;

    match cli.command.unwrap_or(Command::Run) {
        Command::Migrate => {
            let sink = processor::sink::postgres::PgSink::connect(&config.database_url, 1)
                .await
                .context("DATABASE_URL")?;
            sink.migrate().await.context("migrations failed")?;
            tracing::info!(message = "Migrations applied.");
            Ok(())
        }
        Command::LinkAccount(args) => link_account(&config, args).await,
        Command::UnlinkAccount(args) => unlink_account(&config, args).await,
        Command::Replay(args) => {
            let s = processor::replay::replay(&config, &args)
                .await
                .context("replay failed")?;
            println!(
                "replayed {} record(s) of {} (dedup bypassed)",
                s.records, config.raw_topic
            );
            Ok(())
        }
        Command::Redrive(args) => {
            let s = processor::replay::redrive(&config, &args)
                .await
                .context("redrive failed")?;
            let verb = if args.dry_run {
                "would redrive"
            } else {
                "redrove"
            };
            println!(
                "{verb} {} dead letter(s) from {} to {}; {} skipped",
                s.records, config.dlq_topic, config.raw_topic, s.skipped
            );
            for (p, o) in &s.reduced {
                println!(
                    "reduced dead letter (no bytes): replay it with `processor replay --partition {p} --from-offset {o} --to-offset {}`",
                    o + 1
                );
            }
            Ok(())
        }
        Command::Run => {
            let shutdown = CancellationToken::new();
            let metrics = Arc::new(processor::metrics::Metrics::new());
            let service = processor::service::start(&config, metrics, shutdown.clone())
                .await
                .context("start-up failed")?;
            tokio::spawn({
                let shutdown = shutdown.clone();
                async move {
                    shutdown_signal().await;
                    tracing::info!(message = "Shutdown signal received; draining.");
                    shutdown.cancel();
                }
            });
            service.await
        }
    }
}

/// Connects with one connection and applies migrations, so the account commands work
/// on a database no processor has started on yet.
async fn accounts(config: &Config) -> anyhow::Result<AccountStore> {
    let sink = processor::sink::postgres::PgSink::connect(&config.database_url, 1)
        .await
        .context("DATABASE_URL")?;
    sink.migrate().await.context("migrations failed")?;
    let cipher = config
        .fetch
        .token_cipher()
        .context("TOKEN_ENCRYPTION_KEY")?;
    Ok(AccountStore::new(sink.pool().clone(), cipher))
}

async fn link_account(config: &Config, args: LinkAccount) -> anyhow::Result<()> {
    if config.fetch.token_encryption_key.is_none() {
        anyhow::bail!(
            "TOKEN_ENCRYPTION_KEY must be set to link an account (tokens are stored encrypted)"
        );
    }
    let vendor = args.vendor;
    if !config
        .fetch
        .vendors
        .fetched()
        .iter()
        .any(|(fetched, _)| *fetched == vendor)
    {
        anyhow::bail!("{vendor} webhooks carry their data; there is no account to link");
    }
    let store = accounts(config).await?;
    let woken = store
        .link(&NewAccount {
            vendor,
            vendor_user_id: args.vendor_user_id.clone(),
            user_id: args.user_id.clone(),
            access_token: args.access_token.expose().to_owned(),
            refresh_token: args.refresh_token.expose().to_owned(),
            expires_at: args.expires_at,
            scopes: args.scopes,
        })
        .await
        .context("linking the account")?;
    tracing::info!(message = "Account linked.", %vendor, vendor_user_id = %args.vendor_user_id, user_id = %args.user_id, parked_due = woken);
    println!(
        "linked {vendor} user {} to user {}; {woken} parked notification(s) due now",
        args.vendor_user_id, args.user_id
    );
    Ok(())
}

async fn unlink_account(config: &Config, args: UnlinkAccount) -> anyhow::Result<()> {
    let store = accounts(config).await?;
    let vendor = args.vendor;
    let existed = store
        .unlink(vendor, &args.vendor_user_id)
        .await
        .context("unlinking the account")?;
    if existed {
        println!("unlinked {vendor} user {}", args.vendor_user_id);
    } else {
        println!("no linked {vendor} user {}", args.vendor_user_id);
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
