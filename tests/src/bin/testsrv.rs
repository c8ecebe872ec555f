//! A backend for tests (tokio, rustls). Over TLS it answers `GET ...` with an
//! HTTP/1.0 response whose body is its name; anything else gets its name on a
//! line and then an echo of every byte, for transfer tests. With `--tcp` it
//! speaks plain TCP: a line "NAME PEER_ADDRESS", then an echo.
//!
//! usage: tether-testsrv --listen ADDR:PORT --name NAME [--tcp]

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context as _, bail};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let (listen, name, plain) = args()?;
    if plain {
        return serve_plain(listen, name).await;
    }
    let ck = rcgen::generate_simple_self_signed(vec![name.clone()])?;
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("bind {listen}"))?;
    println!("listening on {listen} as {name}");
    let name: Arc<str> = name.into();
    loop {
        let (tcp, peer) = listener.accept().await?;
        let (acceptor, name) = (acceptor.clone(), name.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(acceptor, tcp, &name).await {
                eprintln!("{peer}: {e:#}");
            }
        });
    }
}

async fn serve(acceptor: tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream, name: &str) -> anyhow::Result<()> {
    let mut tls = acceptor.accept(tcp).await.context("handshake")?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = tls.read(&mut buf).await?;
    if buf[..n].starts_with(b"GET ") {
        let body = format!("{name}\n");
        let head = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await?;
        tls.write_all(body.as_bytes()).await?;
        tls.shutdown().await?;
        return Ok(());
    }
    tls.write_all(format!("{name}\n").as_bytes()).await?;
    tls.write_all(&buf[..n]).await?;
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        tls.write_all(&buf[..n]).await?;
    }
    tls.shutdown().await?;
    Ok(())
}

async fn serve_plain(listen: SocketAddr, name: String) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("bind {listen}"))?;
    println!("listening on {listen} as {name} (tcp)");
    let name: Arc<str> = name.into();
    loop {
        let (mut tcp, peer) = listener.accept().await?;
        let name = name.clone();
        tokio::spawn(async move {
            let greeting = format!("{name} {}\n", peer.ip());
            if tcp.write_all(greeting.as_bytes()).await.is_ok() {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
    }
}

fn args() -> anyhow::Result<(SocketAddr, String, bool)> {
    let mut listen = None;
    let mut name = None;
    let mut plain = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = Some(args.next().context("--listen needs ADDR:PORT")?.parse()?),
            "--name" => name = Some(args.next().context("--name needs a value")?),
            "--tcp" => plain = true,
            other => bail!("unknown argument {other}; usage: tether-testsrv --listen ADDR:PORT --name NAME [--tcp]"),
        }
    }
    Ok((listen.context("--listen is required")?, name.context("--name is required")?, plain))
}
