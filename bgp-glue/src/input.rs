//! The speaker thread's mailbox: what the sessions, the ctl server and the health monitor
//! send it. Its own module, so that the sessions and the speaker both import it and
//! neither imports the other for it.

use std::sync::mpsc::Sender;

use serde_json::Value;

use crate::codec::{Family, Open, Update};
use crate::rib::PeerId;

/// Messages for the speaker thread.
pub(crate) enum Input {
    Session(Event),
    Ctl {
        words: Vec<String>,
        reply: Sender<Result<Value, String>>,
    },
    Healthy(bool),
    Stop,
}

/// From a session to the speaker.
pub enum Event {
    Up {
        peer: PeerId,
        open: Open,
        families: Vec<Family>,
    },
    Update {
        peer: PeerId,
        update: Update,
    },
    /// The peer asked for our routes again (ROUTE-REFRESH).
    RefreshRequested {
        peer: PeerId,
    },
    /// The session left Established. `graceful`: it ended without a NOTIFICATION either
    /// way (TCP failure, hold timer of a restarting peer), so a graceful restart is possible.
    Down {
        peer: PeerId,
        graceful: bool,
    },
}
