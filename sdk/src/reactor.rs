//! A single-threaded executor for handler futures over `wasi:io/poll`: a future that waits on
//! the host registers the pollable it waits on; when nothing can progress, the executor
//! blocks in one `poll` call on all of them, so several subrequests wait at once.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::{Pin, pin};
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use wasip2::io::poll::Pollable;

type Task = Pin<Box<dyn Future<Output = ()>>>;

thread_local! {
    /// Pollables that pending futures wait on, collected during one poll of the handler.
    /// Weak: a future dropped before the executor polls must take its pollable with it (a
    /// pollable is a child of its stream or future, which cannot be dropped before it).
    static WAITING: RefCell<Vec<Weak<Pollable>>> = const { RefCell::new(Vec::new()) };
    /// Background work of the handler (request bodies going up), driven beside it.
    static TASKS: RefCell<Vec<Task>> = const { RefCell::new(Vec::new()) };
    /// Work to finish after the response is sent (`wait_until`).
    static AFTER: RefCell<Vec<Task>> = const { RefCell::new(Vec::new()) };
    /// Whether a background task is being polled.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Whether blocking in a host call now would hold nothing else up: no background task
/// exists and the caller is not one. Body copies then use the host's blocking calls, which
/// wait inside the host and cost the guest fewer calls (and less CPU time) per chunk.
pub(crate) fn may_block() -> bool {
    !IN_TASK.with(Cell::get) && TASKS.with(|t| t.borrow().is_empty())
}

/// Runs `task` beside the handler until it ends or the handler has sent its response,
/// whichever comes first.
pub(crate) fn spawn(task: impl Future<Output = ()> + 'static) {
    TASKS.with(|t| t.borrow_mut().push(Box::pin(task)));
}

/// Runs `work` after the handler's response has been sent, before the request ends (like
/// `waitUntil` in Workers): revalidating a cache entry, sending a log line. The deployment's
/// CPU and wall-time limits still bound it.
pub fn wait_until(work: impl Future<Output = ()> + 'static) {
    AFTER.with(|t| t.borrow_mut().push(Box::pin(work)));
}

/// Runs the work given to [`wait_until`] to its end.
pub(crate) async fn run_after_response() {
    loop {
        let after = AFTER.with(|t| std::mem::take(&mut *t.borrow_mut()));
        if after.is_empty() {
            return;
        }
        join_all(after).await;
    }
}

/// Polls every background task once, keeping those still pending.
fn poll_tasks(cx: &mut Context<'_>) {
    let mut tasks = TASKS.with(|t| std::mem::take(&mut *t.borrow_mut()));
    if tasks.is_empty() {
        return;
    }
    IN_TASK.with(|t| t.set(true));
    tasks.retain_mut(|task| task.as_mut().poll(cx).is_pending());
    IN_TASK.with(|t| t.set(false));
    // Tasks spawned while polling were pushed meanwhile: keep both.
    TASKS.with(|t| t.borrow_mut().append(&mut tasks));
}

/// Resolves once `pollable` is ready, letting other futures of the handler run meanwhile.
pub(crate) async fn ready(pollable: Pollable) {
    let pollable = Rc::new(pollable);
    std::future::poll_fn(|_cx| {
        if pollable.ready() {
            return Poll::Ready(());
        }
        // The executor re-polls the whole handler when anything is ready, so registering
        // the pollable is all a waker would do.
        WAITING.with(|w| w.borrow_mut().push(Rc::downgrade(&pollable)));
        Poll::Pending
    })
    .await
}

/// Drives `future` (and the tasks it spawns) to completion, blocking in `wasi:io/poll`
/// while everything waits on the host. Tasks still running when `future` ends are dropped.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            WAITING.with(|w| w.borrow_mut().clear());
            TASKS.with(|t| t.borrow_mut().clear());
            return output;
        }
        poll_tasks(&mut cx);
        let waiting: Vec<Rc<Pollable>> = WAITING
            .with(|w| std::mem::take(&mut *w.borrow_mut()))
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        if waiting.is_empty() {
            // Waiting on something that is not the host's: give others a turn.
            std::thread::yield_now();
            continue;
        }
        let refs: Vec<&Pollable> = waiting.iter().map(|p| &**p).collect();
        wasip2::io::poll::poll(&refs);
    }
}

/// Blocks until `pollable` is ready, driving the handler's background tasks meanwhile (so a
/// synchronous body read does not stall a request body still going up).
pub(crate) fn block_until(pollable: &Pollable) {
    if may_block() {
        pollable.block();
        return;
    }
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        poll_tasks(&mut cx);
        if pollable.ready() {
            return;
        }
        let waiting: Vec<Rc<Pollable>> = WAITING
            .with(|w| std::mem::take(&mut *w.borrow_mut()))
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let mut refs: Vec<&Pollable> = waiting.iter().map(|p| &**p).collect();
        refs.push(pollable);
        wasip2::io::poll::poll(&refs);
    }
}

/// Runs futures concurrently and collects their outputs in order: several subrequests in
/// flight at once.
///
/// ```ignore
/// let responses = virga_sdk::join_all(urls.iter().map(|u| virga_sdk::fetch(get(u)))).await;
/// ```
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
