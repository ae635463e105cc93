//! Who is in the cluster: each worker holds a lease row in PostgreSQL that it renews every
//! [`HEARTBEAT`] and that lapses [`LEASE`] after the last renewal; gateways read the rows (at
//! once on a join or leave notification, and every [`REFRESH`] regardless) and route to the
//! workers with live leases. No protocol of wafer's own: the database is the membership list.
//!
//! A worker that leaves deletes its row and is gone from routing at once. One whose lease merely
//! lapsed is tried last rather than dropped: it may be alive and the database the one that was
//! down (a restart longer than the lease), and a gateway learns it is dead from the first refused
//! connection anyway. Rows lapsed for a minute are deleted by any live worker.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rendezvous_hash::{DefaultNodeHasher, IdNode, RendezvousNodes};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::db::{DbError, WORKERS_CHANNEL};

/// How often a worker renews its lease.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a lease lasts after its last renewal.
pub const LEASE: Duration = Duration::from_secs(5);
/// How often a gateway rereads the live workers even without a notification.
pub const REFRESH: Duration = Duration::from_millis(500);

/// A live worker as the cluster sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Unique per worker process (a restart joins as a new member).
    pub id: String,
    /// Where gateways reach it (`--advertise`).
    pub url: String,
}

/// A worker's lease: joined on creation, renewed in the background, given up by [`Lease::leave`].
pub struct Lease {
    pool: PgPool,
    member: Member,
    /// Stops the heartbeat when dropped or sent to.
    stop: watch::Sender<bool>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Joins the cluster as `member`.
    pub async fn join(pool: PgPool, member: Member) -> Result<Lease, DbError> {
        renew(&pool, &member).await?;
        notify(&pool).await?;
        let (stop, stopped) = watch::channel(false);
        let heartbeat = tokio::spawn(heartbeat(pool.clone(), member.clone(), stopped));
        Ok(Lease {
            pool,
            member,
            stop,
            heartbeat,
        })
    }

    pub fn member(&self) -> &Member {
        &self.member
    }

    /// Leaves the cluster: gateways stop routing here as soon as they hear of it.
    pub async fn leave(self) -> Result<(), DbError> {
        let _ = self.stop.send(true);
        let _ = self.heartbeat.await;
        sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(&self.member.id)
            .execute(&self.pool)
            .await?;
        notify(&self.pool).await
    }
}

/// A fresh member id: unique per worker process.
pub fn new_id() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    format!("w-{}", hex::encode(bytes))
}

async fn renew(pool: &PgPool, member: &Member) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO workers (id, url, lease_until) VALUES ($1, $2, now() + make_interval(secs => $3))
         ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, lease_until = EXCLUDED.lease_until",
    )
    .bind(&member.id)
    .bind(&member.url)
    .bind(LEASE.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

async fn notify(pool: &PgPool) -> Result<(), DbError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(WORKERS_CHANNEL)
        .execute(pool)
        .await?;
    Ok(())
}

/// Renews the lease every [`HEARTBEAT`] until stopped; a failed renewal is retried at the next
/// beat (a database restart shorter than the lease goes unnoticed by the gateways).
async fn heartbeat(pool: PgPool, member: Member, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = renew(&pool, &member).await {
            tracing::warn!(error = %e, "could not renew this worker's lease");
        }
        // Rows of workers long gone (killed, never left) are cleared by whoever is alive.
        let _ = sqlx::query("DELETE FROM workers WHERE lease_until < now() - interval '1 minute'")
            .execute(&pool)
            .await;
    }
}

/// The workers a gateway routes to, with their rendezvous order ready.
pub struct Live {
    /// Workers with a live lease.
    pub members: Vec<Member>,
    /// Workers whose lease lapsed but that have not left: tried after the others.
    pub lapsed: Vec<Member>,
    nodes: RendezvousNodes<IdNode<String>, DefaultNodeHasher>,
}

impl Live {
    fn new(members: Vec<Member>, lapsed: Vec<Member>) -> Live {
        let mut nodes = RendezvousNodes::default();
        for member in members.iter().chain(&lapsed) {
            nodes.insert(IdNode::new(member.id.clone()));
        }
        Live {
            members,
            lapsed,
            nodes,
        }
    }

    /// The workers in the order a function's calls should try them: highest random weight of
    /// (function, worker) first, so each function has a home worker and a worker joining or
    /// leaving moves only its share of functions; workers with lapsed leases last.
    pub fn order(&self, function: &str) -> Vec<&Member> {
        let ranked: Vec<&String> = self
            .nodes
            .calc_candidates(&function)
            .map(|id| &**id)
            .collect();
        let mut order = pick(&ranked, &self.members);
        order.extend(pick(&ranked, &self.lapsed));
        order
    }
}

/// The members of `set`, in `ranked` order.
fn pick<'a>(ranked: &[&String], set: &'a [Member]) -> Vec<&'a Member> {
    ranked
        .iter()
        .filter_map(|id| set.iter().find(|m| &m.id == *id))
        .collect()
}

/// A gateway's view of the live workers, kept current in the background.
pub struct Members {
    live: ArcSwap<Live>,
    changed: watch::Sender<u64>,
}

impl Members {
    /// Reads the live workers and keeps reading them until the returned handle is dropped.
    pub async fn watch(pool: PgPool) -> Result<Arc<Members>, DbError> {
        let (live, lapsed) = read_members(&pool).await?;
        let members = Arc::new(Members {
            live: ArcSwap::from_pointee(Live::new(live, lapsed)),
            changed: watch::channel(0).0,
        });
        tokio::spawn(follow(pool, Arc::downgrade(&members)));
        Ok(members)
    }

    pub fn live(&self) -> arc_swap::Guard<Arc<Live>> {
        self.live.load()
    }

    /// Ticks whenever the live set changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn set(&self, members: Vec<Member>, lapsed: Vec<Member>) {
        let now = self.live.load();
        if now.members != members || now.lapsed != lapsed {
            self.live.store(Arc::new(Live::new(members, lapsed)));
            self.changed.send_modify(|n| *n += 1);
        }
    }
}

/// The workers with live leases, and those whose lease lapsed (but that have not left).
async fn read_members(pool: &PgPool) -> Result<(Vec<Member>, Vec<Member>), DbError> {
    let rows: Vec<(String, String, bool)> =
        sqlx::query_as("SELECT id, url, lease_until > now() FROM workers ORDER BY id")
            .fetch_all(pool)
            .await?;
    let (mut live, mut lapsed) = (Vec::new(), Vec::new());
    for (id, url, alive) in rows {
        let member = Member { id, url };
        if alive {
            live.push(member);
        } else {
            lapsed.push(member);
        }
    }
    Ok((live, lapsed))
}

/// Rereads the live workers on every join/leave notification and every [`REFRESH`].
async fn follow(pool: PgPool, members: std::sync::Weak<Members>) {
    let mut listener = match PgListener::connect_with(&pool).await {
        Ok(mut listener) => match listener.listen(WORKERS_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for workers joining; polling only");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for workers joining; polling only");
            None
        }
    };
    loop {
        let notified = async {
            match listener.as_mut() {
                // A lost connection comes back as an error: wait out the poll instead of
                // spinning on it.
                Some(listener) => {
                    if listener.try_recv().await.is_err() {
                        tokio::time::sleep(REFRESH).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(REFRESH) => {}
        }
        let Some(members) = members.upgrade() else {
            return;
        };
        match read_members(&pool).await {
            Ok((live, lapsed)) => members.set(live, lapsed),
            // The last view stands until the database answers again.
            Err(e) => tracing::debug!(error = %e, "could not read the cluster's workers"),
        }
    }
}
