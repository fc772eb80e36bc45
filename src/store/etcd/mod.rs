//! The etcd backend (fleet mode), sans-IO: `gateway` says what to send to
//! etcd's HTTP/JSON gateway and what its answers mean; `exchange` carries out
//! one store command (a get, a conditional put) as one or more gateway
//! requests. The glue sends them as Envoy callouts; native tests send them over
//! a socket. The HTTP/JSON gateway, not gRPC: one plain HTTP/1.1 cluster, no
//! protobuf code in the module, and every answer is a complete body
//! `dispatch_http_call` can hand over (revocations are polled, not watched).

pub mod exchange;
pub mod gateway;
