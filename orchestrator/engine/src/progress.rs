//! Progress events: what the CLI shows while a run moves (bars on a
//! terminal, lines in a log, JSON objects with `--output json`). They are
//! a view; the journal is the record.

use serde::Serialize;

use crate::state::{RunPhase, StagePhase};

/// How far a fleet stage got: `started` of its `of` waves dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WavesStarted {
    pub started: u32,
    pub of: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Progress {
    #[serde(rename_all = "camelCase")]
    RunPhase { run: String, phase: RunPhase },
    #[serde(rename_all = "camelCase")]
    Preflight {
        run: String,
        stage: String,
        stable_version: String,
        ready: bool,
        detail: String,
    },
    #[serde(rename_all = "camelCase")]
    Stage {
        run: String,
        stage: String,
        phase: StagePhase,
        detail: String,
    },
    /// An operation of the stage's program finished; `step`/`steps` count them.
    #[serde(rename_all = "camelCase")]
    Step {
        run: String,
        stage: String,
        step: u32,
        steps: u32,
        /// The traffic share of a canary or blue-green stage (0 for a
        /// fleet stage, whose share is `waves`).
        weight: u8,
        /// A fleet stage's waves: how many started, of how many.
        #[serde(skip_serializing_if = "Option::is_none")]
        waves: Option<WavesStarted>,
        detail: String,
    },
    #[serde(rename_all = "camelCase")]
    Gate {
        run: String,
        stage: String,
        gate: String,
        passed: bool,
        detail: String,
    },
    /// Something about the run an operator should know that is no step
    /// of it (the team lock's lease could not be renewed, say).
    #[serde(rename_all = "camelCase")]
    Notice { run: String, message: String },
}

/// Where progress goes: a channel, or nowhere.
#[derive(Clone, Default)]
pub struct ProgressSink {
    sender: Option<tokio::sync::mpsc::UnboundedSender<Progress>>,
}

impl ProgressSink {
    pub fn new(sender: tokio::sync::mpsc::UnboundedSender<Progress>) -> ProgressSink {
        ProgressSink {
            sender: Some(sender),
        }
    }

    pub fn emit(&self, event: Progress) {
        if let Some(sender) = &self.sender {
            // A closed receiver means nobody is watching; the run goes on.
            let _ = sender.send(event);
        }
    }
}
