//! tonic's client over the exactly-once [`GrpcClient`] layer, calling `notes.Notes` on
//! `examples/grpc_server.rs`: `--calls` numbered `Echo` calls (each runs once, however
//! often its connection is cut and it is resent), one `Fail` (its status comes back as
//! the service gave it) and one `Watch` (streaming, passed through un-numbered).
//!
//! ```sh
//! cargo run --release --features tower --example grpc_client -- --addr 127.0.0.1:50051 --calls 3
//! ```

#[path = "support/grpc_notes.rs"]
mod notes;
mod support;

use exactly_once::tower::{ClientConfig, GrpcClientLayer};
use tower_layer::Layer;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = support::flag(&args, "--addr").unwrap_or_else(|| "127.0.0.1:50051".into());
    let calls: u64 = support::parsed(&args, "--calls", 3);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("an address")
        .connect_lazy();
    let layer = GrpcClientLayer::new(ClientConfig::default(), tonic::body::Body::new)
        .streaming(notes::STREAMING);
    let mut client = tonic::client::Grpc::new(layer.layer(channel));
    for i in 1..=calls {
        let text = format!("note {i}");
        let answer = notes::unary(&mut client, notes::ECHO, &[], &text).await;
        let answer = answer.unwrap_or_else(|e| panic!("{text}: {e}"));
        let run = answer.metadata().get(notes::RUN_TRAILER);
        println!(
            "Echo {:?}: run {} (trailer {run:?})",
            answer.get_ref().text,
            answer.get_ref().run
        );
    }
    let failed = notes::unary(&mut client, notes::FAIL, &[], "x").await;
    let failed = failed.expect_err("Fail fails");
    println!("Fail: {:?} {:?}", failed.code(), failed.message());
    let watched = notes::watch(&mut client, "watch", 3).await.expect("Watch");
    let texts: Vec<_> = watched.iter().map(|n| n.text.as_str()).collect();
    println!("Watch (streaming, un-numbered): {texts:?}");
}
