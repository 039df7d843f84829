//! The thread that owns the windowing event loop and the login windows.
//!
//! GTK binds itself to the first thread that initialises it, and a process gets one GTK, so the
//! event loop lives on one long-lived thread. It sleeps on a channel between logins and runs the
//! event loop (`run_return`) while at least one login window is open, so several logins, one
//! after the other or at the same time, share it.

use std::any::Any;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use tao::dpi::LogicalSize;
use tao::event::{Event, WindowEvent};
use tao::event_loop::{
    ControlFlow, EventLoop, EventLoopBuilder, EventLoopProxy, EventLoopWindowTarget,
};
use tao::platform::run_return::EventLoopExtRunReturn;
use tao::window::{Window, WindowBuilder, WindowId};
use tokio::sync::oneshot;
use url::Url;
use withings_oauth::UserAgentError;
use wry::{NewWindowResponse, WebView, WebViewBuilder};

use crate::matcher::{Navigation, classify};

/// What to tell someone whose machine cannot show a window.
pub(crate) const NO_DISPLAY_ADVICE: &str =
    "no display: use the paste agent, or run under a desktop session";

/// One login to show.
pub(crate) struct LoginPage {
    pub(crate) authorize_url: Url,
    pub(crate) redirect_uri: Url,
    pub(crate) title: String,
    pub(crate) size: (u32, u32),
    pub(crate) timeout: Duration,
}

/// A login on its way to the GUI thread, with where its outcome goes.
struct LoginRequest {
    page: LoginPage,
    reply: oneshot::Sender<Result<Url, UserAgentError>>,
}

/// Messages to the event loop from the webviews, the timers and the callers.
///
/// No `Debug`: a callback URL carries the code and the state.
enum GuiEvent {
    /// Look for new requests and for callers that gave up.
    Wake,
    /// The login's webview navigated to the redirect URI.
    Callback(u64, Url),
    /// The login's time is up.
    TimedOut(u64),
    /// The user asked to close the login's window.
    Closed(u64),
    /// A handler of the login's window panicked; the text says where.
    Failed(u64, String),
}

