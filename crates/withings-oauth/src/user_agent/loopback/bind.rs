//! Binding the listener: which loopback addresses a redirect URI means, and how each is bound.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};
use tracing::debug;
use url::{Host, Url};

use crate::config::is_loopback;
use crate::user_agent::agent::UserAgentError;

/// Ports tried for `localhost` on port 0 before giving up, when `[::1]` has the `127.0.0.1`
/// port taken.
const LOCALHOST_BIND_ATTEMPTS: usize = 8;

/// Where the listener for a redirect URI listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ListenAddr {
    /// The redirect URI's address; port 0 for any free port.
    pub(super) addr: SocketAddr,
    /// `localhost`: `[::1]` too, on the same port.
    pub(super) also_ipv6: bool,
}

/// The address to listen on for `redirect_uri`.
pub(super) fn listen_addr(redirect_uri: &Url) -> Result<ListenAddr, UserAgentError> {
    let unsupported = |why: &str| UserAgentError::UnsupportedRedirectUri {
        reason: format!(
            "{redirect_uri} {why}; a loopback listener needs http://127.0.0.1:<port>/..., \
             http://[::1]:<port>/... or http://localhost:<port>/... (port 0 for any). For an https \
             callback use PasteAgent or BrowserOrPasteAgent"
        ),
    };
    if redirect_uri.scheme() != "http" {
        return Err(unsupported("is not plain http"));
    }
    if !is_loopback(redirect_uri) {
        return Err(unsupported("is not on a loopback address"));
    }
    let (ip, also_ipv6) = match redirect_uri.host() {
        Some(Host::Ipv4(ip)) => (IpAddr::V4(ip), false),
        Some(Host::Ipv6(ip)) => (IpAddr::V6(ip), false),
        // `localhost`, the only loopback name.
        _ => (IpAddr::V4(Ipv4Addr::LOCALHOST), true),
    };
    // No port is port 80, as a server comparing redirect URIs exactly reads it; only an
    // explicit 0 asks for any free port.
    let Some(port) = redirect_uri.port_or_known_default() else {
        return Err(unsupported("has no port"));
    };
    Ok(ListenAddr {
        addr: SocketAddr::new(ip, port),
        also_ipv6,
    })
}

/// The sockets of one login's listener, handed from `prepare` to `run`.
pub(crate) struct Listeners {
    /// The redirect URI's address (`127.0.0.1` for `localhost`).
    pub(super) first: TcpListener,
    /// `[::1]` on the same port, for `localhost`.
    pub(super) second: Option<TcpListener>,
}

impl Listeners {
    fn port(&self) -> io::Result<u16> {
        Ok(self.first.local_addr()?.port())
    }

    pub(super) async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match &self.second {
            None => self.first.accept().await,
            Some(second) => tokio::select! {
                accepted = self.first.accept() => accepted,
                accepted = second.accept() => accepted,
            },
        }
    }
}

/// Binds the listener for `redirect_uri` and returns the redirect URI with the real port.
pub(super) async fn bind(redirect_uri: &Url) -> Result<(Url, Listeners), UserAgentError> {
    let listen = listen_addr(redirect_uri)?;
    let listeners = if listen.also_ipv6 {
        bind_localhost(listen.addr.port()).await?
    } else {
        Listeners {
            first: bind_one(listen.addr).await?,
            second: None,
        }
    };
    let mut redirect_uri = redirect_uri.clone();
    if listen.addr.port() == 0 {
        let port = listeners
            .port()
            .map_err(|source| bind_error(listen.addr, source))?;
        redirect_uri
            .set_port(Some(port))
            .map_err(|()| UserAgentError::Other("the redirect URI cannot carry a port".into()))?;
    }
    debug!(
        redirect_uri = redirect_uri.as_str(),
        ipv6_too = listeners.second.is_some(),
        "loopback listener bound"
    );
    Ok((redirect_uri, listeners))
}

async fn bind_one(addr: SocketAddr) -> Result<TcpListener, UserAgentError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| bind_error(addr, source))
}

/// Binds `127.0.0.1:port` and `[::1]` on the same port. With port 0, a port whose `[::1]` side
/// is taken is given up for another one.
async fn bind_localhost(port: u16) -> Result<Listeners, UserAgentError> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut clash = None;
    for _ in 0..LOCALHOST_BIND_ATTEMPTS {
        let first = bind_one(v4).await?;
        let v6 = SocketAddr::from((
            Ipv6Addr::LOCALHOST,
            first.local_addr().map_err(|e| bind_error(v4, e))?.port(),
        ));
        match TcpListener::bind(v6).await {
            Ok(second) => {
                return Ok(Listeners {
                    first,
                    second: Some(second),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if port != 0 {
                    return Err(bind_error(v6, e));
                }
                clash = Some(bind_error(v6, e));
            }
            Err(e) if ipv6_unavailable() => {
                debug!(error = %e, "no IPv6 loopback: serving localhost on 127.0.0.1 only");
                return Ok(Listeners {
                    first,
                    second: None,
                });
            }
            Err(e) => return Err(bind_error(v6, e)),
        }
    }
    Err(clash.unwrap_or_else(|| bind_error(v4, io::ErrorKind::AddrInUse.into())))
}

/// Whether this system has no IPv6 loopback at all (no IPv6 support, or `::1` disabled), as
/// opposed to one port of it being taken.
pub(super) fn ipv6_unavailable() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err()
}

pub(super) fn bind_error(addr: SocketAddr, source: io::Error) -> UserAgentError {
    let why = match source.kind() {
        io::ErrorKind::AddrInUse => {
            "the port is taken by another login or program, which the browser would send the \
             code to: stop that program, or register and use a redirect URI with another port \
             (or http://127.0.0.1:0/callback for any free port where the server allows it)"
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges: register and use a redirect URI with a port of its \
             own, or http://127.0.0.1:0/callback for any free port where the server allows it"
        }
        _ => "is this address available here?",
    };
    UserAgentError::Io {
        context: format!("listening on {addr} for the login callback ({why})"),
        source,
    }
}

/// For `run` without this agent's `prepare`: the port must already be known.
pub(super) async fn bind_exact(redirect_uri: &Url) -> Result<Listeners, UserAgentError> {
    if listen_addr(redirect_uri)?.addr.port() == 0 {
        return Err(UserAgentError::Other(
            "the loopback listener was not prepared: call the agent's prepare() before run(), or use withings_oauth::authorize".into(),
        ));
    }
    Ok(bind(redirect_uri).await?.1)
}
