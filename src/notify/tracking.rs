//! Timely and reliable delivery tracking (SPEC E30): each outbound Message-ID per recipient
//! moves queued → sent → processed → dispatched, or ends failed or timed-out. This is the
//! pure state machine; the store keeps the rows and the pipelines feed it events.

use super::mdn::Disposition;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Queued,
    Sent,
    Processed,
    Dispatched,
    Failed,
    TimedOut,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Queued,
        State::Sent,
        State::Processed,
        State::Dispatched,
        State::Failed,
        State::TimedOut,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sent => "sent",
            State::Processed => "processed",
            State::Dispatched => "dispatched",
            State::Failed => "failed",
            State::TimedOut => "timed-out",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "queued" => State::Queued,
            "sent" => State::Sent,
            "processed" => State::Processed,
            "dispatched" => State::Dispatched,
            "failed" => State::Failed,
            "timed-out" => State::TimedOut,
            _ => return None,
        })
    }

    /// Done: nothing more is expected, later notifications are duplicates.
    pub fn is_complete(&self, final_delivery: bool) -> bool {
        match self {
            State::Queued | State::Sent => false,
            State::Processed => !final_delivery,
            State::Dispatched | State::Failed | State::TimedOut => true,
        }
    }
}

/// Something that happened to one (message, recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The next hop accepted it.
    Sent,
    /// An MDN from the recipient's HISP.
    Mdn(Disposition),
    /// A DSN saying delivery failed, or our own queue gave up or got a permanent refusal.
    DeliveryFailed(String),
    /// The notification deadline passed.
    Timeout,
}

/// What to do about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub next: State,
    pub reason: Option<String>,
    /// Send the original sender one DSN with this reason (failure or timeout).
    pub dsn: Option<String>,
    /// Put the incoming notification in the sender's mailbox.
    pub deliver_notification: bool,
}

/// The effect of `event` on a record in `state`; `None` means ignore it (a duplicate or a late
/// notification after completion, E30).
pub fn apply(
    state: State,
    final_delivery: bool,
    event: &Event,
    deliver_processed: bool,
) -> Option<Transition> {
    if state.is_complete(final_delivery) {
        return None;
    }
    let t = |next, reason: Option<String>, dsn: Option<String>, deliver| Transition {
        next,
        reason,
        dsn,
        deliver_notification: deliver,
    };
    match event {
        Event::Sent => (state == State::Queued).then(|| t(State::Sent, None, None, false)),
        Event::Mdn(Disposition::Processed) => {
            (state != State::Processed).then(|| t(State::Processed, None, None, deliver_processed))
        }
        // A dispatched MDN may overtake its processed one; either way the message is there.
        Event::Mdn(Disposition::Dispatched) => Some(t(State::Dispatched, None, None, true)),
        Event::Mdn(Disposition::Failed(why)) => {
            let why = if why.is_empty() {
                "the recipient's HISP could not deliver the message".to_string()
            } else {
                why.clone()
            };
            Some(t(State::Failed, Some(why.clone()), Some(why), true))
        }
        Event::Mdn(Disposition::Denied) => {
            let why = "the recipient denied the message".to_string();
            Some(t(State::Failed, Some(why.clone()), Some(why), true))
        }
        // Displayed and unknown dispositions say nothing about delivery.
        Event::Mdn(_) => None,
        Event::DeliveryFailed(why) => Some(t(
            State::Failed,
            Some(why.clone()),
            Some(why.clone()),
            false,
        )),
        Event::Timeout => {
            let why = match state {
                State::Processed => "no dispatched notification arrived in time: the message was received but its delivery to the recipient's mailbox was not confirmed".to_string(),
                _ => "no processed notification arrived in time: delivery to the recipient is not confirmed".to_string(),
            };
            Some(t(State::TimedOut, Some(why.clone()), Some(why), false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(state: State, fd: bool, e: Event) -> Option<State> {
        apply(state, fd, &e, false).map(|t| t.next)
    }

    #[test]
    fn happy_paths() {
        assert_eq!(next(State::Queued, true, Event::Sent), Some(State::Sent));
        assert_eq!(
            next(State::Sent, true, Event::Mdn(Disposition::Processed)),
            Some(State::Processed)
        );
        assert_eq!(
            next(State::Processed, true, Event::Mdn(Disposition::Dispatched)),
            Some(State::Dispatched)
        );
        assert!(State::Dispatched.is_complete(true));
        // Without a final-delivery request, processed is the end.
        assert!(State::Processed.is_complete(false));
        assert_eq!(
            next(State::Processed, false, Event::Mdn(Disposition::Dispatched)),
            None
        );
    }

    #[test]
    fn duplicates_and_late_notifications_are_ignored() {
        assert_eq!(
            next(State::Processed, true, Event::Mdn(Disposition::Processed)),
            None
        );
        for done in [State::Dispatched, State::Failed, State::TimedOut] {
            for e in [
                Event::Mdn(Disposition::Processed),
                Event::Mdn(Disposition::Dispatched),
                Event::Mdn(Disposition::Failed("x".into())),
                Event::Timeout,
                Event::Sent,
            ] {
                assert_eq!(next(done, true, e), None);
            }
        }
        assert_eq!(next(State::Sent, true, Event::Sent), None);
        assert_eq!(
            next(State::Sent, true, Event::Mdn(Disposition::Displayed)),
            None
        );
    }

    #[test]
    fn failures_and_timeouts_send_one_dsn() {
        let t = apply(
            State::Sent,
            true,
            &Event::Mdn(Disposition::Failed("mailbox full".into())),
            false,
        )
        .unwrap();
        assert_eq!(
            (t.next, t.dsn.as_deref(), t.deliver_notification),
            (State::Failed, Some("mailbox full"), true)
        );
        let t = apply(State::Processed, true, &Event::Timeout, false).unwrap();
        assert_eq!(t.next, State::TimedOut);
        assert!(t.dsn.unwrap().contains("dispatched"));
        let t = apply(
            State::Queued,
            true,
            &Event::DeliveryFailed("550 5.1.1 no such user".into()),
            false,
        )
        .unwrap();
        assert_eq!((t.next, t.deliver_notification), (State::Failed, false));
        // Processed MDNs reach the sender's mailbox only when configured.
        assert!(
            !apply(
                State::Sent,
                true,
                &Event::Mdn(Disposition::Processed),
                false
            )
            .unwrap()
            .deliver_notification
        );
        assert!(
            apply(State::Sent, true, &Event::Mdn(Disposition::Processed), true)
                .unwrap()
                .deliver_notification
        );
        assert!(
            apply(
                State::Processed,
                true,
                &Event::Mdn(Disposition::Dispatched),
                false
            )
            .unwrap()
            .deliver_notification
        );
    }

    #[test]
    fn names_round_trip() {
        for s in [
            State::Queued,
            State::Sent,
            State::Processed,
            State::Dispatched,
            State::Failed,
            State::TimedOut,
        ] {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("lost"), None);
    }
}