/// State shared between the GUI thread and the callers.
#[derive(Default)]
struct Shared {
    /// Set once the event loop exists; `None` before (nothing to wake yet).
    proxy: Mutex<Option<EventLoopProxy<GuiEvent>>>,
    /// Why the GUI thread stopped, for callers whose request it could not answer.
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn wake(&self) {
        if let Some(proxy) = self
            .proxy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = proxy.send_event(GuiEvent::Wake);
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct GuiThread {
    requests: mpsc::Sender<LoginRequest>,
    shared: Arc<Shared>,
}

static GUI: Mutex<Option<GuiThread>> = Mutex::new(None);

/// Held by the caller while its login runs. Dropping it (the login finished, or the caller's
/// future was dropped) wakes the event loop, which closes windows nobody waits for any more.
pub(crate) struct Ticket {
    shared: Arc<Shared>,
    answer: oneshot::Receiver<Result<Url, UserAgentError>>,
}

impl Ticket {
    /// Waits for the login's outcome.
    pub(crate) async fn outcome(&mut self) -> Result<Url, UserAgentError> {
        match (&mut self.answer).await {
            Ok(result) => result,
            Err(_) => Err(self.lost()),
        }
    }

    /// The error for a login whose reply channel closed without an answer.
    fn lost(&self) -> UserAgentError {
        let reason = self
            .shared
            .failure()
            .unwrap_or_else(|| "the login window thread stopped".to_owned());
        UserAgentError::Other(format!("{reason}: {NO_DISPLAY_ADVICE}"))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Closed before the wake: a thread woken first could find the login still awaited and
        // go back to sleep with its window on screen.
        self.answer.close();
        self.shared.wake();
    }
}

/// Hands `page` to the GUI thread, starting it if needed.
pub(crate) fn submit(page: LoginPage) -> Result<Ticket, UserAgentError> {
    let mut gui = GUI.lock().unwrap_or_else(PoisonError::into_inner);
    let (reply, answer) = oneshot::channel();
    let mut request = LoginRequest { page, reply };
    // A thread that could not create its event loop has exited; one new attempt is worth it
    // (a display may have appeared), more would only repeat the same failure.
    for _ in 0..2 {
        let thread = match gui.take() {
            Some(thread) => thread,
            None => spawn()?,
        };
        match thread.requests.send(request) {
            Ok(()) => {
                let shared = Arc::clone(&thread.shared);
                *gui = Some(thread);
                shared.wake();
                return Ok(Ticket { shared, answer });
            }
            Err(mpsc::SendError(back)) => {
                if let Some(reason) = thread.shared.failure() {
                    tracing::debug!(%reason, "the login window thread had stopped");
                }
                request = back;
            }
        }
    }
    Err(UserAgentError::Other(format!(
        "the login window thread could not be started: {NO_DISPLAY_ADVICE}"
    )))
}

fn spawn() -> Result<GuiThread, UserAgentError> {
    let (requests, rx) = mpsc::channel();
    let shared = Arc::new(Shared::default());
    let thread_shared = Arc::clone(&shared);
    thread::Builder::new()
        .name("withings-oauth-webview".to_owned())
        .spawn(move || gui_main(&rx, &thread_shared))
        .map_err(|source| UserAgentError::Io {
            context: "starting the login window thread".to_owned(),
            source,
        })?;
    Ok(GuiThread { requests, shared })
}

fn new_event_loop() -> EventLoop<GuiEvent> {
    let mut builder = EventLoopBuilder::<GuiEvent>::with_user_event();
    #[cfg(gtk_platform)]
    {
        use tao::platform::unix::EventLoopBuilderExtUnix;
        builder.with_any_thread(true);
    }
    #[cfg(target_os = "windows")]
    {
        use tao::platform::windows::EventLoopBuilderExtWindows;
        builder.with_any_thread(true);
    }
    builder.build()
}

/// Starts GTK on this thread, so that a missing display is an error rather than tao's panic.
#[cfg(gtk_platform)]
fn start_toolkit() -> Result<(), String> {
    gtk::init().map_err(|e| format!("GTK could not open the display ({e})"))
}

#[cfg(not(gtk_platform))]
fn start_toolkit() -> Result<(), String> {
    Ok(())
}

/// Lets GTK finish what destroying the last windows started before the thread sleeps. A window
/// destroyed while GDK holds back its X requests (mid-frame, just after mapping) would otherwise
/// stay on screen until the next login wakes the loop.
#[cfg(gtk_platform)]
fn settle_toolkit() {
    // Bounded: a source that keeps itself ready must not keep the thread from sleeping.
    for _ in 0..1000 {
        if !gtk::events_pending() {
            break;
        }
        gtk::main_iteration_do(false);
    }
    if let Some(display) = gtk::gdk::Display::default() {
        display.flush();
    }
}

#[cfg(not(gtk_platform))]
fn settle_toolkit() {}

fn gui_main(rx: &mpsc::Receiver<LoginRequest>, shared: &Shared) {
    // tao panics when GTK cannot start: whatever happens, it must reach the caller as an
    // error, not take the process down.
    let created = catch_unwind(|| {
        start_toolkit()?;
        Ok::<_, String>(new_event_loop())
    })
    .unwrap_or_else(|panic| Err(panic_text(&*panic)));
    let mut event_loop = match created {
        Ok(event_loop) => event_loop,
        Err(cause) => {
            let reason = format!("the login window could not be created: {cause}");
            tracing::warn!(%reason, "no event loop for the login window");
            *shared
                .failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(reason.clone());
            for request in rx.try_iter() {
                let _ = request.reply.send(Err(UserAgentError::Other(format!(
                    "{reason}: {NO_DISPLAY_ADVICE}"
                ))));
            }
            return;
        }
    };
    let proxy = event_loop.create_proxy();
    *shared.proxy.lock().unwrap_or_else(PoisonError::into_inner) = Some(proxy.clone());

    let mut next_id = 0_u64;
    let mut queued: Vec<LoginRequest> = Vec::new();
    let mut logins: HashMap<u64, Login> = HashMap::new();
    while let Ok(first) = rx.recv() {
        queued.push(first);
        // A request can arrive while the loop is on its way out; the loop then runs again
        // rather than leaving a window nobody drives.
        while !queued.is_empty() || !logins.is_empty() {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                event_loop.run_return(|event, target, control_flow| {
                    if let Event::LoopDestroyed = event {
                        return;
                    }
                    *control_flow = ControlFlow::Wait;
                    queued.extend(rx.try_iter());
                    for request in queued.drain(..) {
                        next_id += 1;
                        open(target, &proxy, next_id, request, &mut logins);
                    }
                    handle(event, &mut logins, control_flow);
                    logins.retain(|_, login| !login.reply.is_closed());
                });
            }));
            if let Err(panic) = outcome {
                let reason = format!("the login window failed ({})", panic_text(&*panic));
                tracing::warn!(%reason, "login window event loop panicked");
                for request in queued.drain(..).chain(rx.try_iter()) {
                    let _ = request
                        .reply
                        .send(Err(UserAgentError::Other(reason.clone())));
                }
                for (_, login) in logins.drain() {
                    let _ = login.reply.send(Err(UserAgentError::Other(reason.clone())));
                }
            }
            settle_toolkit();
        }
    }
}

