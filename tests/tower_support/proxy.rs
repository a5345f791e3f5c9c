//! A TCP proxy on loopback that cuts connections at chosen or random points of the
//! exchange: before or after it forwards a request's bytes, part-way through a request's
//! body, before or after it forwards a response's bytes.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where a connection is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Request bytes arrived from the client and are dropped.
    BeforeRequest,
    /// Request bytes were forwarded to the server.
    AfterRequest,
    /// Response bytes arrived from the server and are dropped.
    BeforeResponse,
    /// Response bytes were forwarded to the client.
    AfterResponse,
    /// A request's head and only part of its body were forwarded: the body is torn.
    InRequestBody,
}

pub const EVERY_CUT: [Cut; 5] = [
    Cut::BeforeRequest,
    Cut::AfterRequest,
    Cut::BeforeResponse,
    Cut::AfterResponse,
    Cut::InRequestBody,
];

/// What the proxy cuts: the planned cut of each new connection in turn, then each point
/// at random with probability `rate`.
#[derive(Debug, Default)]
pub struct Faults {
    plan: Mutex<VecDeque<Cut>>,
    rate: f64,
    cuts: [AtomicU64; EVERY_CUT.len()],
    connections: AtomicU64,
}

impl Faults {
    pub fn planned(plan: impl IntoIterator<Item = Cut>) -> Arc<Faults> {
        Arc::new(Faults {
            plan: Mutex::new(plan.into_iter().collect()),
            ..Faults::default()
        })
    }

    pub fn random(rate: f64) -> Arc<Faults> {
        Arc::new(Faults {
            rate,
            ..Faults::default()
        })
    }

    /// Cuts made so far at each point, in [`EVERY_CUT`]'s order.
    pub fn cuts(&self) -> [u64; EVERY_CUT.len()] {
        EVERY_CUT.map(|cut| self.cuts[cut as usize].load(Ordering::Relaxed))
    }

    pub fn total_cuts(&self) -> u64 {
        self.cuts().iter().sum()
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    fn next_plan(&self) -> Option<Cut> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.plan.lock().unwrap().pop_front()
    }

    /// Whether the connection, whose plan is `planned`, is cut at `point`.
    fn cut_at(&self, planned: Option<Cut>, point: Cut) -> bool {
        let cut = planned == Some(point) || (self.rate > 0.0 && fastrand::f64() < self.rate);
        if cut {
            self.cuts[point as usize].fetch_add(1, Ordering::Relaxed);
        }
        cut
    }
}

/// Starts a proxy to `upstream`; returns its address.
pub async fn start(upstream: SocketAddr, faults: Arc<Faults>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let faults = Arc::clone(&faults);
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(upstream).await {
                    relay(client, server, &faults).await;
                }
            });
        }
    });
    addr
}

/// Forwards bytes both ways until either side closes or a cut; dropping the four halves
/// then closes both connections.
async fn relay(client: TcpStream, server: TcpStream, faults: &Faults) {
    let planned = faults.next_plan();
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let mut up = vec![0u8; 64 << 10];
    let mut down = vec![0u8; 64 << 10];
    loop {
        let cut = tokio::select! {
            read = client_in.read(&mut up) => match read {
                Ok(n) if n > 0 => match torn_at(&up[..n]) {
                    Some(torn) if faults.cut_at(planned, Cut::InRequestBody) => {
                        let _ = server_out.write_all(&up[..torn]).await;
                        true
                    }
                    _ => {
                        forward(&mut server_out, &up[..n], faults, planned, [Cut::BeforeRequest, Cut::AfterRequest]).await
                    }
                },
                _ => true,
            },
            read = server_in.read(&mut down) => match read {
                Ok(n) if n > 0 => {
                    forward(&mut client_out, &down[..n], faults, planned, [Cut::BeforeResponse, Cut::AfterResponse]).await
                }
                _ => true,
            },
        };
        if cut {
            return;
        }
    }
}

/// Where to tear the request bytes `read` (one read from the client): at a random
/// point of the body that follows a head in them, or of bytes that carry no head (the
/// rest of a body); `None` when they end with a head and carry no body.
fn torn_at(read: &[u8]) -> Option<usize> {
    let body = match read.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(head) => head + 4,
        None => 0,
    };
    (body < read.len()).then(|| body + fastrand::usize(..read.len() - body))
}

/// Writes `bytes` on unless cut before or after; true if the connection ends.
async fn forward(
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
    faults: &Faults,
    planned: Option<Cut>,
    [before, after]: [Cut; 2],
) -> bool {
    if faults.cut_at(planned, before) {
        return true;
    }
    if to.write_all(bytes).await.is_err() {
        return true;
    }
    faults.cut_at(planned, after)
}
