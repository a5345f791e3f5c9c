//! The async waiters of one session: an `event_listener::Event` (one pointer, its list
//! allocated on the first listen), notified only when the state word's async-waiters
//! bit says someone may listen.

use crate::state::StateWord;
use crate::sync::planted_bug;
use event_listener::{Event, EventListener, Listener};
use std::fmt;

/// The session's list of async waiters.
pub(crate) struct AsyncWaiters {
    event: Event,
}

impl AsyncWaiters {
    pub(crate) fn new() -> Self {
        AsyncWaiters {
            event: Event::new(),
        }
    }

    /// Registers a listener. The caller then marks the word (`mark_async_waiters`) and
    /// re-checks its outcome, so that a transition after that check notifies it.
    pub(crate) fn listen(&self) -> EventListener {
        self.event.listen()
    }

    /// Wakes every listener. Called by a transition whose previous word had the
    /// async-waiters bit; `notify` begins with a `SeqCst` fence, after the transition.
    #[cold]
    pub(crate) fn wake_all(&self) {
        self.event.notify(usize::MAX);
    }

    /// Unregisters a listener that gives up before it was notified (its future was
    /// dropped or its deadline passed). The last one to leave clears the word's bit,
    /// so that no later transition pays for a notification nobody receives.
    pub(crate) fn leave(&self, listener: EventListener, word: &StateWord) {
        if listener.discard() {
            // A transition notified it: that transition already cleared the bit.
            return;
        }
        if self.event.total_listeners() > 0 || !word.clear_async_waiters() {
            return;
        }
        if planted_bug!(AsyncLeaveSkipsRecount) {
            return;
        }
        // A waiter that marked the word before the clear above registered before
        // that mark, so it is counted here (the clear acquires its release): it may
        // have lost its bit, so wake it to mark again.
        if self.event.total_listeners() > 0 {
            self.wake_all();
        }
    }

    /// Listeners registered now (takes the event's lock).
    #[cfg(test)]
    pub(crate) fn listeners(&self) -> usize {
        self.event.total_listeners()
    }
}

impl fmt::Debug for AsyncWaiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AsyncWaiters")
    }
}
