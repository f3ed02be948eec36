//! Delivery tracking rows on SQLite and PostgreSQL: created with the queueing transaction,
//! moved by notifications, duplicates ignored, one DSN per record, overdue records found, and
//! two nodes racing on one notification can't both act on it.

mod common;

use common::{Backend, TempDir, backends, fresh_database};
use hisp::notify::mdn::Disposition;
use hisp::notify::tracking::Event;
use hisp::store::Store;
use hisp::store::tracking::{record_event, track};

const MID: &str = "<t1@hisp-a.example>";

async fn lifecycle(backend: Backend) {
    let dir = TempDir::new("tracking");
    let url = fresh_database(backend, dir.path()).await;
    let store = Store::open(&url, 4).await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    let rcpts = vec![
        "Dr.Jones@hisp-b.example".to_string(),
        "nurse@hisp-b.example".to_string(),
    ];
    track(
        &mut tx,
        MID,
        "dr.smith@hisp-a.example",
        &rcpts,
        true,
        60_000,
    )
    .await
    .unwrap();
    // Tracking the same pair again (a retried submission) is harmless.
    track(
        &mut tx,
        MID,
        "dr.smith@hisp-a.example",
        &rcpts[..1],
        true,
        60_000,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let recs = store.tracking(MID).await.unwrap();
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r.state == "queued" && r.final_delivery));
    assert_eq!(recs[0].recipient, "dr.jones@hisp-b.example");

    let step = |rcpt: &'static str, e: Event| {
        let store = store.clone();
        async move {
            let mut tx = store.begin_write().await.unwrap();
            let t = record_event(&mut tx, MID, rcpt, &e, false).await.unwrap();
            tx.commit().await.unwrap();
            t
        }
    };
    let jones = "dr.jones@hisp-b.example";
    assert!(step(jones, Event::Sent).await.is_some());
    assert!(step(jones, Event::Sent).await.is_none(), "duplicate");
    assert!(
        step(jones, Event::Mdn(Disposition::Processed))
            .await
            .is_some()
    );
    assert!(
        step(jones, Event::Mdn(Disposition::Processed))
            .await
            .is_none(),
        "duplicate"
    );
    let t = step(jones, Event::Mdn(Disposition::Dispatched))
        .await
        .unwrap();
    assert!(t.deliver_notification && t.dsn.is_none());
    assert!(
        step(jones, Event::Mdn(Disposition::Failed("late".into())))
            .await
            .is_none()
    );
    assert!(step("stranger@hisp-b.example", Event::Sent).await.is_none());

    // The nurse's record times out: found overdue, one DSN, then complete.
    let overdue = store.tracking_overdue(i64::MAX, 10).await.unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].recipient, "nurse@hisp-b.example");
    let t = step("nurse@hisp-b.example", Event::Timeout).await.unwrap();
    assert!(t.dsn.is_some());
    assert!(step("nurse@hisp-b.example", Event::Timeout).await.is_none());
    assert!(
        store
            .tracking_overdue(i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let recs = store.tracking(MID).await.unwrap();
    let states: Vec<(&str, bool)> = recs
        .iter()
        .map(|r| (r.state.as_str(), r.dsn_sent))
        .collect();
    assert_eq!(states, [("dispatched", false), ("timed-out", true)]);
    assert!(recs[1].reason.as_deref().unwrap().contains("in time"));
}

async fn racing_nodes(backend: Backend) {
    let dir = TempDir::new("tracking-race");
    let url = fresh_database(backend, dir.path()).await;
    let a = Store::open(&url, 4).await.unwrap();
    let b = Store::open(&url, 4).await.unwrap();
    let mut tx = a.begin_write().await.unwrap();
    track(
        &mut tx,
        MID,
        "s@hisp-a.example",
        &["r@hisp-b.example".to_string()],
        false,
        1,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            loop {
                let mut tx = match store.begin_write().await {
                    Ok(tx) => tx,
                    Err(_) => continue,
                };
                let t = match record_event(&mut tx, MID, "r@hisp-b.example", &Event::Timeout, false)
                    .await
                {
                    Ok(t) => t,
                    Err(_) => continue,
                };
                match tx.commit().await {
                    Ok(()) => return t.and_then(|t| t.dsn).is_some(),
                    Err(_) => continue,
                }
            }
        }));
    }
    let mut dsns = 0;
    for t in tasks {
        dsns += usize::from(t.await.unwrap());
    }
    assert_eq!(dsns, 1, "exactly one node sends the DSN");
}

