//! Runs a proxy from a configuration file without the rest of the `ficus` binary:
//! `cargo run --release -p ficus-proxy --example serve -- ficus.toml`. Same behaviour as
//! `ficus proxy --config FILE`; handy for profiling the proxy crate alone.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "ficus.toml".into()),
    );
    let config = ficus_proxy::Config::from_file(&path)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let proxy = ficus_proxy::Proxy::start(config, Some(path))?;
        eprintln!(
            "listening on {} (admin {})",
            proxy.listen_addr(),
            proxy.admin_addr()
        );
        ficus_proxy::shutdown_signal().await;
        proxy.shutdown().await;
        Ok::<_, ficus_proxy::ProxyError>(())
    })?;
    Ok(())
}
