//! The upstream side of a request: per-worker pools of HTTP/1 connections to the backends
//! (`pool`) and the bodies streamed through them (`body`: the request on its way up, counted
//! against the size limit; the response on its way down, which gives its connection back at
//! end of stream, and — for a request the access log writes — completes its entry).

mod body;
mod pool;

pub(crate) use self::body::{
    DownstreamBodyError, Logged, ReqBody, RequestBodyTimeout, RespBody, Upload, UpstreamBody,
};
pub(crate) use self::pool::{ConnectError, Lease};

/// A worker's pools of connections carrying the proxy's request bodies.
pub(crate) type Pool = pool::Pool<ReqBody>;
/// The sending half of one of those connections.
pub(crate) type Sender = pool::Sender<ReqBody>;