fn handle(
    event: Event<'_, GuiEvent>,
    logins: &mut HashMap<u64, Login>,
    control_flow: &mut ControlFlow,
) {
    match event {
        Event::UserEvent(GuiEvent::Callback(id, url)) => {
            finish(logins, id, Ok(url));
        }
        Event::UserEvent(GuiEvent::TimedOut(id)) => {
            if let Some(timeout) = logins.get(&id).map(|l| l.timeout) {
                finish(logins, id, Err(UserAgentError::TimedOut(timeout)));
            }
        }
        Event::UserEvent(GuiEvent::Closed(id)) => {
            finish(logins, id, Err(UserAgentError::Cancelled));
        }
        Event::UserEvent(GuiEvent::Failed(id, reason)) => {
            finish(logins, id, Err(UserAgentError::Other(reason)));
        }
        // Destroyed: something outside GTK tore the window down (an X client killing it,
        // say); nobody can answer in it any more.
        Event::WindowEvent {
            window_id,
            event: WindowEvent::CloseRequested | WindowEvent::Destroyed,
            ..
        } => {
            if let Some(id) = login_of_window(logins, window_id) {
                finish(logins, id, Err(UserAgentError::Cancelled));
            }
        }
        // Leaving only after a full pass lets GTK process the destroyed windows, so none
        // stays on screen while the thread sleeps.
        Event::RedrawEventsCleared if logins.is_empty() => {
            *control_flow = ControlFlow::ExitWithCode(0);
        }
        _ => {}
    }
}

/// An open login window.
struct Login {
    // Declared before `window`: the webview must go before the window that holds it.
    _webview: WebView,
    window: Window,
    timeout: Duration,
    reply: oneshot::Sender<Result<Url, UserAgentError>>,
    // Dropping it ends the timer thread at once.
    _timer: mpsc::Sender<()>,
}

fn login_of_window(logins: &HashMap<u64, Login>, window_id: WindowId) -> Option<u64> {
    logins
        .iter()
        .find(|(_, login)| login.window.id() == window_id)
        .map(|(id, _)| *id)
}

