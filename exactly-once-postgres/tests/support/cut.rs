//! A proxy between the store and PostgreSQL that cuts a connection at its COMMIT: the
//! COMMIT delivered and its answer lost, or the COMMIT withheld.

use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

/// What the next COMMIT that passes meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The server gets the COMMIT (and commits); the client never gets its answer.
    AnswerLost,
    /// The server never gets the COMMIT: the connection closes before it (a rollback).
    CommitLost,
}

/// A TCP proxy in front of a server's Unix socket; stopped on drop.
pub struct CommitCutter {
    pub port: u16,
    armed: Arc<Mutex<Option<Cut>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CommitCutter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const COMMIT: &[u8] = b"COMMIT\0";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl CommitCutter {
    pub async fn start(socket_dir: &Path) -> CommitCutter {
        let socket = socket_dir.join(".s.PGSQL.5432");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed: Arc<Mutex<Option<Cut>>> = Arc::default();
        let task = tokio::spawn({
            let armed = Arc::clone(&armed);
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let server = UnixStream::connect(&socket).await.unwrap();
                    tokio::spawn(relay(client, server, Arc::clone(&armed)));
                }
            }
        });
        CommitCutter { port, armed, task }
    }

    /// Cuts the next COMMIT that passes, as `cut` says.
    pub fn arm(&self, cut: Cut) {
        *self.armed.lock().unwrap() = Some(cut);
    }
}

async fn relay(client: tokio::net::TcpStream, server: UnixStream, armed: Arc<Mutex<Option<Cut>>>) {
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let swallow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Server to client: after a delivered COMMIT, nothing more reaches the client, and
    // its side closes once the COMMIT's answer has come (and been dropped).
    let back = tokio::spawn({
        let swallow = Arc::clone(&swallow);
        async move {
            let mut buf = vec![0; 64 * 1024];
            loop {
                let n = match server_in.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if swallow.load(std::sync::atomic::Ordering::SeqCst) {
                    if contains(&buf[..n], COMMIT) {
                        let _ = client_out.shutdown().await;
                        return;
                    }
                    continue;
                }
                if client_out.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match client_in.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let cut = if contains(&buf[..n], COMMIT) {
            armed.lock().unwrap().take()
        } else {
            None
        };
        match cut {
            Some(Cut::CommitLost) => {
                back.abort();
                return; // both sides close: the server rolls back
            }
            Some(Cut::AnswerLost) => {
                swallow.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = server_out.write_all(&buf[..n]).await;
            }
            None => {
                if server_out.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    // The client has gone: the server sees its end (after the COMMIT it got).
    drop(server_out);
    let _ = back.await;
}
