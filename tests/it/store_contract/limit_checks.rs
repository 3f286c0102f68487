//! `check_admission_limits`, the dry run's read-only twin of
//! `append_admission`, on every backend: it answers what the append would
//! answer now, and changes nothing. That it changes nothing is shown through
//! the trail (same head, same records) and through the counters: the same
//! grant with one use more, or the same application with a larger rate
//! limit, still has room after any number of checks.

use jiff::Timestamp;
use rollgate::audit::{AdmissionLimits, GrantUses, LimitHit, RateCheck};
use rollgate::store::Stores;

use super::{Backend, mk_admission, now};

contract!(
    checking_spent_uses_says_used_up_and_changes_nothing,
    checking_a_full_rate_window_says_when_and_changes_nothing,
    checking_within_the_limits_says_none,
    checking_never_consumes_a_use,
);

fn uses(jti: &str, max: u32) -> AdmissionLimits {
    AdmissionLimits {
        grant_uses: Some(GrantUses {
            jti: jti.into(),
            max,
            expires_at: now() + 600,
        }),
        rate: None,
    }
}

fn rate(limit: u32, now: i64) -> AdmissionLimits {
    AdmissionLimits {
        grant_uses: None,
        rate: Some(RateCheck {
            limit,
            window_secs: 3600,
            now,
        }),
    }
}

/// The trail as a check must leave it: its head's id and hash, and its length.
async fn trail(s: &Stores) -> (Option<(String, String)>, usize) {
    let head = s.audit.head().await.unwrap().map(|r| (r.id, r.hash));
    (head, s.audit.read_from(0, 1000).await.unwrap().len())
}

async fn check(s: &Stores, application: &str, limits: &AdmissionLimits) -> Option<LimitHit> {
    s.audit
        .check_admission_limits("production", application, limits)
        .await
        .unwrap()
}

async fn checking_spent_uses_says_used_up_and_changes_nothing(b: &Backend) {
    let s = b.open().await;
    let replica = b.open().await;
    let once = uses("g-spent", 1);
    s.audit
        .append_admission(mk_admission("web", Timestamp::now()), &once)
        .await
        .unwrap()
        .unwrap();
    let before = trail(&s).await;

    for _ in 0..3 {
        assert_eq!(
            check(&s, "web", &once).await,
            Some(LimitHit::UsedUp { max: 1 })
        );
        assert_eq!(
            check(&replica, "web", &once).await,
            Some(LimitHit::UsedUp { max: 1 }),
            "another instance reads the same counter"
        );
    }

    assert_eq!(trail(&s).await, before, "a check appends nothing");
    assert_eq!(
        check(&s, "web", &uses("g-spent", 2)).await,
        None,
        "the checks counted no use: one of two is left"
    );
    let refused = s
        .audit
        .append_admission(mk_admission("web", Timestamp::now()), &once)
        .await
        .unwrap();
    assert_eq!(
        refused,
        Err(LimitHit::UsedUp { max: 1 }),
        "the check said what the append says"
    );
}

async fn checking_a_full_rate_window_says_when_and_changes_nothing(b: &Backend) {
    let s = b.open().await;
    let t = now();
    let first = s
        .audit
        .append_admission(mk_admission("api", Timestamp::now()), &rate(2, t))
        .await
        .unwrap()
        .unwrap();
    s.audit
        .append_admission(mk_admission("api", Timestamp::now()), &rate(2, t))
        .await
        .unwrap()
        .unwrap();
    let before = trail(&s).await;
    let first_at = first.timestamp.parse::<Timestamp>().unwrap().as_second();

    for _ in 0..3 {
        match check(&s, "api", &rate(2, t)).await {
            Some(LimitHit::RateLimited {
                limit: 2,
                window_secs: 3600,
                next_at,
            }) => assert!(
                (next_at - (first_at + 3600)).abs() <= 1,
                "next allowed when the first leaves the window: {next_at}"
            ),
            other => panic!("a full window must say when: {other:?}"),
        }
    }
    assert_eq!(
        check(&s, "api", &rate(2, t + 3601)).await,
        None,
        "the window has moved on by then"
    );
    assert!(
        matches!(
            check(&s, "api", &rate(2, t)).await,
            Some(LimitHit::RateLimited { .. })
        ),
        "a check with a later time prunes nothing from the window"
    );

    assert_eq!(trail(&s).await, before, "a check appends nothing");
    assert_eq!(
        check(&s, "api", &rate(3, t)).await,
        None,
        "the checks put nothing in the window: room for a third of three"
    );
    let refused = s
        .audit
        .append_admission(mk_admission("api", Timestamp::now()), &rate(2, t))
        .await
        .unwrap();
    assert!(
        matches!(refused, Err(LimitHit::RateLimited { limit: 2, .. })),
        "the check said what the append says: {refused:?}"
    );
}

async fn checking_within_the_limits_says_none(b: &Backend) {
    let s = b.open().await;
    let t = now();
    let both = AdmissionLimits {
        grant_uses: uses("g-fresh", 2).grant_uses,
        rate: rate(2, t).rate,
    };
    assert_eq!(check(&s, "web", &both).await, None, "an empty store");
    s.audit
        .append_admission(mk_admission("web", Timestamp::now()), &both)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(check(&s, "web", &both).await, None, "one use of two");
    assert_eq!(
        check(&s, "web", &AdmissionLimits::default()).await,
        None,
        "no limits, no hit"
    );
    s.audit
        .append_admission(mk_admission("other", Timestamp::now()), &rate(1, t))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        check(&s, "web", &rate(2, t)).await,
        None,
        "another application's admissions do not count"
    );
}

async fn checking_never_consumes_a_use(b: &Backend) {
    let s = b.open().await;
    let twice = uses("g-twice", 2);
    for _ in 0..5 {
        assert_eq!(check(&s, "web", &twice).await, None);
    }
    for n in 1..=2 {
        let admitted = s
            .audit
            .append_admission(mk_admission("web", Timestamp::now()), &twice)
            .await
            .unwrap();
        assert!(
            admitted.is_ok(),
            "use {n} of 2 after five checks: {admitted:?}"
        );
    }
    assert_eq!(
        check(&s, "web", &twice).await,
        Some(LimitHit::UsedUp { max: 2 })
    );
    assert_eq!(trail(&s).await.1, 2, "only the two admissions are recorded");
}