fn finish(logins: &mut HashMap<u64, Login>, id: u64, result: Result<Url, UserAgentError>) {
    if let Some(login) = logins.remove(&id) {
        match &result {
            Ok(_) => tracing::debug!(login = id, "callback captured, closing the login window"),
            Err(e) => tracing::debug!(login = id, error = %e, "closing the login window"),
        }
        let _ = login.reply.send(result);
    }
}

fn open(
    target: &EventLoopWindowTarget<GuiEvent>,
    proxy: &EventLoopProxy<GuiEvent>,
    id: u64,
    request: LoginRequest,
    logins: &mut HashMap<u64, Login>,
) {
    if request.reply.is_closed() {
        return;
    }
    match build_window(target, proxy, id, &request.page) {
        Ok((window, webview, timer)) => {
            tracing::debug!(login = id, "login window opened");
            logins.insert(
                id,
                Login {
                    _webview: webview,
                    window,
                    timeout: request.page.timeout,
                    reply: request.reply,
                    _timer: timer,
                },
            );
        }
        Err(e) => {
            let _ = request.reply.send(Err(e));
        }
    }
}

fn build_window(
    target: &EventLoopWindowTarget<GuiEvent>,
    proxy: &EventLoopProxy<GuiEvent>,
    id: u64,
    page: &LoginPage,
) -> Result<(Window, WebView, mpsc::Sender<()>), UserAgentError> {
    let (width, height) = page.size;
    let window = WindowBuilder::new()
        .with_title(page.title.as_str())
        .with_inner_size(LogicalSize::new(width, height))
        .build(target)
        .map_err(|e| {
            UserAgentError::Other(format!(
                "the login window could not be opened ({e}): {NO_DISPLAY_ADVICE}"
            ))
        })?;
    watch_close_requests(&window, proxy, id);

    let nav_proxy = proxy.clone();
    let nav_redirect = page.redirect_uri.clone();
    let nav_authorize = page.authorize_url.clone();
    let popup_proxy = proxy.clone();
    let popup_redirect = page.redirect_uri.clone();
    let popup_authorize = page.authorize_url.clone();
    let builder = WebViewBuilder::new()
        .with_url(page.authorize_url.as_str())
        // Nothing of the session (cookies, the password the user typed) is written to disk.
        .with_incognito(true)
        .with_navigation_handler(move |uri| {
            shielded(false, report_failure(&nav_proxy, id), || {
                match classify(&uri, &nav_redirect, &nav_authorize) {
                    Navigation::Callback(url) => {
                        let _ = nav_proxy.send_event(GuiEvent::Callback(id, url));
                        // The callback never loads: an https callback needs no server behind it
                        // and a custom scheme needs no handler.
                        false
                    }
                    // Not this login's: blocked, and the window stays for the real one.
                    Navigation::Foreign => {
                        tracing::warn!("blocked a navigation to the redirect URI that is not this login's callback");
                        false
                    }
                    Navigation::Elsewhere => true,
                }
            })
        })
        .with_new_window_req_handler(move |uri, _features| {
            shielded(
                NewWindowResponse::Deny,
                report_failure(&popup_proxy, id),
                || {
                    if let Navigation::Callback(url) =
                        classify(&uri, &popup_redirect, &popup_authorize)
                    {
                        let _ = popup_proxy.send_event(GuiEvent::Callback(id, url));
                    }
                    NewWindowResponse::Deny
                },
            )
        });
    let webview = build_webview(builder, &window).map_err(|e| {
        UserAgentError::Other(format!(
            "the web view could not be created ({e}): {NO_DISPLAY_ADVICE}"
        ))
    })?;

    let (timer, cancelled) = mpsc::channel::<()>();
    let timer_proxy = proxy.clone();
    let timeout = page.timeout;
    // tao's Linux event loop ignores `ControlFlow::WaitUntil`, so a thread sends the deadline.
    thread::Builder::new()
        .name("withings-oauth-webview-timer".to_owned())
        .spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = cancelled.recv_timeout(timeout) {
                let _ = timer_proxy.send_event(GuiEvent::TimedOut(id));
            }
        })
        .map_err(|source| UserAgentError::Io {
            context: "starting the login timer".to_owned(),
            source,
        })?;
    Ok((window, webview, timer))
}

