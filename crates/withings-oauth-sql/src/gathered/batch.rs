//! The queue of one kind of gathered call: the calls that arrive while a batch of that kind runs
//! wait here, and go together as the next one. At most one flush task per queue takes the
//! queue and runs it, again and again until it is empty. Each item carries its own reply: a
//! batch answers every caller with the answer of its own call, and a caller that stopped
//! waiting only drops its answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;
use withings_oauth::StoreError;

/// The most calls one statement carries.
pub(crate) const MAX_BATCH: usize = 256;

/// The answers of a batch, one per request, in order.
pub(crate) type Answers<Out> = Pin<Box<dyn Future<Output = Vec<Out>> + Send>>;

/// A batch run: it answers each of its calls itself.
pub(crate) type Flush = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A batch's work on the handle `H`: it runs the items, in order, and answers each through its
/// reply.
pub(crate) type Run<H, T> = fn(H, Vec<T>) -> Flush;

/// Where the handle `H` keeps the queue of a kind.
pub(crate) type Pick<H, T> = fn(&H) -> &Batcher<T>;

/// A call and where its answer goes.
pub(crate) struct Call<Req, Out> {
    pub(crate) request: Req,
    pub(crate) reply: oneshot::Sender<Out>,
}

impl<Req, Out> Call<Req, Out> {
    /// A call, and the receiver of its answer.
    pub(crate) fn new(request: Req) -> (Self, oneshot::Receiver<Out>) {
        let (reply, answer) = oneshot::channel();
        (Self { request, reply }, answer)
    }
}

/// Answers each call with the answer `run` gives its request: the calls of a queue whose
/// batches give one answer per request, in order.
pub(crate) async fn reply_each<Req, Out>(
    calls: Vec<Call<Req, Out>>,
    run: impl FnOnce(Vec<Req>) -> Answers<Out>,
) {
    let (requests, replies): (Vec<Req>, Vec<oneshot::Sender<Out>>) = calls
        .into_iter()
        .map(|call| (call.request, call.reply))
        .unzip();
    for (reply, answer) in replies.into_iter().zip(run(requests).await) {
        let _ = reply.send(answer);
    }
}

/// Waits for the answer of a call queued with [`Batcher::push`].
pub(crate) async fn answer<Out>(answer: oneshot::Receiver<Out>) -> Result<Out, StoreError> {
    answer.await.map_err(|_| {
        StoreError::Other(
            "the token store's writer stopped before answering (the runtime is shutting down?): retry".into(),
        )
    })
}

/// Queues `request` as a call of the queue `pick` and waits for its answer.
pub(crate) async fn ask<H, Req, Out, T>(
    handle: &H,
    pick: Pick<H, T>,
    run: Run<H, T>,
    wrap: fn(Call<Req, Out>) -> T,
    request: Req,
) -> Result<Out, StoreError>
where
    H: Clone + Send + 'static,
    T: Send + 'static,
{
    let (call, out) = Call::new(request);
    Batcher::push(handle, pick, run, wrap(call))?;
    answer(out).await
}
/// The queue of one kind of call.
pub(crate) struct Batcher<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    queue: Vec<T>,
    /// A flush task is running: it will take what is queued.
    flushing: bool,
}

impl<T> Default for Batcher<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                queue: Vec::new(),
                flushing: false,
            }),
        }
    }
}

impl<T: Send + 'static> Batcher<T> {
    /// Queues `item`; starts a flush task if none runs.
    ///
    /// The item runs even if its caller stops waiting: an answer nobody takes is dropped (a
    /// claimed lease then releases itself).
    pub(crate) fn push<H: Clone + Send + 'static>(
        handle: &H,
        pick: Pick<H, T>,
        run: Run<H, T>,
        item: T,
    ) -> Result<(), StoreError> {
        let start = {
            let mut state = pick(handle)
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.queue.push(item);
            !std::mem::replace(&mut state.flushing, true)
        };
        if start {
            // Made before the task: if the task never runs (no runtime here, or a runtime
            // that shuts down before polling it), dropping the guard fails the queued calls
            // and lets the next caller start a task.
            let flushing = Flushing {
                handle: handle.clone(),
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
        Ok(())
    }
}

/// Runs batches until the queue is empty.
async fn flush<H: Clone, T>(mut flushing: Flushing<H, T>, run: Run<H, T>) {
    let (handle, pick) = (flushing.handle.clone(), flushing.pick);
    loop {
        let batch: Vec<_> = {
            let mut state = pick(&handle)
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
        crate::telemetry::batch(batch.len());
        run(handle.clone(), batch).await;
    }
}

/// Owned by a flush task (from before it is spawned): if the task ends without emptying the
/// queue (dropped unpolled, or mid-batch, as a runtime shuts down), fails the calls still
/// queued (their callers get an error instead of waiting forever) and clears the `flushing`
/// flag, so that the next caller starts a new task.
struct Flushing<H, T> {
    handle: H,
    pick: Pick<H, T>,
    /// The task emptied the queue and cleared the flag itself.
    finished: bool,
}

impl<H, T> Drop for Flushing<H, T> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let queued = {
            let mut state = (self.pick)(&self.handle)
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.flushing = false;
            std::mem::take(&mut state.queue)
        };
        drop(queued);
    }
}