/// The processed and the dispatched MDN of one record handled at the same moment (two
/// deliveries from the partner, or two nodes): whichever commits second must still land, so
/// the record ends dispatched, never stuck at processed.
async fn racing_mdns(backend: Backend) {
    use hisp::notify::mdn::Disposition;
    let dir = TempDir::new("tracking-mdns");
    let url = fresh_database(backend, dir.path()).await;
    let store = Store::open(&url, 4).await.unwrap();
    let rcpt = "r@hisp-b.example";
    let mut tx = store.begin_write().await.unwrap();
    track(
        &mut tx,
        MID,
        "s@hisp-a.example",
        &[rcpt.to_string()],
        true,
        60_000,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    record_event(&mut tx, MID, rcpt, &Event::Sent, false)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // The processed MDN's transaction has moved the record on but not committed when the
    // dispatched MDN's transaction reads it (PostgreSQL: it reads `sent` and then waits on the
    // row lock; SQLite: it waits for the write lock before reading anything).
    let mut first = store.begin_write().await.unwrap();
    let t = record_event(
        &mut first,
        MID,
        rcpt,
        &Event::Mdn(Disposition::Processed),
        false,
    )
    .await
    .unwrap();
    assert!(t.is_some());
    let other = store.clone();
    let racer = tokio::spawn(async move {
        let mut tx = other.begin_write().await.unwrap();
        let t = record_event(
            &mut tx,
            MID,
            rcpt,
            &Event::Mdn(Disposition::Dispatched),
            false,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        t
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    first.commit().await.unwrap();
    assert!(
        racer.await.unwrap().is_some(),
        "the dispatched MDN was dropped ({backend:?})"
    );
    let recs = store.tracking(MID).await.unwrap();
    assert_eq!(recs[0].state, "dispatched", "{backend:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tracking_lifecycle_on_every_backend() {
    for b in backends() {
        lifecycle(b).await;
        racing_nodes(b).await;
        racing_mdns(b).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_command_shows_each_recipient() {
    for b in backends() {
        let env = common::Env::new(b).await;
        env.run(&["domain", "list"]).ok(); // creates and migrates the store
        let store = env.store().await;
        let mut tx = store.begin_write().await.unwrap();
        let rcpts = vec![
            "a@hisp-b.example".to_string(),
            "b@hisp-b.example".to_string(),
        ];
        track(&mut tx, MID, "s@hisp-a.example", &rcpts, true, 60_000)
            .await
            .unwrap();
        record_event(
            &mut tx,
            MID,
            "b@hisp-b.example",
            &Event::DeliveryFailed("550 5.1.1 unknown user".into()),
            false,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let human = env.run(&["status", "t1@hisp-a.example"]).ok();
        assert!(
            human
                .stdout
                .contains("<t1@hisp-a.example> from s@hisp-a.example"),
            "{}",
            human.stdout
        );
        assert!(human.stdout.contains("queued"), "{}", human.stdout);
        assert!(
            human.stdout.contains("550 5.1.1 unknown user"),
            "{}",
            human.stdout
        );
        let json = env.run(&["status", MID, "--json"]).ok().json();
        assert_eq!(json["recipients"][0]["state"], "queued");
        assert_eq!(json["recipients"][1]["state"], "failed");
        env.run(&["status", "<nope@x>"])
            .fails(3, "no outbound message <nope@x>");
    }
}