#[cfg(gtk_platform)]
fn build_webview(builder: WebViewBuilder<'_>, window: &Window) -> wry::Result<WebView> {
    use tao::platform::unix::WindowExtUnix;
    use wry::WebViewBuilderExtUnix;
    // Through GTK rather than a raw X11 handle, so Wayland sessions work too.
    match window.default_vbox() {
        Some(vbox) => builder.build_gtk(vbox),
        None => builder.build(window),
    }
}

#[cfg(not(gtk_platform))]
fn build_webview(builder: WebViewBuilder<'_>, window: &Window) -> wry::Result<WebView> {
    builder.build(window)
}

/// tao only wires its own close handling on a later turn of the loop; until then GTK's default
/// would destroy the window without telling anyone. Watching from the start closes that gap.
#[cfg(gtk_platform)]
fn watch_close_requests(window: &Window, proxy: &EventLoopProxy<GuiEvent>, id: u64) {
    use gtk::prelude::WidgetExt;
    use tao::platform::unix::WindowExtUnix;
    let proxy = proxy.clone();
    window.gtk_window().connect_delete_event(move |_, _| {
        shielded(
            gtk::glib::Propagation::Stop,
            report_failure(&proxy, id),
            || {
                let _ = proxy.send_event(GuiEvent::Closed(id));
                gtk::glib::Propagation::Stop
            },
        )
    });
}

#[cfg(not(gtk_platform))]
fn watch_close_requests(_window: &Window, _proxy: &EventLoopProxy<GuiEvent>, _id: u64) {}

/// Runs `body`, a handler that GTK calls from C. A panic must not unwind into C (Rust aborts the
/// process there, which `catch_unwind` around the event loop can't prevent), so it stops here:
/// the handler answers `refuse` and `report` gets the panic's text.
fn shielded<T>(refuse: T, report: impl FnOnce(String), body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(answer) => answer,
        Err(panic) => {
            let text = panic_text(&*panic);
            // A payload's own `drop` may panic too (see `catch_unwind`'s documentation).
            let _ = catch_unwind(AssertUnwindSafe(move || drop(panic)));
            let _ = catch_unwind(AssertUnwindSafe(move || report(text)));
            refuse
        }
    }
}

/// Ends login `id` with an error when one of its window's handlers panicked.
fn report_failure(proxy: &EventLoopProxy<GuiEvent>, id: u64) -> impl FnOnce(String) + '_ {
    move |text| {
        tracing::warn!(login = id, panic = %text, "a login window handler panicked");
        let _ = proxy.send_event(GuiEvent::Failed(
            id,
            format!("the login window failed ({text})"),
        ));
    }
}

fn panic_text(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_answers_refuse_and_reports_the_panic() {
        let mut reported = None;
        let answer = shielded(
            false,
            |text| reported = Some(text),
            || -> bool { panic!("navigation handler broke") },
        );
        assert!(!answer, "the navigation is blocked");
        assert_eq!(reported.as_deref(), Some("navigation handler broke"));
    }

    #[test]
    fn a_panicking_report_still_answers_refuse() {
        let answer = shielded(
            NewWindowResponse::Deny,
            |_| panic!("reporting broke too"),
            || -> NewWindowResponse { panic!("new-window handler broke") },
        );
        assert!(matches!(answer, NewWindowResponse::Deny));
    }

    #[test]
    fn a_handler_that_returns_is_left_alone() {
        let mut reported = false;
        let answer = shielded(false, |_| reported = true, || true);
        assert!(answer, "the handler's own answer");
        assert!(!reported, "nothing to report");
    }
}
