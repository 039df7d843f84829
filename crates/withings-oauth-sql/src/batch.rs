//! Group commit: the calls of one kind (loads, lease claims, saves, lease releases) that arrive
//! while a statement of that kind runs are gathered and sent together as the next one, a single
//! statement on PostgreSQL, a single transaction on SQLite. Under load a refresh then shares its
//! round trips and its commits with the others in flight; a lone call goes at once, as before.
//!
//! Each kind has one [`Batcher`] per store: a queue, and at most one flush task taking the queue
//! and running it, again and again until it is empty. Every caller gets its own answer: one
//! batch never mixes answers, and a batch that fails is run again one call at a time, so that
//! one call's failure stays its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;
use withings_oauth::StoreError;

use crate::store::SqlStore;

/// The most calls one statement carries.
pub(crate) const MAX_BATCH: usize = 256;

/// A batch's work: the store and the requests, in order; it answers each, in the same order.
pub(crate) type Run<Req, Out> =
    fn(SqlStore, Vec<Req>) -> Pin<Box<dyn Future<Output = Vec<Out>> + Send>>;

/// Where a store keeps the batcher of a kind.
pub(crate) type Pick<Req, Out> = fn(&SqlStore) -> &Batcher<Req, Out>;

/// The queue of one kind of call.
pub(crate) struct Batcher<Req, Out> {
    state: Mutex<State<Req, Out>>,
}

struct State<Req, Out> {
    queue: Vec<(Req, oneshot::Sender<Out>)>,
    /// A flush task is running: it will take what is queued.
    flushing: bool,
}

impl<Req, Out> Default for Batcher<Req, Out> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                queue: Vec::new(),
                flushing: false,
            }),
        }
    }
}

impl<Req: Send + 'static, Out: Send + 'static> Batcher<Req, Out> {
    /// Queues `request` and waits for its answer; starts a flush task if none runs.
    ///
    /// The request runs even if the caller stops waiting: an answer nobody takes is dropped
    /// (a claimed lease then releases itself).
    pub(crate) async fn submit(
        store: &SqlStore,
        pick: Pick<Req, Out>,
        run: Run<Req, Out>,
        request: Req,
    ) -> Result<Out, StoreError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = pick(store)
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.queue.push((request, reply));
            !std::mem::replace(&mut state.flushing, true)
        };
        if start {
            // Made before the task: if the task never runs (no runtime here, or a runtime
            // that shuts down before polling it), dropping the guard fails the queued calls
            // and lets the next caller start a task.
            let flushing = Flushing {
                store: store.clone(),
                pick,
                finished: false,
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(flush(flushing, run))),
                Err(_) => {
                    drop(flushing);
                    return Err(StoreError::Other(
                        "the token store was used outside a tokio runtime: call it from async code running on tokio".into(),
                    ));
                }
            }
        }
        answer.await.map_err(|_| {
            StoreError::Other(
                "the token store's writer stopped before answering (the runtime is shutting down?): retry".into(),
            )
        })
    }
}

/// Runs batches until the queue is empty.
async fn flush<Req: Send + 'static, Out: Send + 'static>(
    mut flushing: Flushing<Req, Out>,
    run: Run<Req, Out>,
) {
    let (store, pick) = (flushing.store.clone(), flushing.pick);
    loop {
        let batch: Vec<_> = {
            let mut state = pick(&store)
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if state.queue.is_empty() {
                state.flushing = false;
                flushing.finished = true;
                return;
            }
            let take = state.queue.len().min(MAX_BATCH);
            state.queue.drain(..take).collect()
        };
        let (requests, replies): (Vec<Req>, Vec<oneshot::Sender<Out>>) = batch.into_iter().unzip();
        let answers = run(store.clone(), requests).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            // A caller that stopped waiting: its answer is dropped here.
            let _ = reply.send(answer);
        }
    }
}

/// Owned by a flush task (from before it is spawned): if the task ends without emptying the
/// queue (dropped unpolled, or mid-batch, as a runtime shuts down), fails the calls still
/// queued (their callers get an error instead of waiting forever) and clears the `flushing`
/// flag, so that the next caller starts a new task.
struct Flushing<Req, Out> {
    store: SqlStore,
    pick: Pick<Req, Out>,
    /// The task emptied the queue and cleared the flag itself.
    finished: bool,
}

impl<Req, Out> Drop for Flushing<Req, Out> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let queued = {
            let mut state = (self.pick)(&self.store)
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.flushing = false;
            std::mem::take(&mut state.queue)
        };
        drop(queued);
    }
}
