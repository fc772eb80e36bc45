//! One file per grant type of `POST /token` (RFC 6749 §4, §6), as fosite's
//! `flow_*.go`: each takes the authenticated client and the form, and returns
//! the tokens issued. May import `oauth`, `config`, `authn`, `store`, `token`.
